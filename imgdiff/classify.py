"""The kind of every changed path: kernel, library, unit file, docs and so on.

This module owns the mapping from (path, entry type, first bytes) to one `Kind`, as an
ordered registry of small rules where the first match wins. It looks at nothing but its
arguments: no file I/O, no package database, no deeper ELF parsing than
`imgdiff.elf.elf_kind`, and it makes no restart or reboot decision itself. Paths are read
usr-merge aware, so `/lib/...`, `/bin/...` and `/sbin/...` classify like their `/usr` twins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import attrs

from imgdiff import elf
from imgdiff.model import EntryType, Kind

__all__ = ["KINDS", "RULES", "Rule", "classify", "is_runtime_inert"]

KINDS: Final = tuple(Kind)  # every kind `classify` names, as `Kind` members

_ENTRY_TYPES: Final = frozenset(t.value for t in EntryType)

# usr-merge: these top-level directories are symlinks into /usr on merged systems and hold
# the same kind of content on unmerged ones.
_USR_MERGED: Final = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_USR_MERGED_PREFIXES: Final = tuple(d + "/" for d in _USR_MERGED)


@attrs.frozen(slots=True)
class Subject:
    """What a rule looks at: `path` is usr-merged, `name` its last component."""

    path: str
    name: str
    entry_type: str
    head: bytes | None

    @property
    def is_file(self) -> bool:
        return self.entry_type == "file"


@attrs.frozen(slots=True)
class Tree:
    """Some directories, matched with one `str.startswith` (classify runs per changed path)."""

    roots: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, *roots: str) -> Tree:
        return cls(frozenset(roots), tuple(root + "/" for root in roots))

    def below(self, path: str) -> bool:
        """Strictly inside one of the directories."""
        return path.startswith(self.prefixes)

    def holds(self, path: str) -> bool:
        """One of the directories or anything inside them."""
        return path in self.roots or path.startswith(self.prefixes)


@attrs.frozen(slots=True)
class Rule:
    """One classification rule: `decide` returns a kind, or None to let later rules try."""

    name: str
    decide: Callable[[Subject], Kind | None]


def _when(kind: Kind, test: Callable[[Subject], bool]) -> Rule:
    """A rule, named after its kind, giving `kind` whenever `test` holds."""
    return Rule(kind.value, lambda e: kind if test(e) else None)


# ---------------------------------------------------------------- kernel, modules, boot

_MODULES: Final = Tree.of("/usr/lib/modules")
_FIRMWARE: Final = Tree.of("/usr/lib/firmware")
_BOOT: Final = Tree.of("/boot", "/efi")
_BOOT_DIR: Final = Tree.of("/boot")
_EFI_DIR: Final = Tree.of("/efi")
_KERNEL_NAMES: Final = ("vmlinuz", "vmlinux", "bzImage")


def _is_kernel(e: Subject) -> bool:
    if e.entry_type not in ("file", "symlink"):
        return False
    if e.path.count("/") == 1:  # Debian's /vmlinuz and /vmlinuz.old links to the default kernel
        return e.name.startswith("vmlinuz")
    if _BOOT_DIR.below(e.path):
        if e.name.startswith(_KERNEL_NAMES):
            return True
        # Unified kernel images (systemd-boot's Type #2 entries) on the case-blind ESP.
        lower = e.path.lower()
        return "/efi/linux/" in lower and lower.endswith(".efi")
    if _EFI_DIR.below(e.path):
        lower = e.path.lower()
        return lower.startswith("/efi/efi/linux/") and lower.endswith(".efi")
    # /usr/lib/modules/<version>/vmlinuz (Fedora, Arch, image-based distributions)
    return e.name == "vmlinuz" and _MODULES.below(e.path) and e.path.count("/") == 5


def _is_boot(e: Subject) -> bool:
    # Debian's /initrd.img and /initrd.img.old links next to /vmlinuz.
    return _BOOT.holds(e.path) or (e.path.count("/") == 1 and e.name.startswith("initrd.img"))


# ---------------------------------------------------------------- docs

_DOCS: Final = Tree.of(
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/lintian",
    "/usr/share/bug",
    "/usr/local/share/doc",
    "/usr/local/share/man",
    "/usr/local/share/info",
)
# glibc reads this one at run time to resolve locale names; it is not documentation.
_LOCALE_ALIAS: Final = "/usr/share/locale/locale.alias"


def _is_docs(e: Subject) -> bool:
    if e.path == _LOCALE_ALIAS:
        return False
    if _DOCS.holds(e.path):
        return True
    # Message catalogues in other locale trees (/usr/share/locale-langpack, /opt/x/locale).
    return e.name.endswith(".mo") and "/locale" in e.path.rpartition("/")[0]


# ---------------------------------------------------------------- systemd units

_UNIT_DIRS: Final = Tree.of(
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/usr/local/lib/systemd/system",
    "/etc/systemd/user",
    "/usr/lib/systemd/user",
)
_UNIT_SUFFIXES: Final = (
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".mount",
    ".path",
    ".slice",
    ".scope",
    ".automount",
    ".swap",
    ".device",
)


def _is_unit(e: Subject) -> bool:
    # Files and symlinks: enabling (`*.wants/x.service`) and masking (-> /dev/null) are
    # symlinks, and they change what systemd starts as much as a unit file does.
    if e.entry_type not in ("file", "symlink") or not _UNIT_DIRS.below(e.path):
        return False
    if e.name.endswith(_UNIT_SUFFIXES):
        return True
    # Drop-ins: <unit>.d/*.conf, including the type-wide ones such as service.d/*.conf.
    parent = e.path.rpartition("/")[0]
    return e.name.endswith(".conf") and parent.endswith(".d")


# ---------------------------------------------------------------- python

_PYTHON_DIRS: Final = frozenset(("site-packages", "dist-packages", "lib-dynload"))
_EXTENSION_TAG: Final = re.compile(r"\.(cpython-[^.]+|pypy[^.]*|abi3)\.so$")
# `#!/usr/bin/python3`, `#!/usr/bin/env python3.11`, `#!/usr/bin/env -S python3 -u`
_SHEBANG: Final = re.compile(rb"#![ \t]*(\S+)[ \t]*([^\n]*)")
_PYTHON_NAME: Final = re.compile(rb"(python|pypy)[0-9.]*")


def _is_extension(e: Subject) -> bool:
    if not e.is_file or not e.name.endswith(".so"):
        return False
    if _EXTENSION_TAG.search(e.name):
        return True
    return not _PYTHON_DIRS.isdisjoint(e.path.split("/"))


def _shebang_interpreter(head: bytes | None) -> bytes | None:
    """The program a `#!` line runs (looking through `env`), by base name."""
    if head is None or not head.startswith(b"#!"):
        return None
    match = _SHEBANG.match(head)
    if match is None:
        return None
    program = match.group(1).rpartition(b"/")[2]
    if program == b"env":
        # The first argument that is neither an option nor a VAR=value assignment.
        args = (a for a in match.group(2).split() if not a.startswith(b"-") and b"=" not in a)
        program = next(args, b"").rpartition(b"/")[2]
    return program


def _is_python_source(e: Subject) -> bool:
    if not e.is_file:
        return False
    if e.name.endswith(".py"):
        return True
    program = _shebang_interpreter(e.head)
    return program is not None and _PYTHON_NAME.fullmatch(program) is not None


def _is_bytecode(e: Subject) -> bool:
    return e.is_file and e.name.endswith((".pyc", ".pyo"))


# ---------------------------------------------------------------- content and fallbacks


def _elf(e: Subject) -> Kind | None:
    if not e.is_file or e.head is None:
        return None
    kind = elf.elf_kind(e.head, e.path)
    return None if kind is None else Kind(kind)


_CONFIG: Final = Tree.of("/etc", "/usr/local/etc")


def _is_config(e: Subject) -> bool:
    return _CONFIG.holds(e.path)


def _is_script(e: Subject) -> bool:
    return e.is_file and e.head is not None and e.head.startswith(b"#!")


# First match wins. Location rules that say what a whole tree is for (kernel, modules,
# firmware, boot, docs) come before content rules: a `.py` example under /usr/share/doc is
# documentation, an ELF `.ko` under /usr/lib/modules is a kernel module. The kernel comes
# before boot (it lives in /boot), directory and symlink come late so that a symlink under
# /boot is 'boot', and /etc claims its directories and symlinks (alternatives) as config.
RULES: Final[tuple[Rule, ...]] = (
    _when(Kind.KERNEL, _is_kernel),
    _when(Kind.KERNEL_MODULE, lambda e: _MODULES.holds(e.path)),
    _when(Kind.FIRMWARE, lambda e: _FIRMWARE.holds(e.path)),
    _when(Kind.BOOT, _is_boot),
    _when(Kind.DOCS, _is_docs),
    _when(Kind.SYSTEMD_UNIT, _is_unit),
    _when(Kind.PYTHON_EXTENSION, _is_extension),
    _when(Kind.PYTHON_BYTECODE, _is_bytecode),
    _when(Kind.PYTHON_SOURCE, _is_python_source),
    Rule("elf", _elf),
    _when(Kind.CONFIG, _is_config),
    _when(Kind.DIRECTORY, lambda e: e.entry_type == "dir"),
    _when(Kind.SYMLINK, lambda e: e.entry_type == "symlink"),
    _when(Kind.SCRIPT, _is_script),
)


def _usr_merged(path: str) -> str:
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1:
        path = path.rstrip("/")
    if path.startswith(_USR_MERGED_PREFIXES) or path in _USR_MERGED:
        return "/usr" + path
    return path


def classify(path: str, entry_type: str, head: bytes | None) -> Kind:
    """The kind of the image entry at absolute `path`.

    `entry_type` is an `imgdiff.model.EntryType` value ('file', 'dir', 'symlink', 'char',
    'block', 'fifo', 'socket'); `head` is the first (up to 4096) bytes of a file's content,
    or None when not read. Devices, fifos and sockets outside the trees above are 'other'.
    """
    if entry_type not in _ENTRY_TYPES:
        raise ValueError(f"unknown entry type {entry_type!r}")
    merged = _usr_merged(path)
    subject = Subject(merged, merged.rpartition("/")[2], entry_type, head)
    for rule in RULES:
        kind = rule.decide(subject)
        if kind is not None:
            return kind
    return Kind.OTHER


def is_runtime_inert(kind: str) -> bool:
    """Whether a change of this kind cannot affect running or future processes.

    Only documentation qualifies: manuals, info pages, package docs and translations.
    """
    return kind == Kind.DOCS
