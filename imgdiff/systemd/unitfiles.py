"""An image's systemd unit files: restart order, aliases, configuration, enabled units.

Unit files are read from the image (never from the host's systemd), as systemd finds
and reads them: precedence (`/etc` over `/run` over `/usr/lib`, `/lib` as its usr-merged
twin), an instance's own file before its template's, drop-ins of every name of a unit
(its own, template, dash prefixes, aliases, type), masks (empty or -> /dev/null), linked
units resolved inside the image, continuation and comment lines, and `Exec*=` quoting
and C escapes (`split_command`). `After=`, `Requires=`, `Requisite=` and `BindsTo=`
order a unit after the ones it names, `Before=` the ones it names after it;
`PartOf=`/`BindsTo=` also tie a restart of the named unit to this one (`dependencies`,
`batches`). Alias links name the unit a cgroup carries (`aliases`); `config_sources`
lists the files a service's unit files name, `override_paths` where a file added later
changes it; `ImageUnits` gathers an image's unit-directory entries once and says which
units it defines and enables. Parsing only: nothing is executed, no unit is loaded.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import attrs

from imgdiff.cmdline import path_arguments, plain_path
from imgdiff.errors import Unsupported
from imgdiff.fs.paths import child
from imgdiff.fs.walk import walk
from imgdiff.model import Entry, EntryType, ImageWarning

if TYPE_CHECKING:
    from imgdiff.manifest import Manifest

UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
_ORDER_KEYS = ("After", "Requires", "Requisite", "BindsTo")
MAX_UNIT_BYTES = 1 << 20  # what is parsed of one unit file or drop-in
# the command lines a start runs: their programs count as read (ExecReload=, ExecStop=
# and the like run later, from whatever is on disk then)
_START_LINES = ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost")


def is_unit_file(path: str) -> bool:
    """True for unit files and drop-ins in the system unit directories."""
    parent = posixpath.dirname(path)
    grand = posixpath.dirname(parent)
    return parent in UNIT_DIRS or (grand in UNIT_DIRS and path.endswith(".conf"))


def parse_unit(text: str, section_name: str = "Unit") -> dict[str, list[str]]:
    """The dependency directives of a section (values split into unit names).

    An empty assignment (`After=`) resets the list, as systemd does for drop-ins; it is
    kept as an empty-string marker so a drop-in's reset also clears the main file's list.
    """
    out: dict[str, list[str]] = {}
    for key, value in _directives(text, section_name):
        if key in (*_ORDER_KEYS, "PartOf", "Before"):
            if not value.strip():
                out[key] = [""]
            else:
                out.setdefault(key, []).extend(value.split())
    return out


def _directives(text: str, section_name: str) -> Iterator[tuple[str, str]]:
    """(key, raw value) of one section, continuation lines joined.

    A comment line inside a continuation is skipped and the continuation goes on past it
    (systemd.syntax(7)).
    """
    section = ""
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped[:1] in ("#", ";"):
            continue
        line = pending + stripped
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == section_name and "=" in line:
            key, _, value = line.partition("=")
            yield key.strip(), value.strip()


def _chosen(
    files: Mapping[str, bytes], alias: Mapping[str, str] | None = None
) -> dict[str, tuple[str, list[str]]]:
    """unit name -> (its unit file, its drop-ins in the order they apply), as systemd
    finds them (systemd.unit(5)).

    The unit file is the one of highest precedence under the unit's own name, for an
    instance (`getty@tty1.service`) its template's when it has none. Drop-ins are the
    `.conf` files of `NAME.d/` for the unit's name, its template's, its dash prefixes'
    (`foo-.service.d/` for `foo-bar.service`), its aliases' (`alias`: alias -> unit) and
    its type's (`service.d/`); of two with the same file name, the one found first (the
    more specific name, then the higher-precedence directory) wins, and they apply in
    file-name order. Units are the file names in the unit directories and the instances
    with drop-ins of their own.
    """
    top: dict[str, str] = {}
    for d in reversed(UNIT_DIRS):  # later (higher-precedence) dirs overwrite earlier ones
        for path in files:
            if posixpath.dirname(path) == d:
                top[posixpath.basename(path)] = path
    confs: dict[tuple[str, str], list[str]] = {}  # (unit dir, drop-in dir's name) -> files
    for path in files:
        parent = posixpath.dirname(path)
        if parent.endswith(".d") and posixpath.dirname(parent) in UNIT_DIRS:
            key = (posixpath.dirname(parent), posixpath.basename(parent)[:-2])
            confs.setdefault(key, []).append(path)
    instances = {name for _, name in confs if name not in top and unit_file_name(name) in top}
    also: dict[str, list[str]] = {}
    for name, real in sorted((alias or {}).items()):
        also.setdefault(real, []).append(name)
    out = {}
    for unit in (*top, *sorted(instances)):
        found: dict[str, str] = {}
        for d, name in _dropin_dirs(unit, also.get(unit, ())):
            for path in confs.get((d, name), ()):
                found.setdefault(posixpath.basename(path), path)
        out[unit] = (top.get(unit) or top[unit_file_name(unit)], [found[b] for b in sorted(found)])
    return out


def _dropin_dirs(unit: str, aliases: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(unit dir, name) of each `name.d/` whose drop-ins apply to `unit`, in the order
    systemd looks: each of its names in every directory, then its type's."""
    out = []
    for name in (unit, *aliases):
        for d in UNIT_DIRS:
            out += [(d, n) for n in _specific_names(name)]
    return out + [(d, unit.rpartition(".")[2]) for d in UNIT_DIRS]


