"""Kinds of representative paths of a Debian/Fedora-like root filesystem."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imgdiff.classify import KINDS, RULES, classify, is_runtime_inert

LS = Path("/bin/ls")
LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


def real_head(path: Path) -> bytes:
    if not path.is_file():
        pytest.skip(f"{path} is not on this system")
    with open(path, "rb") as f:
        return f.read(4096)


# (path, entry type, first bytes or None, expected kind)
TABLE: list[tuple[str, str, bytes | None, str]] = [
    # kernel before boot: the kernel lives in /boot
    ("/boot/vmlinuz-6.1.0-18-amd64", "file", None, "kernel"),
    ("/boot/vmlinuz", "symlink", None, "kernel"),
    ("/vmlinuz", "symlink", None, "kernel"),
    ("/vmlinuz.old", "symlink", None, "kernel"),
    ("/usr/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz", "file", None, "kernel"),
    ("/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz", "file", None, "kernel"),
    ("/efi/EFI/Linux/arch-linux.efi", "file", None, "kernel"),
    ("/boot/efi/EFI/Linux/fedora-6.5.efi", "file", None, "kernel"),
    # boot
    ("/boot/initrd.img-6.1.0-18-amd64", "file", None, "boot"),
    ("/initrd.img", "symlink", None, "boot"),
    ("/boot/grub/grub.cfg", "file", None, "boot"),
    ("/boot/grub/x86_64-efi/normal.mod", "file", None, "boot"),
    ("/boot/config-6.1.0-18-amd64", "file", None, "boot"),
    ("/boot/System.map-6.1.0-18-amd64", "file", None, "boot"),
    ("/boot/efi/EFI/debian/shimx64.efi", "file", None, "boot"),
    ("/efi/loader/loader.conf", "file", None, "boot"),
    ("/boot/grub", "dir", None, "boot"),
    ("/boot", "dir", None, "boot"),
    ("/boot/initrd.img", "symlink", None, "boot"),
    # kernel modules and firmware, both usr-merge spellings
    ("/lib/modules/6.1.0-18-amd64/kernel/fs/btrfs/btrfs.ko", "file", None, "kernel-module"),
    ("/usr/lib/modules/6.1.0-18-amd64/kernel/net/sctp/sctp.ko.xz", "file", None, "kernel-module"),
    (
        "/usr/lib/modules/6.8.0/kernel/drivers/gpu/drm/i915/i915.ko.zst",
        "file",
        None,
        "kernel-module",
    ),
    ("/lib/modules/6.1.0-18-amd64/modules.dep", "file", None, "kernel-module"),
    ("/lib/modules/6.1.0-18-amd64", "dir", None, "kernel-module"),
    ("/lib/firmware/intel-ucode/06-8e-09", "file", None, "firmware"),
    ("/usr/lib/firmware/amd-ucode/microcode_amd_fam17h.bin", "file", None, "firmware"),
    ("/lib/firmware/iwlwifi-9000-pu-b0-jf-b0-46.ucode", "symlink", None, "firmware"),
    # systemd units, drop-ins, enablement and masking symlinks
    ("/lib/systemd/system/ssh.service", "file", None, "systemd-unit"),
    ("/usr/lib/systemd/system/getty@.service", "file", None, "systemd-unit"),
    ("/usr/lib/systemd/system/fstrim.timer", "file", None, "systemd-unit"),
    ("/usr/lib/systemd/system/proc-sys-fs-binfmt_misc.automount", "file", None, "systemd-unit"),
    ("/usr/lib/systemd/system/user@.service.d/timeout.conf", "file", None, "systemd-unit"),
    ("/usr/lib/systemd/system/service.d/10-timeout-abort.conf", "file", None, "systemd-unit"),
    ("/etc/systemd/system/ssh.service.d/override.conf", "file", None, "systemd-unit"),
    ("/etc/systemd/system/multi-user.target.wants/ssh.service", "symlink", None, "systemd-unit"),
    ("/etc/systemd/system/apt-daily.timer", "symlink", None, "systemd-unit"),
    ("/usr/lib/systemd/user/dbus.socket", "file", None, "systemd-unit"),
    ("/etc/systemd/user/sockets.target.wants/gpg-agent.socket", "symlink", None, "systemd-unit"),
    ("/run/systemd/system/session-1.scope", "file", None, "systemd-unit"),
    ("/etc/systemd/system.conf", "file", None, "config"),
    ("/etc/systemd/system/multi-user.target.wants", "dir", None, "config"),
    ("/usr/lib/systemd/system/multi-user.target.wants", "dir", None, "directory"),
    ("/usr/lib/systemd/system-generators/systemd-fstab-generator", "file", None, "other"),
    # python
    ("/usr/lib/python3.11/wsgiref/__init__.py", "file", b"from .x import y\n", "python-source"),
    (
        "/usr/lib/python3.11/wsgiref/__pycache__/__init__.cpython-311.pyc",
        "file",
        None,
        "python-bytecode",
    ),
    ("/usr/lib/python2.7/os.pyo", "file", None, "python-bytecode"),
    (
        "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
        "file",
        None,
        "python-extension",
    ),
    (
        "/usr/lib/python3/dist-packages/_cffi_backend.cpython-311-x86_64-linux-gnu.so",
        "file",
        None,
        "python-extension",
    ),
    (
        "/usr/local/lib/python3.11/site-packages/cryptography/hazmat/bindings/_rust.abi3.so",
        "file",
        None,
        "python-extension",
    ),
    ("/usr/lib/python3/dist-packages/markupsafe/_speedups.so", "file", None, "python-extension"),
    ("/opt/app/lib/_native.cpython-312-aarch64-linux-gnu.so", "file", None, "python-extension"),
    ("/usr/bin/pip3", "file", b"#!/usr/bin/python3\nimport sys\n", "python-source"),
    ("/usr/bin/tool", "file", b"#!/usr/bin/env python3\n", "python-source"),
    ("/usr/local/bin/x", "file", b"#!/usr/bin/env -S python3.11 -u\n", "python-source"),
    ("/usr/bin/y", "file", b"#!/usr/bin/env PYTHONPATH=/opt python\n", "python-source"),
    ("/usr/bin/z", "file", b"#! /usr/bin/python2.7\n", "python-source"),
    ("/usr/bin/py.sh", "file", b'#!/bin/sh\nexec python3 "$@"\n', "script"),
    ("/usr/bin/pythonic", "file", b"#!/usr/bin/perl -w\n", "script"),
    ("/etc/python3.11/sitecustomize.py", "file", None, "python-source"),
    # config: all of /etc, including its directories, symlinks and scripts
    ("/etc/ssh/sshd_config", "file", b"Port 22\n", "config"),
    ("/etc/alternatives/editor", "symlink", None, "config"),
    ("/etc/ssh", "dir", None, "config"),
    ("/etc", "dir", None, "config"),
    ("/etc/init.d/ssh", "file", b"#!/bin/sh\n", "config"),
    ("/etc/cron.daily/apt-compat", "file", b"#!/bin/sh\n", "config"),
    ("/usr/local/etc/app.conf", "file", None, "config"),
    # docs, which win over content: examples under /usr/share/doc are not run
    ("/usr/share/doc/bash/README", "file", None, "docs"),
    ("/usr/share/doc/python3/examples/demo.py", "file", b"#!/usr/bin/python3\n", "docs"),
    ("/usr/share/doc/libssl3/changelog.Debian.gz", "symlink", None, "docs"),
    ("/usr/share/doc/bash", "dir", None, "docs"),
    ("/usr/share/man/man1/ls.1.gz", "file", None, "docs"),
    ("/usr/share/info/coreutils.info.gz", "file", None, "docs"),
    ("/usr/share/locale/de/LC_MESSAGES/coreutils.mo", "file", None, "docs"),
    ("/usr/share/locale-langpack/de/LC_MESSAGES/apt.mo", "file", None, "docs"),
    ("/usr/share/lintian/overrides/bash", "file", None, "docs"),
    ("/usr/share/bug/bash/presubj", "file", None, "docs"),
    # runtime data that looks like docs is not docs
    ("/usr/share/i18n/locales/de_DE", "file", None, "other"),
    ("/usr/share/locale/locale.alias", "file", None, "other"),
    ("/usr/lib/locale/C.utf8/LC_CTYPE", "file", None, "other"),
    # ELF by content, wherever it is
    ("/usr/bin/broken", "file", b"\x7fELF\x09\x01", "elf-unparseable"),
    ("/usr/bin/ls", "file", None, "other"),  # content unknown: nothing to go on
    # the rest
    ("/usr/lib/x86_64-linux-gnu", "dir", None, "directory"),
    ("/usr/lib/x86_64-linux-gnu/libz.so.1", "symlink", None, "symlink"),
    ("/bin", "symlink", None, "symlink"),
    ("/usr/bin/apt-key", "file", b"#!/bin/sh\nset -e\n", "script"),
    ("/usr/share/zoneinfo/Europe/Berlin", "file", b"TZif2", "other"),
    ("/var/lib/dpkg/status", "file", b"Package: bash\n", "other"),
    ("/dev/null", "char", None, "other"),
    ("/dev/sda", "block", None, "other"),
    ("/run/initctl", "fifo", None, "other"),
    ("/run/systemd/journal/socket", "socket", None, "other"),
]


@pytest.mark.parametrize(("path", "entry_type", "head", "kind"), TABLE, ids=[r[0] for r in TABLE])
def test_representative_path_has_expected_kind(
    path: str, entry_type: str, head: bytes | None, kind: str
) -> None:
    assert classify(path, entry_type, head) == kind


def test_every_kind_returned_is_declared_and_declared_once() -> None:
    assert len(set(KINDS)) == len(KINDS)
    assert {classify(p, t, h) for p, t, h, _ in TABLE} <= set(KINDS)


@pytest.mark.parametrize(
    "path",
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/bin/bash",
        "/sbin/init",
        "/lib/systemd/system/cron.service",
        "/lib/modules/6.1.0-18-amd64/kernel/crypto/xts.ko",
        "/lib/firmware/regulatory.db",
        "/lib/python3.11/wsgiref/__init__.py",
        "/lib/systemd/system-generators/systemd-gpt-auto-generator",
    ],
)
def test_usr_merge_twins_classify_alike(path: str) -> None:
    for entry_type, head in (("file", None), ("file", b"#!/bin/sh\n"), ("symlink", None)):
        assert classify(path, entry_type, head) == classify("/usr" + path, entry_type, head)


def test_pie_executable_content_is_executable_under_either_bin() -> None:
    head = real_head(LS)
    assert classify("/bin/ls", "file", head) == "elf-executable"
    assert classify("/usr/bin/ls", "file", head) == "elf-executable"
    assert classify("/usr/lib/systemd/systemd-logind", "file", head) == "elf-executable"


def test_libc_content_is_library_although_it_has_an_interpreter() -> None:
    head = real_head(LIBC)
    assert classify("/lib/x86_64-linux-gnu/libc.so.6", "file", head) == "elf-library"
    assert classify("/usr/lib/x86_64-linux-gnu/libc.so.6", "file", head) == "elf-library"


def test_elf_in_etc_is_elf_and_extension_name_wins_over_elf_content() -> None:
    head = real_head(LIBC)
    assert classify("/etc/vendor/plugin.so", "file", head) == "elf-library"
    extension = "/usr/lib/python3/dist-packages/foo/_bar.cpython-311-x86_64-linux-gnu.so"
    assert classify(extension, "file", head) == "python-extension"


def test_relocatable_object_is_kernel_module_only_under_modules(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (tmp_path / "m.c").write_text("int init_module(void) { return 0; }\n")
    subprocess.run(["gcc", "-c", "m.c", "-o", "m.ko"], cwd=tmp_path, check=True)
    head = (tmp_path / "m.ko").read_bytes()[:4096]
    assert classify("/lib/modules/6.1.0-18-amd64/extra/m.ko", "file", head) == "kernel-module"
    assert classify("/usr/src/m/m.ko", "file", head) == "elf-object"


def test_paths_without_leading_slash_or_with_trailing_slash_are_normalised() -> None:
    assert classify("etc/ssh/", "dir", None) == "config"
    assert classify("lib/systemd/system/ssh.service", "file", None) == "systemd-unit"


def test_unknown_entry_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown entry type"):
        classify("/etc/passwd", "hardlink", None)


def test_only_docs_are_runtime_inert() -> None:
    assert [k for k in KINDS if is_runtime_inert(k)] == ["docs"]


def test_rule_registry_is_ordered_with_unique_names() -> None:
    names = [rule.name for rule in RULES]
    assert len(set(names)) == len(names)
    assert names.index("kernel") < names.index("boot")
    assert names.index("boot") < names.index("symlink")
    assert names.index("docs") < names.index("python-source")
    assert names.index("elf") < names.index("config")


def test_classify_names_kind_members_and_changes_take_strings_too() -> None:
    from imgdiff.model import Change, Kind

    assert classify("/usr/share/doc/x/README", "file", b"x") is Kind.DOCS
    assert all(isinstance(classify(p, t, h), Kind) for p, t, h, _ in TABLE)
    assert tuple(Kind) == KINDS
    assert Change("/etc/a", "modified", kind="config").kind is Kind.CONFIG
    assert Change("/etc/a", "modified").kind is Kind.OTHER
    with pytest.raises(ValueError, match="not-a-kind"):
        Change("/etc/a", "modified", kind="not-a-kind")
