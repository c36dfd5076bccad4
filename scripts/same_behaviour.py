"""Does the working tree behave exactly as a git revision does? The check for refactors.

Runs every command twice, once with the code of BASE (a temporary `git worktree add
--detach`, removed at the end) and once with the working tree's code, and compares what
they print. Each run is `.venv/bin/python -P -m imgdiff ...` with PYTHONPATH set to its
checkout, from an empty directory, so each imports its own `imgdiff` package (checked
before anything runs); every side has its own digest cache ($XDG_CACHE_HOME) and both
are given the very same argument paths.

What runs, on the real image pair (`bash ../shared/corpus/build-image-pair.sh`, under
/var/tmp/imgdiff-corpus) and on the demo's images:

- `diff` (dir/dir, tar/tar, dir/tar), `packages` (dirs, tars), `verify` (OLD against NEW,
  OLD against old.tar), `manifest OLD -o M` with each code, then `diff M NEW` of each M
  with each code (old manifests read by new code and the reverse);
- with 60 processes chrooted into OLD in cgroups as units (`benchmarks.bench_plan`'s
  `running`): `snapshot`, `stale`, `plan --no-cache`, and `plan --snapshot S` on a
  snapshot S saved once by BASE;
- `imgdiff demo --keep DIR` once, then `diff`/`packages` of its two images, and `demo
  --json` with each code (the services' pids replaced by their names); then `stale`,
  `snapshot` and `plan` with three processes in the demo's OLD whose library and config
  are replaced under them (so that stale has something to report);
- bad input (a missing path, old.tar truncated to 1000 bytes, a manifest with garbage
  after its header, a file of junk, a garbage snapshot): same exit code, same first
  line of stderr.

How JSON is compared: both documents are parsed; the only fields normalised are those
that differ between two runs of the same code against the same processes (snapshot's
`taken_at`; the demo's pids). The only differences allowed are additive keys present on
one side only: `code` in an element of any `reasons` list, `location` in a pip package
record (a dict whose `manager` is "pip"), and `reason_codes` at the top of a verdict
document (schema `imgdiff.verdict/1`: plan, demo). Anything else, including the order of
keys, is a difference: its JSON path and both values are printed (20 per command). Each
command also says whether stdout was byte-identical as-is, or only once normalised and
stripped of the additive keys (both re-dumped as imgdiff dumps). Unless --no-control,
BASE also runs every command a second time: a command whose two BASE runs disagree is
reported UNSTABLE, as its comparison proves nothing.

Run as root (cgroups, chroot), from anywhere:

    .venv/bin/python scripts/same_behaviour.py BASE [--corpus DIR] [--keep] [--no-control]

BASE is any git revision (HEAD, HEAD~3, a tag). `--other REV` compares BASE with REV
instead of with the working tree. `--keep` keeps every output under the printed scratch
directory. Exit status: 0 everything the same, 1 some command differs, 2 could not tell
(set-up failed, a command was skipped, or BASE disagrees with itself).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import zstandard

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
CORPUS = "/var/tmp/imgdiff-corpus"  # noqa: S108 - where build-image-pair.sh writes the pair
PROCESSES = 60
MAX_SHOWN = 20
VERDICT_SCHEMA = "imgdiff.verdict/1"
T0 = time.monotonic()

JsonPath = tuple[str | int, ...]
Normaliser = Callable[[Any], list[str]]


def progress(msg: str) -> None:
    """One progress line on stderr, with the seconds since start."""
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """The comparison cannot be made (exit 2)."""


# -- running one side -------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One copy of the code: a checkout root and its own digest cache."""

    label: str
    root: Path
    cache: Path


@dataclass(frozen=True)
class Run:
    """What one command printed."""

    rc: int
    stdout: bytes
    stderr: bytes
    seconds: float

    def first_err(self) -> str:
        lines = self.stderr.decode(errors="replace").strip().splitlines()
        return lines[0] if lines else ""

    def err_summary(self) -> str:
        """The first line of stderr; for a traceback, its last line too."""
        lines = self.stderr.decode(errors="replace").strip().splitlines()
        if lines and lines[0].startswith("Traceback"):
            return f"{lines[0]} ... {lines[-1]}"
        return lines[0] if lines else ""