def _specific_names(unit: str) -> list[str]:
    """`unit`, its template (for an instance) and its dash prefixes, longest first:
    `foo-bar@a.service`, `foo-bar@.service`, `foo-.service`."""
    stem, _, suffix = unit.rpartition(".")
    parts = stem.partition("@")[0].split("-")
    prefixes = [f"{'-'.join(parts[:i])}-.{suffix}" for i in range(len(parts) - 1, 0, -1)]
    template = unit_file_name(unit)
    return list(dict.fromkeys([unit, template, *prefixes]))


def aliases(links: Mapping[str, str]) -> dict[str, str]:
    """alias unit name -> the unit it names, from unit-directory symlinks (path -> target).

    `sshd.service -> /usr/lib/systemd/system/ssh.service` makes `After=sshd.service` mean
    ssh.service, the name its processes' cgroup carries. Masks (-> /dev/null) and
    `.wants`/`.requires` links are not aliases.
    """
    out: dict[str, str] = {}
    for path, target in links.items():
        if posixpath.dirname(path) not in UNIT_DIRS or target == "/dev/null":
            continue
        alias, real = posixpath.basename(path), posixpath.basename(target)
        if alias != real and alias.rpartition(".")[2] == real.rpartition(".")[2]:
            out[alias] = real
    return out


def dependencies(
    files: Mapping[str, bytes], alias: Mapping[str, str] | None = None
) -> dict[str, set[str]]:
    """unit -> the units it must come after, from unit files and drop-ins by path;
    names go through `alias` (see `aliases`) to the units they stand for."""
    alias = alias or {}
    deps: dict[str, set[str]] = {}
    for unit, (path, dropins) in _chosen(files, alias).items():
        parsed = {k: _after_reset(v) for k, v in parse_unit(_text(files[path])).items()}
        for dropin in dropins:
            for key, names in parse_unit(_text(files[dropin])).items():
                base = [] if "" in names else parsed.get(key, [])
                parsed[key] = [*base, *_after_reset(names)]
        mine = deps.setdefault(alias.get(unit, unit), set())
        for key in _ORDER_KEYS:
            mine.update(alias.get(n, n) for n in parsed.get(key, []))
        for other in parsed.get("PartOf", []) + parsed.get("BindsTo", []):
            # restarting `other` restarts this unit too: it comes after `other`
            mine.add(alias.get(other, other))
        for later in parsed.get("Before", []):  # `Before=x` here is `After=` this in x
            deps.setdefault(alias.get(later, later), set()).add(alias.get(unit, unit))
    return deps


