"""Delta archives (`imgdiff pack`/`apply`/`rollback`) vs what users would ship and run
instead, on the real Debian image pair from `../shared/corpus/build-image-pair.sh`.

What ships for OLD -> NEW: imgdiff's delta (from the trees and from the tars); NEW's whole
tar (zstd -19 --long); a tar of NEW's changed and added files (zstd -19 --long, the list
from `imgdiff diff --json`); `zstd -19 --long=31 --patch-from=old.tar new.tar`, as given
and with `--single-thread` (zstd's own hint for a smaller patch); an OSTree static delta
(`--inline`, one file, other settings at their defaults) between commits of OLD and NEW
in an archive-mode repository. OSTree stores neither device nodes nor special files, so
it commits copies of the trees without them (`rsync -aX --no-devices --no-specials`);
as root, commits keep the real owners and xattrs (no `--owner-uid/--owner-gid`).

Then each way's apply onto a fresh `cp -a` copy of OLD (the copy, and a `sync` that writes
it out, are not timed): `imgdiff
apply`, `rsync -a --delete` of NEW (with and without `--fsync`), rsync of the changed
paths only (`--files-from`, removals by `--delete-missing-args`), and OSTree's
`static-delta apply-offline` into a bare repository holding OLD, then `checkout` of NEW;
undo: `imgdiff rollback` vs rsync of OLD back. Each result tree is compared with the
image it should be by `rsync -anicX --delete --numeric-ids REF/ TREE/
--exclude=/var/lib/imgdiff`.

Set-up: `apt-get install ostree zstd rsync` (the benchmark installs nothing; without
`ostree` its rows are left out, with a note). Run as root:
`.venv/bin/python -m benchmarks.bench_archive [--corpus DIR] [--runs N] [--write]`.
Timings are medians of N rounds after a warm-up round, the ways taking turns within each
round so that all see the machine alike (compressors: one run); peak MiB is the
largest single process's peak RSS (what `/usr/bin/time -f %M` says); for the delta
makers the process tree's summed PSS, sampled every 0.1 s, is given too, since `imgdiff
pack` forks workers.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from benchmarks.common import Timing, pair_arguments, run_once, table

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
OSTREE = shutil.which("ostree")
STATE = "/var/lib/imgdiff"  # apply's own state in the tree, left out of every check
# the issue's reference figures (MB), for the same kinds of shipment
ISSUE_MB = {"full": 57.0, "changed": 13.0, "patch": 5.05, "ostree": 4.58}

Row = tuple[str, str, Timing, Timing | None]
APPLY = "imgdiff apply DELTA TREE"
WARM = " (digest cache warmed by verify TREE OLD)"
ROOT_MTIME = ".d..t...... ./"  # no image records the root's own mtime
GENERATE = "ostree static-delta generate --inline"
SYNC, FSYNC = "rsync -a --delete NEW/ TREE/", "rsync -a --delete --fsync NEW/ TREE/"
BACK, ROLLBACK = "rsync -a --delete OLD/ TREE/", "imgdiff rollback TREE"
OFFLINE = "ostree static-delta apply-offline DELTA (repo with OLD)"
CHECKOUT = "ostree checkout NEW TREE (hardlinks into the repo)"


@attrs.frozen
class Shipped:
    """One way of shipping OLD -> NEW: its size and what making it cost."""

    label: str
    size: int
    make: Timing
    issue: float | None = None


@attrs.frozen
class Corpus:
    old: str
    new: str
    old_tar: str
    new_tar: str


@attrs.frozen
class Changes:
    """NEW's changed paths per `imgdiff diff --json --all`, as the lists the tools take."""

    files: str  # added/modified non-directories, for tar -T
    n_files: int
    rsync: str  # added/modified paths and the topmost removed ones, for --files-from
    n_rsync: int
    n_removed: int


@attrs.frozen
class OstreeServer:
    repo: str
    delta: str
    new_rev: str
    commit_s: float  # both commits, set-up