class Runner:
    """Runs `python -m imgdiff` for a side, from an empty directory."""

    def __init__(self, python: Path, cwd: Path) -> None:
        self.python = python
        self.cwd = cwd

    def env(self, side: Side) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(PYTHONPATH=str(side.root), XDG_CACHE_HOME=str(side.cache), LANG="C.UTF-8")
        return env

    def python_argv(self, *args: str) -> list[str]:
        # -P: the current directory is not put first on sys.path; PYTHONPATH then comes
        # before site-packages, where the editable install's .pth adds /work/main last
        return [str(self.python), "-P", *args]

    def run(self, side: Side, argv: Sequence[str]) -> Run:
        t = time.monotonic()
        proc = subprocess.run(
            self.python_argv("-m", "imgdiff", *argv),
            cwd=self.cwd,
            env=self.env(side),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t)

    def check_imports(self, side: Side) -> None:
        """Refuse to go on unless this side imports its own imgdiff (and its submodules)."""
        code = "import imgdiff, imgdiff.cli; print(imgdiff.__file__); print(imgdiff.cli.__file__)"
        proc = subprocess.run(
            self.python_argv("-c", code),
            cwd=self.cwd,
            env=self.env(side),
            capture_output=True,
            text=True,
            check=False,
        )
        want = [str(side.root / "imgdiff" / "__init__.py"), str(side.root / "imgdiff" / "cli.py")]
        got = proc.stdout.split()
        if proc.returncode != 0 or got != want:
            raise SetupError(
                f"{side.label}: imgdiff imported from {got or proc.stderr.strip()}, "
                f"not from {side.root}"
            )
        progress(f"{side.label}: imports {got[0]}")


# -- comparing JSON ---------------------------------------------------------------------


def fmt_path(path: JsonPath, doc: Any = None) -> str:
    """`$.changes[86].kind`; an element with a path, name, pid or unit is named by it:
    `$.changes[86 /usr/bin/x].kind`, so a difference can be found in either document."""
    out, node = "$", doc
    for step in path:
        try:
            node = node[step] if node is not None else None
        except (KeyError, IndexError, TypeError):
            node = None
        if not isinstance(step, int):
            out += f".{step}"
            continue
        keys = ("path", "name", "pid", "unit")
        name = next((node[k] for k in keys if isinstance(node, dict) and node.get(k)), None)
        out += f"[{step}]" if name is None else f"[{step} {name}]"
    return out


def short(value: Any, width: int = 110) -> str:
    text = "<absent>" if value is _ABSENT else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


_ABSENT = object()


@dataclass
class Comparison:
    """Differences between two documents, and the additive keys let through."""

    diffs: list[tuple[JsonPath, Any, Any]] = field(default_factory=list)
    additive: list[tuple[int, JsonPath]] = field(default_factory=list)  # (side 0/1, key path)


def is_additive(
    key: str, path: JsonPath, container: str | int | None, a: dict[str, Any], b: dict[str, Any]
) -> bool:
    """`code` in an element of a `reasons` list; `location` in a pip package record;
    `reason_codes` at the top of a verdict document."""
    if key == "reason_codes":
        return path == () and VERDICT_SCHEMA in (a.get("schema"), b.get("schema"))
    if key == "code":
        return container == "reasons"
    if key == "location":
        return "pip" in (a.get("manager"), b.get("manager"))
    return False


def compare(
    a: Any, b: Any, out: Comparison, allow: bool, path: JsonPath = (), container: Any = None
) -> None:
    """Walk two parsed documents side by side; `container` is the key holding a list."""
    if isinstance(a, dict) and isinstance(b, dict):
        compare_dicts(a, b, out, allow, path, container)
    elif isinstance(a, list) and isinstance(b, list):
        key = path[-1] if path else None
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            compare(x, y, out, allow, (*path, i), key)
        if len(a) != len(b):
            out.diffs.append(((*path, "<length>"), len(a), len(b)))
            for i in range(min(len(a), len(b)), max(len(a), len(b))):  # the elements beyond
                out.diffs.append(
                    ((*path, i), a[i] if i < len(a) else _ABSENT, b[i] if i < len(b) else _ABSENT)
                )
    elif type(a) is not type(b) or a != b:
        out.diffs.append((path, a, b))