def config_sources(
    files: Mapping[str, bytes], alias: Mapping[str, str] | None = None
) -> dict[str, tuple[str, ...]]:
    """unit -> the paths its unit files name as what the service reads.

    These are the unit file and its drop-ins themselves, `EnvironmentFile=` (a wildcard
    pattern kept as one, see `imgdiff.fs.paths.glob_match`), absolute
    path arguments of `ExecStart=` (and of the other `Exec*=` lines) and the programs of
    the lines a start runs (`ExecCondition=`, `ExecStartPre=`, `ExecStart=`,
    `ExecStartPost=`),
    `ConfigurationDirectory=` (under /etc), and by convention `/etc/NAME/`,
    `/etc/default/NAME` and `/etc/sysconfig/NAME` for `NAME.service`; an empty
    assignment in a later file resets that setting's list. A path ending in "/" stands for
    everything below it. Parsing only: nothing is run or expanded
    (a `%`-specifier or `$VAR` argument is skipped). Where a file added later would
    change the configuration is `override_paths`' answer.
    """
    out: dict[str, tuple[str, ...]] = {}
    for unit, (path, dropins) in _chosen(files, alias).items():
        paths = [path, *dropins]
        for key, values in _settings((path, *dropins), files).items():
            for value in values:
                paths.extend(_named_paths(key, value))
        name = unit.rpartition(".")[0].partition("@")[0]
        if unit.endswith(".service") and name:
            paths += [f"/etc/{name}/", f"/etc/default/{name}", f"/etc/sysconfig/{name}"]
        out[unit] = tuple(dict.fromkeys(paths))
    return out


def override_paths(
    files: Mapping[str, bytes], alias: Mapping[str, str] | None = None
) -> dict[str, tuple[str, ...]]:
    """unit (as `config_sources` names them) -> where a file added later changes its
    configuration (`unit_config_paths` of its name and of its aliases'). A file there
    that is not added (a vendor unit file an /etc copy shadows, edited) is not read."""
    also: dict[str, list[str]] = {}
    for name, real in (alias or {}).items():
        also.setdefault(real, []).append(name)
    return {
        unit: tuple(
            dict.fromkeys(
                p for name in (unit, *also.get(unit, ())) for p in unit_config_paths(name)
            )
        )
        for unit in _chosen(files, alias)
    }


def oversized(files: Mapping[str, bytes], alias: Mapping[str, str] | None = None) -> dict[str, str]:
    """unit -> the first of its unit file and drop-ins over `MAX_UNIT_BYTES`: of those,
    only the first `MAX_UNIT_BYTES` are parsed, so what the unit names is not all known."""
    out = {}
    for unit, (path, dropins) in _chosen(files, alias).items():
        big = next((p for p in (path, *dropins) if len(files[p]) > MAX_UNIT_BYTES), None)
        if big is not None:
            out[unit] = big
    return out


def unit_config_paths(unit: str) -> list[str]:
    """Where a file added later changes `unit`'s configuration: its unit file in every
    unit directory (an /etc copy overrides the vendor's; for an instance, its template's
    too) and its drop-in directories: `UNIT.d/`, the template's, the dash-prefix ones
    (`foo-.service.d/` for `foo-bar.service`) and the unit type's (`service.d/`)."""
    out = []
    for d in UNIT_DIRS:
        out += [f"{d}/{name}" for name in dict.fromkeys([unit, unit_file_name(unit)])]
    return out + [f"{d}/{name}.d/" for d, name in _dropin_dirs(unit)]


def unit_file_name(unit: str) -> str:
    """The template of an instance (`getty@.service` for `getty@tty1.service`), the
    file it is loaded from when it has none of its own; any other unit's own name."""
    name, dot, suffix = unit.rpartition(".")
    if "@" in name:
        name = name.partition("@")[0] + "@"
    return f"{name}{dot}{suffix}"


def _settings(sources: Iterable[str], files: Mapping[str, bytes]) -> dict[str, list[str]]:
    """key -> the values of the [Service] section of `sources` (in order) that apply:
    an empty assignment (`ExecStart=` in a drop-in) resets the list, as systemd does."""
    out: dict[str, list[str]] = {}
    for source in sources:
        for key, value in _directives(_text(files[source]), "Service"):
            if value:
                out.setdefault(key, []).append(value)
            else:
                out[key] = []
    return out


def _named_paths(key: str, value: str) -> list[str]:
    if key == "EnvironmentFile":  # "absolute filename or wildcard expression"
        path = value.lstrip("-")
        return [path] if plain_path(path.replace("*", "").replace("?", "")) else []
    if key == "ConfigurationDirectory":
        return [f"/etc/{d.strip('/')}/" for d in value.split() if plain_path(f"/{d}")]
    if key.startswith("Exec"):
        command = value.lstrip("@-:+!|")
        words = split_command(command)
        if not words:
            return []
        # `@` gives argv[0] apart from the program: a name, not a file the service reads
        args = words[2:] if "@" in value[: len(value) - len(command)] else words[1:]
        named = path_arguments(args)
        if key in _START_LINES and plain_path(words[0]):  # a wrapper the start runs
            named.insert(0, words[0])
        return named
    return []