@attrs.frozen
class Results:
    """Everything the report says, from one run."""

    runs: int
    shipped: list[Shipped]
    ostree: Shipped | None
    server: OstreeServer | None
    pss: tuple[float, float | None]  # summed PSS peaks: imgdiff pack (dirs), ostree generate
    records: int  # bytes of content records in imgdiff's delta (dirs)
    rows: list[Row]
    exact: dict[str, str]
    changes: Changes
    load: tuple[str, str]
    tars: tuple[int, int]
    revision: str


def _one(argv: Sequence[str]) -> Timing:
    wall, cpu, peak = run_once(argv)
    return Timing(wall, cpu, peak, 1)


def _median(results: list[tuple[float, float, float]]) -> Timing:
    return Timing(
        statistics.median(r[0] for r in results),
        statistics.median(r[1] for r in results),
        max(r[2] for r in results),
        len(results),
    )


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(x.split()[1]) for x in text.splitlines() if x.startswith("Pss:")), 0)


def tree_pss_mib(argv: Sequence[str]) -> tuple[float, str]:
    """Peak of the summed PSS of a command and all its descendants, sampled every 0.1 s,
    and its (short) stdout."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while True:
        try:
            proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            peak = max(peak, sum(_pss_kib(p) for p in _descendants(proc.pid)))
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}")
    return peak / 1024, proc.stdout.read() if proc.stdout else ""


def _time_only(line: str) -> bool:
    item = line[:11]
    return item[:1] in (".", ">") and set(item[2:].replace("t", ".").replace("T", ".")) == {"."}


def exactness(ref: str, tree: str) -> str:
    """What `rsync -anicX --delete --numeric-ids` prints for TREE against REF, summed up."""
    argv = ["rsync", "-anicX", "--delete", "--numeric-ids", ref + "/", tree + "/",
            f"--exclude={STATE}"]  # fmt: skip
    lines = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    if len(lines) <= 3:
        return ", ".join(f"`{x}`" for x in lines) or "nothing"
    times = sum(map(_time_only, lines))
    other = [x for x in lines if not _time_only(x)]
    shown = ", ".join(f"`{x}`" for x in other[:3]) + (", …" if len(other) > 3 else "")
    return f"{len(lines)} lines: {times} entries differ in mtime only, {len(other)} otherwise" + (
        f" ({shown})" if other else ""
    )


def changes(c: Corpus, work: str) -> Changes:
    done = subprocess.run(
        [IMGDIFF, "diff", c.old, c.new, "--json", "--all", "--no-packages"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    doc = json.loads(done.stdout)["changes"]
    files = [
        x["path"].lstrip("/")
        for x in doc
        if x["status"] in ("added", "modified") and x["new"]["type"] != "dir"
    ]
    removed = sorted(x["path"] for x in doc if x["status"] == "removed")
    top = [p for p in removed if not any(p.startswith(q + "/") for q in removed)]
    paths = [x["path"].lstrip("/") for x in doc if x["status"] != "removed"]
    paths += [p.lstrip("/") for p in top]
    flist, rlist = os.path.join(work, "files.list"), os.path.join(work, "rsync.list")
    Path(flist).write_text("".join(p + "\n" for p in files))
    Path(rlist).write_text("".join(p + "\n" for p in paths))
    return Changes(flist, len(files), rlist, len(paths), len(removed))


def compressed(c: Corpus, ch: Changes, work: str) -> list[Shipped]:
    """The zstd ways: whole NEW, NEW's changed files, --patch-from the whole OLD tar."""
    out: list[Shipped] = []
    full = os.path.join(work, "new.tar.zst")
    t = _one(["zstd", "-q", "-f", "-19", "--long", "-T0", c.new_tar, "-o", full])
    out.append(Shipped("NEW's tar, `zstd -19 --long -T0`", os.path.getsize(full), t,
                       ISSUE_MB["full"]))  # fmt: skip
    os.unlink(full)
    part = os.path.join(work, "changed.tar")
    subprocess.run(["tar", "-C", c.new, "--no-recursion", "-cf", part, "-T", ch.files],
                   check=True)  # fmt: skip
    t = _one(["zstd", "-q", "-f", "-19", "--long", "-T0", part, "-o", part + ".zst"])
    out.append(Shipped(f"tar of NEW's {ch.n_files} changed/added files, `zstd -19 --long -T0`",
                       os.path.getsize(part + ".zst"), t, ISSUE_MB["changed"]))  # fmt: skip
    os.unlink(part)
    os.unlink(part + ".zst")
    patch = os.path.join(work, "patch.zst")
    for extra, issue in (([], ISSUE_MB["patch"]), (["--single-thread"], None)):
        argv = ["zstd", "-q", "-f", "-19", "--long=31", *extra,
                f"--patch-from={c.old_tar}", c.new_tar, "-o", patch]  # fmt: skip
        t = _one(argv)
        label = " ".join(["`zstd -19 --long=31", *extra, "--patch-from=old.tar new.tar`"])
        out.append(Shipped(label, os.path.getsize(patch), t, issue))
        os.unlink(patch)
    return out