def compare_dicts(
    a: dict[str, Any],
    b: dict[str, Any],
    out: Comparison,
    allow: bool,
    path: JsonPath,
    container: Any,
) -> None:
    for key in [*a, *(k for k in b if k not in a)]:
        if key in a and key in b:
            continue
        if allow and is_additive(key, path, container, a, b):
            out.additive.append((0 if key in a else 1, (*path, key)))
        else:
            out.diffs.append(((*path, key), a.get(key, _ABSENT), b.get(key, _ABSENT)))
    common_a = [k for k in a if k in b]
    common_b = [k for k in b if k in a]
    if common_a != common_b:
        out.diffs.append(((*path, "<key order>"), common_a, common_b))
    for key in common_a:
        compare(a[key], b[key], out, allow, (*path, key), container)


def without(doc: Any, paths: list[JsonPath]) -> Any:
    """A copy of `doc` with the keys at `paths` removed."""
    doc = copy.deepcopy(doc)
    for path in paths:
        node = doc
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]
    return doc


def dumps(doc: Any) -> bytes:
    """As imgdiff.report.json.dumps writes a document (and the CLI's newline)."""
    return (json.dumps(doc, ensure_ascii=True, separators=(",", ":")) + "\n").encode()


def normalise_snapshot(doc: Any) -> list[str]:
    """The capture time is the one field two snapshots of the same processes differ in."""
    if isinstance(doc, dict) and "taken_at" in doc:
        doc["taken_at"] = "<time>"
        return ["taken_at"]
    return []