_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "s": 32}
_WHITESPACE = " \t\n\r"


def split_command(command: str) -> list[str] | None:
    """The words of an `Exec*=` command line as systemd splits them (systemd.service(5),
    "Command lines"; systemd.syntax(7)): separated by whitespace, `"…"` and `'…'` quote,
    and C escapes are decoded in and out of quotes (`\\a \\b \\f \\n \\r \\t \\v
    \\\\ \\" \\' \\s \\xNN \\NNN \\uNNNN \\UNNNNNNNN`; a byte as a raw byte of the path).
    None when systemd would reject the line: an unknown escape, a NUL, an open quote."""
    words: list[str] = []
    word: bytearray | None = None
    quote = ""
    i, n = 0, len(command)
    while i < n:
        c = command[i]
        i += 1
        if not quote and c in _WHITESPACE:
            if word is not None:
                words.append(word.decode("utf-8", "surrogateescape"))
                word = None
            continue
        if word is None:
            word = bytearray()
        if c == "\\":
            if i == n:
                return None
            decoded = _unescape(command, i)
            if decoded is None:
                return None
            data, i = decoded
            word += data
        elif quote and c == quote:
            quote = ""
        elif not quote and c in "\"'":
            quote = c
        else:
            word += c.encode("utf-8", "surrogateescape")
    if quote:
        return None
    if word is not None:
        words.append(word.decode("utf-8", "surrogateescape"))
    return words


def _unescape(text: str, i: int) -> tuple[bytes, int] | None:
    """The bytes of the C escape whose letter is at `text[i]`, and where it ends; None
    for one systemd rejects (unknown, incomplete or NUL)."""
    c = text[i]
    if c in _WHITESPACE:  # an escaped separator is itself
        return c.encode(), i + 1
    if c in _ESCAPES:
        return bytes([_ESCAPES[c]]), i + 1
    if c in "\\\"'":
        return c.encode(), i + 1
    for letter, digits, base in (("x", 2, 16), ("u", 4, 16), ("U", 8, 16), ("", 3, 8)):
        if c == letter or (not letter and c in "01234567"):
            start = i + len(letter)
            code = text[start : start + digits]
            try:
                value = int(code, base) if len(code) == digits and code.isascii() else -1
            except ValueError:
                return None
            if value <= 0 or value > 0x10FFFF or (not letter and value > 0xFF):
                return None
            if letter in ("x", ""):  # a byte
                return bytes([value]), start + digits
            if 0xD800 <= value <= 0xDFFF:
                return None
            return chr(value).encode(), start + digits
    return None


def _after_reset(names: list[str]) -> list[str]:
    """The names after the last reset marker."""
    if "" in names:
        names = names[len(names) - names[::-1].index("") :]
    return names


def _text(data: bytes) -> str:
    return data[:MAX_UNIT_BYTES].decode("utf-8", "surrogateescape")  # as paths are