def ostree_server(c: Corpus, work: str) -> OstreeServer:
    """An archive repo with OLD and NEW committed (the static delta is made later)."""
    assert OSTREE
    repo = os.path.join(work, "ostree-repo")
    subprocess.run([OSTREE, f"--repo={repo}", "init", "--mode=archive"], check=True)
    commit_s = 0.0
    for branch, tree in (("old", c.old), ("new", c.new)):
        src = os.path.join(work, f"src-{branch}")  # without device nodes and FIFOs
        subprocess.run(["rsync", "-aqX", "--no-devices", "--no-specials", tree + "/",
                        src + "/"], check=True)  # fmt: skip
        commit_s += run_once([OSTREE, f"--repo={repo}", "commit", f"--branch={branch}",
                              f"--tree=dir={src}"])[0]  # fmt: skip
        shutil.rmtree(src)
    rev = subprocess.run([OSTREE, f"--repo={repo}", "rev-parse", "new"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    return OstreeServer(repo, os.path.join(work, "ostree.delta"), rev, commit_s)


@attrs.frozen
class Way:
    """One way of going OLD -> NEW: an untimed set-up of the scratch path, then timed steps
    (row label, argv from the scratch path); checks[i] = (label, REF) compares the tree at
    scratch + `checked` with REF after step i of the first timed round."""

    setup: Callable[[str], object]
    steps: tuple[tuple[str, Callable[[str], list[str]]], ...]
    checks: dict[int, tuple[str, str]] = attrs.field(factory=dict)
    checked: str = ""


def interleaved(
    ways: Sequence[Way], work: str, runs: int, exact: dict[str, str]
) -> dict[str, Timing]:
    """Every step's Timing by its label. The ways take turns in each round, so that all see
    the machine in the same state; one warm-up round first."""
    results: dict[str, list[tuple[float, float, float]]] = {}
    scratch = os.path.join(work, "scratch")
    for n in range(runs + 1):
        for way in ways:
            way.setup(scratch)
            try:
                for i, (label, argv) in enumerate(way.steps):
                    r = run_once(argv(scratch))
                    if n:
                        results.setdefault(label, []).append(r)
                    if n == 1 and i in way.checks:
                        name, ref = way.checks[i]
                        exact[name] = exactness(ref, scratch + way.checked)
            finally:
                for path in {scratch, scratch + way.checked}:
                    shutil.rmtree(path, ignore_errors=True)
    return {label: _median(r) for label, r in results.items()}


def _nothing(_: str) -> None:
    return None


def _fixed(argv: list[str]) -> Callable[[str], list[str]]:
    return lambda _: argv


def make_deltas(
    c: Corpus, server: OstreeServer | None, work: str, runs: int
) -> tuple[list[Shipped], list[Row], tuple[float, float | None], int]:
    """OSTree's generate and imgdiff's pack (trees, tars), taking turns; the summed PSS of
    each (one more run) and how many bytes of imgdiff's delta are content records."""
    deltas = {"dirs": os.path.join(work, "dirs.delta"), "tars": os.path.join(work, "tars.delta")}
    packs = {
        "dirs": [IMGDIFF, "pack", c.old, c.new, "-o", deltas["dirs"]],
        "tars": [IMGDIFF, "pack", c.old_tar, c.new_tar, "-o", deltas["tars"]],
    }
    ways = [Way(_nothing, ((f"imgdiff pack OLD NEW ({k})", _fixed(a)),))
            for k, a in packs.items()]  # fmt: skip
    gen: list[str] = []
    if server and OSTREE:
        gen = [OSTREE, f"--repo={server.repo}", "static-delta", "generate", "--from=old",
               "--to=new", "--inline", f"--filename={server.delta}"]  # fmt: skip
        ways.insert(0, Way(_nothing, ((GENERATE, _fixed(gen)),)))
    t = interleaved(ways, work, runs, {})
    peak, doc = tree_pss_mib([*packs["dirs"], "--json"])
    records = sum(json.loads(doc)["record_bytes"].values())
    shipped = [Shipped(f"`imgdiff pack` ({k})", os.path.getsize(d),
                       t[f"imgdiff pack OLD NEW ({k})"]) for k, d in deltas.items()]  # fmt: skip
    base = t.get(GENERATE)
    rows: list[Row] = [("make the delta", GENERATE, base, None)] if base else []
    rows += [("make the delta", label, t[label], base) for label, _ in
             (w.steps[0] for w in ways) if label != GENERATE]  # fmt: skip
    pss_ostree = None
    if base and server:
        pss_ostree = tree_pss_mib(gen)[0]
        theirs = Shipped("OSTree static delta (`generate --inline`)",
                         os.path.getsize(server.delta), base, ISSUE_MB["ostree"])  # fmt: skip
        shipped.insert(0, theirs)
    return shipped, rows, (peak, pss_ostree), records


def apply_rows(
    c: Corpus, ch: Changes, delta: str, server: OstreeServer | None, work: str, runs: int
) -> tuple[list[Row], dict[str, str]]:
    """Each way's apply (and undo) onto a fresh copy of OLD, or OSTree's into a repo."""
    old, new = c.old + "/", c.new + "/"

    def copy(scratch: str) -> None:
        subprocess.run(["cp", "-a", c.old, scratch], check=True)
        # the copy's writeback is the copy's: without this, the first way that syncs
        # (imgdiff apply's syncfs, rsync --fsync) pays for writing 240 MB it never wrote
        subprocess.run(["sync"], check=True)

    listed = f"rsync -a --files-from=LIST --delete-missing-args --force ({ch.n_rsync} paths)"
    ways = [
        Way(copy, ((SYNC, lambda t: ["rsync", "-a", "--delete", new, t + "/"]),
                   (BACK, lambda t: ["rsync", "-a", "--delete", old, t + "/"])),
            {0: (SYNC + ", vs NEW", c.new), 1: (BACK + " after it, vs OLD", c.old)}),
        Way(copy, ((FSYNC, lambda t: ["rsync", "-a", "--delete", "--fsync", new, t + "/"]),)),
        Way(copy, ((listed, lambda t: ["rsync", "-a", f"--files-from={ch.rsync}",
                                       "--delete-missing-args", "--force", new, t + "/"]),),
            {0: ("rsync --files-from (changed paths), vs NEW", c.new)}),
        Way(copy, ((APPLY, lambda t: [IMGDIFF, "apply", delta, t]),
                   (ROLLBACK, lambda t: [IMGDIFF, "rollback", t])),
            {0: ("imgdiff apply, vs NEW", c.new), 1: ("imgdiff rollback, vs OLD", c.old)}),
        Way(copy, (("verify", lambda t: [IMGDIFF, "verify", t, c.old, "--json"]),
                   (APPLY + WARM, lambda t: [IMGDIFF, "apply", delta, t]))),
    ]  # fmt: skip
    if server and OSTREE:
        ostree, srv = OSTREE, server

        def client(scratch: str) -> None:  # a bare repo holding only OLD, as a host has
            subprocess.run([ostree, f"--repo={scratch}", "init", "--mode=bare"], check=True)
            subprocess.run([ostree, f"--repo={scratch}", "pull-local", srv.repo, "old"],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip

        ways.append(Way(client, (
            (OFFLINE, lambda t: [ostree, f"--repo={t}", "static-delta", "apply-offline",
                                 srv.delta]),
            (CHECKOUT, lambda t: [ostree, f"--repo={t}", "checkout", srv.new_rev, t + "-co"]),
        ), {1: ("ostree checkout, vs NEW", c.new)}, "-co"))  # fmt: skip
    exact: dict[str, str] = {}
    t = interleaved(ways, work, runs, exact)
    case, undo = "apply onto a copy of OLD", "undo (after the apply)"
    rows: list[Row] = [(case, SYNC, t[SYNC], None)]
    labels = (FSYNC, listed, APPLY, APPLY + WARM, OFFLINE, CHECKOUT)
    rows += [(case, label, t[label], t[SYNC]) for label in labels if label in t]
    rows += [(undo, BACK, t[BACK], None), (undo, ROLLBACK, t[ROLLBACK], t[BACK])]
    return rows, exact


def _versions() -> str:
    def first(argv: list[str]) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"

    parts = [first(["zstd", "-V"]).split(",")[0].replace("*** ", ""),
             " ".join(first(["rsync", "--version"]).split()[:3])]  # fmt: skip
    if OSTREE:
        ver = subprocess.run([OSTREE, "--version"], capture_output=True, text=True, check=False)
        parts.append("ostree " + ver.stdout.split("Version:")[1].split()[0].strip("'"))
    return ", ".join(parts)


def size_table(shipped: list[Shipped], ostree: Shipped | None) -> str:
    out = [
        "| what ships OLD -> NEW | bytes | MB | vs OSTree delta | issue's MB "
        "| make: wall s | cpu s | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in shipped:
        vs = f"{s.size / ostree.size:.2f}x" if ostree else "n/a"
        issue = f"{s.issue:g}" if s.issue else ""
        out.append(
            f"| {s.label} | {s.size:,} | {s.size / 1e6:.2f} | {vs} | {issue} | "
            f"{s.make.wall:.1f} | {s.make.cpu:.1f} | {s.make.peak_mib:.0f} |"
        )
    return "\n".join(out)


def _timing(r: Results, command: str) -> Timing:
    return next(t for _, cmd, t, _ in r.rows if cmd == command)


def verdicts(r: Results, pack: Shipped) -> list[str]:
    """The issue's targets, met or missed, from this run's numbers."""
    sync, applied = _timing(r, "rsync -a --delete NEW/ TREE/"), _timing(r, APPLY)
    fsync = _timing(r, "rsync -a --delete --fsync NEW/ TREE/")

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    out = []
    if r.ostree and r.pss[1]:
        s, w = pack.size / r.ostree.size, pack.make.wall / r.ostree.make.wall
        m, p = pack.make.peak_mib / r.ostree.make.peak_mib, r.pss[0] / r.pss[1]
        out += [
            f"- size ≤ 1.05x OSTree's delta: {s:.3f}x — {mark(s <= 1.05)}.",
            f"- pack faster than OSTree's generate: {w:.2f}x its wall time — {mark(w < 1)}.",
            f"- under half OSTree's memory: {m:.2f}x by largest-process peak RSS, {p:.2f}x by "
            f"the process tree's summed PSS — {mark(max(m, p) < 0.5)}.",
        ]
    else:
        out.append("- OSTree not installed (`apt-get install ostree`): its targets not checked.")
    a = applied.wall / sync.wall
    out.append(
        f"- apply ≤ 1.0x `rsync -a --delete`: {a:.2f}x — {mark(a <= 1.0)}; "
        f"against `rsync --fsync` (durable, as apply is): {applied.wall / fsync.wall:.2f}x."
    )
    return out


def summary(r: Results, pack: Shipped) -> list[str]:
    """What the numbers say, in words, with this run's numbers."""
    patch = next(s for s in r.shipped if "patch-from" in s.label and "single" not in s.label)
    single = next(s for s in r.shipped if "--single-thread" in s.label)
    header = pack.size - r.records
    out = [
        f"imgdiff's delta is {pack.size / 1e6:.2f} MB: {r.records / 1e6:.2f} MB of content "
        f"records and {header / 1e6:.2f} MB of header (NEW's whole manifest: every entry's "
        "metadata, mtime and digest, and OLD's rows where they differ), which is what lets "
        "`apply` check the tree before and after and `rollback` restore OLD exactly. "
        f"`zstd --patch-from` of the whole tar is {patch.size / pack.size:.2f}x its size as "
        f"the command is given, {single.size / pack.size:.2f}x with `--single-thread`.",
    ]
    if r.ostree and r.server:
        apply_off = _timing(r, "ostree static-delta apply-offline DELTA (repo with OLD)")
        checkout = _timing(r, "ostree checkout NEW TREE (hardlinks into the repo)")
        out[0] += (
            f" OSTree's delta ({r.ostree.size / 1e6:.2f} MB) carries less: no mtimes (its "
            "checkout differs from NEW in every one) and no device nodes."
        )
        out += [
            "",
            f"Making the delta: `imgdiff pack` {pack.make.wall:.1f} s wall "
            f"({pack.make.cpu:.1f} s cpu) from the two trees, with nothing prepared; OSTree's "
            f"generate {r.ostree.make.wall:.1f} s ({r.ostree.make.cpu:.1f} s cpu), after "
            f"{r.server.commit_s:.1f} s of commits. Memory: imgdiff's largest process peaks at "
            f"{pack.make.peak_mib:.0f} MiB and its process tree (a parent and forked "
            f"workers) at {r.pss[0]:.0f} MiB of PSS, OSTree's one process at "
            f"{r.ostree.make.peak_mib:.0f} MiB; the target was under half.",
            "",
            f"OSTree's apply-offline plus checkout ({apply_off.wall + checkout.wall:.2f} s) "
            "writes into the host's object store, which must already hold OLD, and checks "
            "out a new tree of hard links beside the running one (a deployment switch "
            "follows); it leaves the tree it came from untouched, so its undo is switching "
            "back.",
        ]
    applied, warm = _timing(r, APPLY), _timing(r, APPLY + WARM)
    sync, fsync = (
        _timing(r, "rsync -a --delete NEW/ TREE/"),
        _timing(r, "rsync -a --delete --fsync NEW/ TREE/"),
    )
    listed = next(t for _, cmd, t, _ in r.rows if cmd.startswith("rsync -a --files-from"))
    undone, back = _timing(r, "imgdiff rollback TREE"), _timing(r, "rsync -a --delete OLD/ TREE/")
    ok = {
        "rsync": r.exact.get("rsync -a --delete NEW/ TREE/, vs NEW") == "nothing",
        "apply": r.exact.get("imgdiff apply, vs NEW") in ("nothing", f"`{ROOT_MTIME}`"),
        "rollback": r.exact.get("imgdiff rollback, vs OLD") == "nothing",
    }
    out += [
        "",
        f"`imgdiff apply` ({applied.wall:.2f} s; {warm.wall:.2f} s when the digest cache "
        "already knows the tree) reads the whole tree and compares it with OLD before "
        "touching it (on a fresh copy the cache knows no inode), stages and fsyncs what it "
        "writes, journals, and compares the tree with NEW afterwards. `rsync -a --delete` "
        f"({sync.wall:.2f} s) checks nothing and syncs nothing to disk; with `--fsync` "
        f"{fsync.wall:.2f} s. rsync's result is "
        + ("exactly NEW" if ok["rsync"] else "**not** exactly NEW")
        + "; imgdiff's is "
        + (
            "NEW but for the root's own mtime, which no image records"
            if ok["apply"]
            else "**not** NEW (see above)"
        )
        + f". Syncing only the changed paths ({listed.wall:.2f} s) leaves every mtime-only "
        f"change behind. `imgdiff rollback` ({undone.wall:.2f} s) "
        + ("gives back exactly OLD" if ok["rollback"] else "does **not** give back OLD")
        + f" from the tree's own undo data; rsync back ({back.wall:.2f} s) needs OLD's "
        "whole tree at hand.",
    ]
    return out


def report(r: Results) -> str:
    pack = next(s for s in r.shipped if s.label == "`imgdiff pack` (dirs)")
    lines = [
        "# Delta archives: `imgdiff pack`/`apply`/`rollback` vs zstd, rsync and OSTree",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, Linux "
        f"{platform.release()}, {_versions()}; imgdiff at {r.revision}. Real Debian 12 pair "
        f"from `../shared/corpus/build-image-pair.sh` (old.tar {r.tars[0] / 1e6:.0f} MB, "
        f"new.tar {r.tars[1] / 1e6:.0f} MB). Load average {r.load[0]} at the start, "
        f"{r.load[1]} at the end (other jobs shared the machine: wall times are noisy, cpu s "
        f"less so). Timings: medians of {r.runs} rounds after a warm-up round, the ways "
        "taking turns in each round; compressors one run. "
        "MB = 10^6 bytes. Ratios from this one run, not timed assertions. "
        "`bench_archive.py`'s docstring says how each row is made.",
        "",
        "## Bytes to ship",
        "",
        size_table(r.shipped, r.ostree),
        "",
    ]
    if r.server is None:
        lines += ["OSTree rows left out: `ostree` is not installed (`apt-get install ostree`).", ""]
    else:
        lines += [
            f"OSTree needs both trees committed first: {r.server.commit_s:.1f} s for the two "
            "`ostree commit`s (archive repo, not in the table), from copies without the "
            "device nodes in /dev, which OSTree cannot store (a `--skip-list` naming them "
            "did not help here: the commit still failed with `Not a regular file or "
            "symlink: full`).",
            "",
        ]
    lines += [
        "## Time and memory",
        "",
        table(r.rows),
        "",
        f"Process tree's summed PSS (sampled every 0.1 s, one run): `imgdiff pack` (dirs) "
        f"{r.pss[0]:.0f} MiB"
        + (f", `ostree static-delta generate` {r.pss[1]:.0f} MiB." if r.pss[1] else "."),
        "",
        f"## Exactness (`rsync -anicX --delete --numeric-ids REF/ TREE/ --exclude={STATE}`)",
        "",
        *(f"- {k}: {v}" for k, v in r.exact.items()),
        "",
        f"The changed-paths list comes from `imgdiff diff`, which leaves out entries that "
        f"differ in mtime only; {r.changes.n_removed} removed paths are in it as their "
        "topmost removed directory.",
        "",
        "## Targets",
        "",
        *verdicts(r, pack),
        "",
        "## What the numbers say",
        "",
        *summary(r, pack),
        "",
    ]
    return "\n".join(lines)


def _revision() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(Path(__file__).parent), *argv],
                              capture_output=True, text=True, check=False)  # fmt: skip
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "../imgdiff")
    return (git("rev-parse", "--short", "HEAD") or "?") + (
        " with uncommitted changes to imgdiff/" if dirty else ""
    )


def main() -> int:
    parsed = pair_arguments(__doc__)
    if parsed is None:
        return 2
    args, old, new = parsed
    c = Corpus(old, new, f"{old}.tar", f"{new}.tar")
    if not os.path.isfile(c.new_tar):
        print(f"no {c.new_tar}: run ../shared/corpus/build-image-pair.sh", file=sys.stderr)
        return 2
    if OSTREE is None:
        print("ostree not installed (apt-get install ostree): its rows left out", file=sys.stderr)
    load_start = f"{os.getloadavg()[0]:.1f}"
    revision = _revision()
    work = tempfile.mkdtemp(prefix="imgdiff-bench-archive-", dir="/var/tmp")
    cache = tempfile.mkdtemp(prefix="imgdiff-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    try:
        ch = changes(c, work)
        server = ostree_server(c, work) if OSTREE else None
        made, rows, pss, records = make_deltas(c, server, work, args.runs)
        print("made", [(s.label, s.size, s.make.wall) for s in made], file=sys.stderr)
        theirs = next((s for s in made if s.label.startswith("OSTree")), None)
        shipped = compressed(c, ch, work) + made
        more, exact = apply_rows(c, ch, os.path.join(work, "dirs.delta"), server, work, args.runs)
        rows += more
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    load = (load_start, f"{os.getloadavg()[0]:.1f}")
    tars = (os.path.getsize(c.old_tar), os.path.getsize(c.new_tar))
    text = report(Results(args.runs, shipped, theirs, server, pss, records, rows, exact, ch,
                          load, tars, revision))  # fmt: skip
    print(text)
    if args.write:
        Path(__file__).with_name("results-archive.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