def normalise_demo(doc: Any) -> list[str]:
    """Each demo run starts its own services: their pids become their names."""
    pids = doc.get("demo_pids") if isinstance(doc, dict) else None
    if not isinstance(pids, dict):
        return []
    names = {pid: f"<{name}>" for name, pid in pids.items()}
    doc["demo_pids"] = {name: f"<{name}>" for name in pids}

    def walk(node: Any, key: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if key in {"pid", "pids"} and isinstance(node, int):
            return names.get(node, node)
        return node

    new = walk(doc, None)
    doc.clear()
    doc.update(new)
    return ["demo pids"]


# -- one command, both sides ------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A command to run with every side, and how its output is compared."""

    argv: tuple[str, ...]
    normalise: Normaliser | None = None
    expect_ok: bool = True  # False: bad input, compared by exit code and first stderr line


@dataclass
class Outcome:
    """The verdict on one command: same, DIFFERENT, UNSTABLE or SKIPPED, with details."""

    name: str
    status: str
    lines: list[str] = field(default_factory=list)


class Checker:
    """Runs cases on BASE, the other side and (as control) BASE again; keeps the outcomes."""

    def __init__(
        self,
        runner: Runner,
        base: Side,
        other: Side,
        control: Side | None,
        show: Callable[[str], str],
    ) -> None:
        self.runner = runner
        self.base, self.other, self.control = base, other, control
        self.show = show
        self.outcomes: list[Outcome] = []
        self.keep_dir: Path | None = None

    def skip(self, argv: Sequence[str], why: str) -> None:
        """A command that could not be compared (the run cannot say "same")."""
        self.outcomes.append(Outcome(self.show(shlex.join(argv)), "SKIPPED", [why]))
        progress(f"skipped: {why}")

    def sides(self) -> list[Side]:
        return [self.base, self.other] + ([self.control] if self.control else [])

    def run_all(self, argv: Sequence[str]) -> dict[str, Run]:
        runs = {s.label: self.runner.run(s, argv) for s in self.sides()}
        timing = ", ".join(f"{k} {r.seconds:.1f}s" for k, r in runs.items())
        progress(f"{self.show(shlex.join(argv))}: {timing}")
        if self.keep_dir is not None:
            n = len(self.outcomes) + 1
            for label, r in runs.items():
                (self.keep_dir / f"{n:02d}-{label}.out").write_bytes(r.stdout)
                (self.keep_dir / f"{n:02d}-{label}.err").write_bytes(r.stderr)
        return runs

    def check(self, case: Case) -> Outcome:
        name = self.show(shlex.join(case.argv))
        runs = self.run_all(case.argv)
        base, other = runs[self.base.label], runs[self.other.label]
        outcome = Outcome(name, "same")
        if self.control is not None:
            noise = judge(case, base, runs[self.control.label], allow=False)
            if noise:
                outcome.status = "UNSTABLE"
                outcome.lines.append(f"{self.base.label} differs from itself:")
                outcome.lines += ["  " + line for line in noise]
        found = judge(case, base, other, allow=True, notes=outcome.lines)
        if found:
            outcome.status = "DIFFERENT"
            outcome.lines[:0] = found
        self.outcomes.append(outcome)
        return outcome


def judge(case: Case, a: Run, b: Run, allow: bool, notes: list[str] | None = None) -> list[str]:
    """The differences between two runs of a case (empty: the same); notes on bytes."""
    if a.rc != b.rc:
        return [
            f"exit code: {a.rc} vs {b.rc}",
            f"  stderr: {a.err_summary()!r}",
            f"      vs: {b.err_summary()!r}",
        ]
    if not case.expect_ok or (a.rc != 0 and not a.stdout and not b.stdout):
        if a.first_err() != b.first_err():
            return [f"stderr: {a.first_err()!r}", f"    vs: {b.first_err()!r}"]
        if notes is not None:
            notes.append(f"exit {a.rc}: {a.first_err()}")
        return []
    docs = []
    for run in (a, b):
        try:
            docs.append(json.loads(run.stdout))
        except ValueError as exc:
            return [f"stdout is not JSON ({exc}); stderr: {run.err_summary()!r}"]
    normalised = []
    if case.normalise is not None:
        normalised = case.normalise(docs[0])
        case.normalise(docs[1])
    cmp = Comparison()
    compare(docs[0], docs[1], cmp, allow)
    if cmp.diffs:
        same_bytes = "identical" if a.stdout == b.stdout else "differ"
        return [*diff_lines(cmp, docs[0]), f"stdout bytes: {same_bytes}"]
    raw_same = a.stdout == b.stdout
    if not raw_same and not cmp.additive and not normalised:
        return ["same values, but the stdout bytes differ (formatting or escaping)"]
    canonical = [
        dumps(without(d, [p for s, p in cmp.additive if s == i])) for i, d in enumerate(docs)
    ]
    formatted = [r.stdout == dumps(json.loads(r.stdout)) for r in (a, b)]
    if canonical[0] != canonical[1] or (not raw_same and formatted[0] != formatted[1]):
        return ["same values, but the bytes differ (formatting or escaping)"]
    if notes is not None:
        notes.append(bytes_note(raw_same, cmp, normalised, a.rc))
    return []


def diff_lines(cmp: Comparison, doc: Any) -> list[str]:
    """The first MAX_SHOWN differences: JSON path, then both values."""
    lines = []
    for path, x, y in cmp.diffs[:MAX_SHOWN]:
        where, left, right = fmt_path(path, doc), short(x), short(y)
        if len(where) + len(left) + len(right) < 100:
            lines.append(f"{where}: {left} vs {right}")
        else:
            lines += [f"{where}:", f"    {left}", f" vs {right}"]
    if len(cmp.diffs) > MAX_SHOWN:
        lines.append(f"... and {len(cmp.diffs) - MAX_SHOWN} more; all {len(cmp.diffs)} by place:")
        places = Counter(
            "$" + "".join("[*]" if isinstance(p, int) else f".{p}" for p in path)
            for path, _, _ in cmp.diffs
        )
        lines += [f"  {n:6d}  {place}" for place, n in places.most_common(MAX_SHOWN)]
    return lines


def bytes_note(raw_same: bool, cmp: Comparison, normalised: list[str], rc: int) -> str:
    if raw_same:
        note = "stdout bytes identical as-is"
    else:
        what = [f"{len(cmp.additive)} additive keys removed"] if cmp.additive else []
        what += [f"{', '.join(normalised)} normalised"] if normalised else []
        note = f"stdout bytes identical after {' and '.join(what)}"
    return note + (f"; both exit {rc}" if rc else "")


# -- the git worktree and the inputs ----------------------------------------------------


def git(*args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SetupError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@contextlib.contextmanager
def worktree(rev: str, where: Path) -> Iterator[Path]:
    """A detached checkout of `rev` at `where`, removed (and unregistered) at exit."""
    commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    git("worktree", "add", "--detach", str(where), commit)
    progress(f"worktree of {rev} ({commit[:12]}) at {where}")
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(where, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)


def bad_inputs(corpus: Path, scratch: Path, manifest: Path | None) -> dict[str, Path]:
    """Files of bad input: a truncated tar, a manifest with garbage (made from BASE's
    manifest, if it wrote one), a junk file, a bad snapshot; and a path that does not exist."""
    bad = scratch / "bad"
    bad.mkdir()
    with (corpus / "old.tar").open("rb") as fh:
        (bad / "truncated.tar").write_bytes(fh.read(1000))
    head = b'{"schema":"imgdiff.manifest/1",'
    if manifest is not None:
        with manifest.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as inflate:
            head = inflate.read(300)  # the real header: the file is taken for a manifest
    garbage = head + b"\x00garbage\xff]]}"
    (bad / "garbage.manifest").write_bytes(zstandard.ZstdCompressor().compress(garbage))
    (bad / "junk.bin").write_bytes(bytes(range(256)) * 8)
    (bad / "garbage-snapshot.json").write_text('{"schema": "imgdiff.snapshot/1", "processes": 7}')
    return {
        "truncated": bad / "truncated.tar",
        "manifest": bad / "garbage.manifest",
        "junk": bad / "junk.bin",
        "snapshot": bad / "garbage-snapshot.json",
        "missing": bad / "no-such-dir",
    }


# -- the session ------------------------------------------------------------------------


def static_cases(old: str, new: str, old_tar: str, new_tar: str) -> list[Case]:
    return [
        Case(("diff", old, new, "--json", "--no-cache")),
        Case(("diff", old_tar, new_tar, "--json", "--no-cache")),
        Case(("diff", old, new_tar, "--json", "--no-cache")),
        Case(("packages", old, new, "--json")),
        Case(("packages", old_tar, new_tar, "--json")),
        Case(("verify", old, new, "--json")),
        Case(("verify", old, old_tar, "--json")),
    ]


def manifest_round_trip(chk: Checker, old: str, new: str, scratch: Path) -> Path | None:
    """`manifest OLD -o M` with each code, then `diff M NEW` of each M with each code
    (so each code reads the other's file); the saved files are compared too."""
    saved: dict[str, Path] = {}
    outcome = Outcome("manifest OLD -o M (and the files it writes)", "same")
    runs = {}
    for side in chk.sides():
        out = scratch / f"old-{side.label}.manifest"
        runs[side.label] = run = chk.runner.run(side, ("manifest", old, "-o", str(out)))
        progress(f"manifest OLD -o {out.name} ({side.label}): exit {run.rc}, {run.seconds:.1f}s")
        if run.rc == 0 and out.is_file():
            saved[side.label] = out
    base, other = chk.base.label, chk.other.label
    found = judge(Case((), expect_ok=False), runs[base], runs[other], allow=False)
    if not found and base in saved and other in saved:
        found = file_diff(saved[base], saved[other])
    if chk.control is not None and base in saved:
        noise = file_diff(saved[base], saved.get(chk.control.label))
        if noise:
            outcome.status = "UNSTABLE"
            outcome.lines += [f"{base} differs from itself:", *("  " + x for x in noise)]
    if found:
        outcome.status = "DIFFERENT"
        outcome.lines[:0] = found
    elif outcome.status == "same":
        outcome.lines.append("byte-identical files" if base in saved else "no file on either side")
    chk.outcomes.append(outcome)
    for label in (base, other):
        if label in saved:
            chk.check(Case(("diff", str(saved[label]), new, "--json")))
    return saved.get(base)


def file_diff(a: Path, b: Path | None) -> list[str]:
    """How two saved manifests (zstd JSON) differ: nothing if byte-identical."""
    if b is None:
        return ["no manifest file written"]
    if a.read_bytes() == b.read_bytes():
        return []
    docs = []
    for path in (a, b):
        with path.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as inflate:
            docs.append(json.loads(inflate.read()))
    cmp = Comparison()
    compare(docs[0], docs[1], cmp, allow=False)
    if not cmp.diffs:
        return ["the saved files differ in bytes, not in values"]
    return ["the saved manifests differ:", *diff_lines(cmp, docs[0])]


def in_root(proc: Path, root: str) -> bool:
    with contextlib.suppress(OSError):
        return os.readlink(proc / "root") == root
    return False


def live_cases(chk: Checker, old: str, new: str, scratch: Path) -> None:
    """Commands against processes running in OLD, started as benchmarks.bench_plan does."""
    sys.path.insert(0, str(REPO))
    from benchmarks.bench_plan import running

    progress(f"starting {PROCESSES} processes chrooted into OLD, in cgroups")
    others = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and in_root(p, old)]
    if others:
        progress(f"warning: processes already run in OLD (pids {', '.join(others[:10])}...)")
    with running(old, PROCESSES):
        progress("processes set up")
        chk.check(Case(("snapshot", "--root", old, "--json"), normalise_snapshot))
        chk.check(Case(("stale", "--root", old, "--json")))
        chk.check(Case(("plan", old, new, "--root", old, "--json", "--no-cache")))
        snap = scratch / "snapshot.json"
        run = chk.runner.run(chk.base, ("snapshot", "--root", old, "-o", str(snap)))
        argv = ("plan", old, new, "--root", old, "--snapshot", str(snap), "--json")
        if run.rc == 0:
            chk.check(Case(argv))
        else:
            chk.skip(argv, f"{chk.base.label} could not save the snapshot: {run.err_summary()}")
    progress("processes stopped")


def demo_cases(chk: Checker, scratch: Path) -> None:
    """The demo's images, built once by BASE; and `demo --json` with each code."""
    images = scratch / "demo"
    run = chk.runner.run(chk.base, ("demo", "--keep", str(images)))
    progress(f"demo --keep ({chk.base.label}): exit {run.rc}, {run.seconds:.1f}s")
    if run.rc != 0:
        chk.skip(("demo", "--keep", str(images)), f"the demo failed: {run.err_summary()}")
        return
    old, new = str(images / "old"), str(images / "new")
    chk.check(Case(("diff", old, new, "--json", "--no-cache")))
    chk.check(Case(("packages", old, new, "--json")))
    chk.check(Case(("demo", "--json", "--keep", str(scratch / "demo-each")), normalise_demo))
    replaced_cases(chk, images)


# what the services of the stale scenario hold: a mapped library, a config, a same-bytes file
HOLDER = (
    "import ctypes, time; ctypes.CDLL('libssl.so.3'); conf = open('/etc/app/app.conf'); "
    "name = open('/etc/hostname'); print('ready', flush=True); time.sleep(600)"
)
DEMO_PYTHON = "/usr/bin/python3.11"  # what `imgdiff demo` installs into its images


@contextlib.contextmanager
def holders(root: Path, n: int) -> Iterator[list[int]]:
    """N Python processes chrooted into `root`, set up; killed and reaped at exit."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            proc = subprocess.Popen(
                ["chroot", str(root), DEMO_PYTHON, "-I", "-S", "-c", HOLDER],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise SetupError(f"a process in {root} did not start")
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
            if proc.stdout:
                proc.stdout.close()


def replace(path: Path, data: bytes) -> None:
    """Write-and-rename, as a package manager does: a new inode at `path`."""
    tmp = path.with_name(path.name + ".same-behaviour-new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def replaced_cases(chk: Checker, images: Path) -> None:
    """`stale`, `snapshot` and `plan` against processes whose files were then replaced
    under them (on the real pair nothing in OLD is replaced, so stale finds nothing
    there): three processes in the demo's OLD hold libssl mapped and two files open,
    then libssl and the config are replaced and the other file rewritten with the
    same bytes (which stale must not report)."""
    old, new = images / "old", images / "new"
    try:
        with holders(old, 3):
            progress("3 processes in the demo's OLD; replacing libssl, app.conf, hostname")
            lib = (old / "usr/lib/x86_64-linux-gnu/libssl.so.3").resolve()
            replace(lib, lib.read_bytes() + b"\0replaced\0")
            replace(old / "etc/app/app.conf", b"listen = 8080\nworkers = 6\n")
            replace(old / "etc/hostname", (old / "etc/hostname").read_bytes())
            chk.check(Case(("stale", "--root", str(old), "--json")))
            chk.check(Case(("snapshot", "--root", str(old), "--json"), normalise_snapshot))
            argv = ("plan", str(old), str(new), "--root", str(old), "--json", "--no-cache")
            chk.check(Case(argv))
    except (SetupError, OSError) as exc:
        chk.skip(("stale", "--root", str(old), "--json"), f"replaced-files scenario: {exc}")


def error_cases(chk: Checker, old: str, new: str, bad: dict[str, Path]) -> None:
    for argv in (
        ("diff", str(bad["missing"]), new, "--json"),
        ("diff", str(bad["truncated"]), new, "--json", "--no-cache"),
        ("packages", str(bad["truncated"]), new, "--json", "--no-cache"),
        ("diff", str(bad["manifest"]), new, "--json"),
        ("diff", str(bad["junk"]), new, "--json"),
        ("verify", str(bad["missing"]), old, "--json"),
        ("snapshot", "--root", str(bad["missing"]), "--json"),
        ("plan", old, new, "--root", old, "--snapshot", str(bad["snapshot"]), "--json"),
    ):
        chk.check(Case(argv, expect_ok=False))


def report(outcomes: Sequence[Outcome], seconds: float, show: Callable[[str], str]) -> int:
    """One line per command (more under a difference); the exit status."""
    for o in outcomes:
        if o.status == "same":
            print(show(f"same: {o.name}  [{'; '.join(o.lines)}]"))
            continue
        print(show(f"{o.status}: {o.name}"))
        for line in o.lines:
            print(show(f"    {line}"))
    count = Counter(o.status for o in outcomes)
    progress(
        f"{count['same']} same, {count['DIFFERENT']} different, {count['UNSTABLE']} unstable, "
        f"{count['SKIPPED']} skipped ({len(outcomes)} checks, {seconds:.0f} s)"
    )
    if count["DIFFERENT"]:
        return 1
    return 2 if count["UNSTABLE"] or count["SKIPPED"] else 0


def session(args: argparse.Namespace, scratch: Path) -> int:
    corpus = Path(os.path.realpath(args.corpus))
    old, new = str(corpus / "old"), str(corpus / "new")
    old_tar, new_tar = str(corpus / "old.tar"), str(corpus / "new.tar")
    for path in (old, new, old_tar, new_tar):
        if not os.path.exists(path):
            raise SetupError(f"{path} is missing: bash ../shared/corpus/build-image-pair.sh")
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    cwd = scratch / "cwd"
    cwd.mkdir()
    for d in ("cache-base", "cache-other", "cache-control"):
        (scratch / d).mkdir()

    def show(text: str) -> str:
        return text.replace(str(corpus) + "/", "").replace(str(scratch), "$TMP")

    with contextlib.ExitStack() as stack:
        base_root = stack.enter_context(worktree(args.base, scratch / "base"))
        if args.other:
            other_root = stack.enter_context(worktree(args.other, scratch / "other"))
        else:
            other_root = REPO
        base = Side("base", base_root, scratch / "cache-base")
        other = Side("other" if args.other else "work", other_root, scratch / "cache-other")
        control = (
            None if args.no_control else Side("base-again", base_root, scratch / "cache-control")
        )
        runner = Runner(python, cwd)
        for side in (base, other):
            runner.check_imports(side)
        chk = Checker(runner, base, other, control, show)
        if args.keep:
            chk.keep_dir = scratch / "outputs"
            chk.keep_dir.mkdir()
        for case in static_cases(old, new, old_tar, new_tar):
            chk.check(case)
        manifest = manifest_round_trip(chk, old, new, scratch)
        live_cases(chk, old, new, scratch)
        demo_cases(chk, scratch)
        error_cases(chk, old, new, bad_inputs(corpus, scratch, manifest))
    return report(chk.outcomes, time.monotonic() - T0, show)


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the blocks that stop processes


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("base", metavar="BASE", help="git revision to compare the working tree with")
    ap.add_argument(
        "--corpus", default=CORPUS, help=f"holds old/, new/, old.tar, new.tar ({CORPUS})"
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory and outputs")
    ap.add_argument("--no-control", action="store_true", help="do not run BASE twice")
    ap.add_argument("--other", metavar="REV", help=argparse.SUPPRESS)  # REV instead of the tree
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: processes are chrooted into OLD and put in cgroups", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    scratch = Path(tempfile.mkdtemp(prefix="same-behaviour-"))
    try:
        return session(args, scratch)
    except SetupError as exc:
        print(f"same_behaviour: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            progress(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