def batches(units: Collection[str], deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """`units` in batches: each after every unit it (transitively) depends on; the units
    of one batch are independent and may restart in parallel. A cycle is broken by
    putting its members in the same batch, sorted by name."""
    wanted = set(units)
    needs: dict[str, set[str]] = {}
    for unit in wanted:
        seen: set[str] = set()
        stack = list(deps.get(unit, ()))
        while stack:  # reachability through units outside the plan too
            nxt = stack.pop()
            if nxt in seen:
                continue
            seen.add(nxt)
            stack.extend(deps.get(nxt, ()))
        needs[unit] = (seen & wanted) - {unit}
    out: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(wanted):
        ready = sorted(u for u in wanted - done if needs[u] <= done)
        if not ready:  # a cycle: take the rest of it together
            ready = sorted(wanted - done)
        out.append(ready)
        done.update(ready)
    return out


# -- unit files of an image -------------------------------------------------------


@attrs.frozen
class ImageUnits:
    """An image's entries in the unit directories (and one level below: drop-ins,
    `.wants` links), gathered in one pass over its manifest."""

    manifest: Manifest = attrs.field(eq=False, repr=False)
    entries: tuple[tuple[str, Entry], ...]

    @classmethod
    def of(cls, manifest: Manifest) -> ImageUnits:
        """The unit-directory entries of `manifest`."""
        found = []
        entries = manifest.entries
        for p in entries:  # paths first: a large image makes entries on demand
            parent = posixpath.dirname(p)
            if parent in UNIT_DIRS or posixpath.dirname(parent) in UNIT_DIRS:
                found.append((p, entries[p]))
        return cls(manifest, tuple(found))

    def names(self) -> set[str]:
        """Units the image defines: unit files and alias links in the unit directories. A
        unit whose file of highest precedence is empty or a link to /dev/null is masked
        (systemd.unit(5)): it is not defined."""
        top: dict[str, tuple[str, Entry]] = {}
        for d in reversed(UNIT_DIRS):  # later (higher-precedence) dirs overwrite earlier ones
            for p, e in self.entries:
                if posixpath.dirname(p) == d and e.type in (EntryType.FILE, EntryType.SYMLINK):
                    top[posixpath.basename(p)] = (p, e)
        return {name for name, (p, e) in top.items() if not self._masks(p, e)}

    def _masks(self, path: str, entry: Entry) -> bool:
        """True for an empty unit file or drop-in and for a link leading to /dev/null."""
        if entry.type is EntryType.FILE:
            return entry.size == 0
        return entry.type is EntryType.SYMLINK and self._resolve(path) == "/dev/null"

    def _resolve(self, path: str) -> str | None:
        """Where `path` leads inside the image (None for a symlink loop)."""
        entries = self.manifest.entries

        def readlink(parent: str, name: str, _last: bool) -> str | None:
            e = entries.get(child(parent, name))
            return e.target if e is not None and e.type is EntryType.SYMLINK else None

        try:
            return walk(path, readlink)
        except OSError:
            return None

    def enabled(self) -> dict[str, str]:
        """unit -> the `.wants`/`.requires` link that enables it (`systemctl enable`)."""
        found: dict[str, str] = {}
        for p, e in self.entries:
            if e.type is EntryType.SYMLINK and posixpath.dirname(p).endswith(
                (".wants", ".requires")
            ):
                found.setdefault(posixpath.basename(p), p)
        return found

    def files(self) -> dict[str, bytes]:
        """The image's unit files and drop-ins (`read`)."""
        return self.read()[0]

    def read(self) -> tuple[dict[str, bytes], tuple[ImageWarning, ...]]:
        """The image's unit files and drop-ins, and warnings on the links among them
        that could not be read.

        Regular files; masks (a link to /dev/null) as the empty files systemd takes them
        for; and links to a file of the same name (a linked unit, `systemctl link`, or a
        drop-in kept elsewhere) with the contents of the file they lead to, resolved
        inside the image, never outside it. Alias links (another unit's name) are not
        read: `aliases` names them, and reading them would make a streamed archive be
        read again for nothing.
        """
        found = self.manifest.read_files(
            p for p, e in self.entries if e.type is EntryType.FILE and is_unit_file(p)
        )
        linked: dict[str, str] = {}
        for p, e in self.entries:
            if e.type is not EntryType.SYMLINK or not is_unit_file(p):
                continue
            if self._masks(p, e):
                found[p] = b""
            elif (real := self._resolve(p)) is not None and (
                posixpath.basename(real) == posixpath.basename(p)
                or posixpath.dirname(p) not in UNIT_DIRS  # a drop-in: any name
            ):
                linked[p] = real
        outside = {real for real in linked.values() if real not in found}
        warnings: list[ImageWarning] = []
        try:
            found.update(self.manifest.read_files(outside) if outside else {})
        except Unsupported as exc:  # a saved manifest keeps unit directories' files only
            warnings += [
                ImageWarning(p, f"linked unit file not read: {exc}")
                for p, real in linked.items()
                if real in outside
            ]
        for p, real in linked.items():
            if real in found:
                found[p] = found[real]
        for real in outside:  # read for a link: not a unit file where it is
            found.pop(real, None)
        return found, tuple(warnings)

    def alias_links(self) -> dict[str, str]:
        """Symlinks in the unit directories (path -> target), for `aliases`."""
        return {
            p: e.target
            for p, e in self.entries
            if e.type is EntryType.SYMLINK and e.target and is_unit_file(p)
        }
