"""The `imgdiff` command: argument parsing, rendering, exit codes.

The only module that prints or exits. Exit codes (DESIGN.md): 0 the command ran, 1 only
for `check`: the answer is no, 2 usage error, 3 bad input (one line naming the file or
entry), 4 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from imgdiff import __version__
from imgdiff.errors import BadInput, ImgdiffError, one_line

EXIT_OK, EXIT_NO, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imgdiff",
        description="What changed between two images, and what running processes use it.",
    )
    p.add_argument("--version", action="version", version=f"imgdiff {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    d = sub.add_parser("diff", help="file-level delta between two images, with kinds and stats")
    d.add_argument(
        "old",
        metavar="OLD",
        help="directory, tar(.gz/.bz2/.xz/.zst), OCI layout, docker-save archive or saved manifest",
    )
    d.add_argument("new", metavar="NEW")
    d.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    d.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")
    d.add_argument("--all", action="store_true", help="list every change (default: first 200)")
    d.add_argument(
        "--no-packages", action="store_true", help="do not read package databases to name owners"
    )

    k = sub.add_parser("packages", help="package-level delta (dpkg, rpm, pip) between two images")
    k.add_argument("old", metavar="OLD")
    k.add_argument("new", metavar="NEW")
    k.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    k.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    s = sub.add_parser("snapshot", help="capture the live /proc view: processes and their files")
    s.add_argument("--root", default="/", help="only processes whose root is PATH (default /)")
    s.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    s.add_argument("-o", "--output", metavar="FILE", help="write the JSON snapshot to FILE")
    s.add_argument("--spool", metavar="DIR", default=None, help="import tracer spool directory")

    t = sub.add_parser("stale", help="processes running code or config no longer on disk")
    t.add_argument("--root", default="/", help="only processes whose root is PATH (default /)")
    t.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    t.add_argument("--spool", metavar="DIR", default=None, help="import tracer spool directory")

    pl = sub.add_parser(
        "plan", help="the verdict for updating this host (or --root) from OLD to NEW"
    )
    pl.add_argument("old", metavar="OLD")
    pl.add_argument("new", metavar="NEW")
    pl.add_argument("--root", default="/", help="where OLD is live (default /)")
    pl.add_argument("--snapshot", metavar="FILE", help="use a saved snapshot instead of /proc")
    pl.add_argument("--policy", metavar="FILE", help="a TOML policy (see docs/plan.md)")
    pl.add_argument("--spool", metavar="DIR", default=None, help="import tracer spool directory")
    pl.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    pl.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")
    pl.add_argument("--timings", action="store_true", help="seconds per stage, on stderr")

    v = sub.add_parser("verify", help="check a directory tree against an image or manifest")
    v.add_argument("tree", metavar="TREE", help="the directory to check (a live root, a chroot)")
    v.add_argument("image", metavar="MANIFEST_OR_IMAGE", help="what TREE should be")
    v.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    v.add_argument("--policy", metavar="FILE", help="a TOML policy: its drift_ignore is used")
    v.add_argument(
        "--exact", action="store_true", help="ignore nothing (default: state, local data, ...)"
    )
    v.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    m = sub.add_parser("manifest", help="save an image's manifest (every digest) for later diffs")
    m.add_argument("image", metavar="IMAGE")
    m.add_argument("-o", "--output", required=True, metavar="FILE")
    m.add_argument("--no-cache", action="store_true")

    e = sub.add_parser(
        "demo", help="the main job on a built-in example: two images, live services, the plan"
    )
    e.add_argument("--json", action="store_true")
    e.add_argument("--keep", metavar="DIR", help="build the example images in DIR and keep them")
    _archive_verbs(sub)
    return p


def _archive_verbs(sub: Any) -> None:
    """The delta archive's verbs: pack, apply, rollback."""
    pk = sub.add_parser("pack", help="a delta archive: only what NEW has that OLD has not")
    pk.add_argument("old", metavar="OLD")
    pk.add_argument("new", metavar="NEW")
    pk.add_argument("-o", "--output", required=True, metavar="DELTA")
    pk.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    ap = sub.add_parser(
        "apply", help="apply delta archives, in order, to a tree that is the first one's OLD"
    )
    ap.add_argument("deltas", metavar="DELTA", nargs="+")
    ap.add_argument("tree", metavar="TREE")
    ap.add_argument(
        "--digest",
        metavar="HEX",
        action="append",
        help="refuse any delta but this one (once per DELTA)",
    )
    ap.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    ck = sub.add_parser(
        "check", help="exit 0 iff TREE is NEW and nothing running in it uses replaced files"
    )
    ck.add_argument("tree", metavar="TREE")
    ck.add_argument("image", metavar="DELTA_OR_IMAGE")
    ck.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    ck.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    rb = sub.add_parser("rollback", help="give back exactly OLD after an apply, finished or not")
    rb.add_argument("tree", metavar="TREE")
    rb.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _diff(args: argparse.Namespace) -> int:
    from imgdiff.report import console as rc

    with rc.progress_bar("hashing") as progress:
        if args.no_packages:
            from imgdiff.pipeline import diff

            delta = diff(args.old, args.new, use_cache=not args.no_cache, progress=progress)
        else:
            from imgdiff.pipeline import package_diff

            delta, _ = package_diff(
                args.old, args.new, use_cache=not args.no_cache, progress=progress
            )
    return _emit(delta, json=args.json, full=args.all)


def _packages(args: argparse.Namespace) -> int:
    from imgdiff.pipeline import package_diff
    from imgdiff.report import console as rc

    with rc.progress_bar("hashing") as progress:
        _, pdelta = package_diff(args.old, args.new, use_cache=not args.no_cache, progress=progress)
    return _emit(pdelta, json=args.json)


def _emit(result: Any, *, json: bool, full: bool = False) -> int:
    """A command's result: its JSON document on stdout, or rendered for people (every
    result renders through `report`; `full` lists every row)."""
    if json:
        from imgdiff.report.json import document, dumps

        sys.stdout.write(dumps(document(result)) + "\n")
    else:
        from rich.console import Console

        from imgdiff.report.console import render

        Console().print(render(result, full))
    return EXIT_OK


def _directory(path: str) -> None:
    if not os.path.isdir(path):
        raise BadInput(path, "not a directory")


def _spool(arg: str | None) -> str | None:
    from imgdiff.trace.spool import DEFAULT_SPOOL_DIR

    if arg is not None:
        return arg
    return DEFAULT_SPOOL_DIR if os.path.isdir(DEFAULT_SPOOL_DIR) else None


def _snapshot(args: argparse.Namespace) -> int:
    from imgdiff.report import console as rc
    from imgdiff.runtime import Snapshot

    _directory(args.root)
    with rc.stderr_console().status("reading /proc"):
        snap = Snapshot.capture(args.root, spool=_spool(args.spool), exclude_self=True)
    if args.output:
        snap.save(args.output)
        if not args.json:
            return EXIT_OK
    return _emit(snap, json=args.json)


def _stale(args: argparse.Namespace) -> int:
    from imgdiff.report import console as rc
    from imgdiff.runtime import Snapshot, stale

    _directory(args.root)
    with rc.stderr_console().status("reading /proc"):
        report = stale(Snapshot.capture(args.root, spool=_spool(args.spool), exclude_self=True))
    return _emit(report, json=args.json)


def _plan(args: argparse.Namespace) -> int:
    from imgdiff.pipeline import plan_update
    from imgdiff.plan import Policy
    from imgdiff.report import console as rc

    _directory(args.root)
    policy = Policy.load(args.policy) if args.policy else None
    with rc.stage_progress() as (progress, stage):
        plan = plan_update(
            args.old,
            args.new,
            root=args.root,
            snapshot=args.snapshot,
            policy=policy,
            spool=_spool(args.spool),
            use_cache=not args.no_cache,
            progress=progress,
            on_stage=stage,
            exclude_self=True,
        )
    if args.timings:
        for name, seconds in plan.timings.items():
            sys.stderr.write(f"{name:16} {seconds:8.3f} s\n")
    return _emit(plan, json=args.json)


def _verify(args: argparse.Namespace) -> int:
    from imgdiff.plan import Policy
    from imgdiff.verify import verify

    _directory(args.tree)
    ignore = (
        () if args.exact else (Policy.load(args.policy) if args.policy else Policy()).drift_ignore
    )
    result = verify(args.tree, args.image, ignore=ignore, use_cache=not args.no_cache)
    return _emit(result, json=args.json)


def _demo(args: argparse.Namespace) -> int:
    from imgdiff import demo
    from imgdiff.report import console as rc

    def show(workdir: str) -> int:
        with rc.stderr_console().status("building two images and starting three services"):
            run = demo.run(workdir)
        return _emit(run, json=args.json)

    if args.keep:
        return show(args.keep)
    with tempfile.TemporaryDirectory(prefix="imgdiff-demo-") as tmp:
        return show(tmp)


def _manifest(args: argparse.Namespace) -> int:
    from imgdiff.manifest import Manifest, saved_files

    keep = saved_files()  # kept from a streamed archive on its one pass
    Manifest.read(args.image, use_cache=not args.no_cache, capture=keep).save(
        args.output, keep=keep
    )
    return EXIT_OK


def _pack(args: argparse.Namespace) -> int:
    from imgdiff.archive.pack import pack
    from imgdiff.report import console as rc

    with rc.progress_bar("encoding") as progress:
        result = pack(args.old, args.new, args.output, progress=progress)
    return _emit(result, json=args.json)


def _apply(args: argparse.Namespace) -> int:
    from imgdiff.archive.apply import apply_chain
    from imgdiff.report import console as rc

    _directory(args.tree)
    if args.digest is not None and len(args.digest) != len(args.deltas):
        raise BadInput(args.tree, "give --digest once per delta, or not at all")
    with rc.stderr_console().status("applying") as status:
        results = apply_chain(
            args.deltas,
            args.tree,
            digests=args.digest,
            use_cache=not args.no_cache,
            progress=status.update,
        )
    return _emit(results[-1], json=args.json)


def _rollback(args: argparse.Namespace) -> int:
    from imgdiff.archive.apply import rollback
    from imgdiff.report import console as rc

    _directory(args.tree)
    with rc.stderr_console().status("rolling back") as status:
        result = rollback(args.tree, progress=status.update)
    return _emit(result, json=args.json)


def _check(args: argparse.Namespace) -> int:
    from imgdiff.check import check
    from imgdiff.report import console as rc

    _directory(args.tree)
    with rc.stderr_console().status("checking the tree and its processes"):
        result = check(args.tree, args.image, use_cache=not args.no_cache)
    _emit(result, json=args.json)
    return EXIT_OK if result.ok else EXIT_NO


_VERBS = {
    "plan": _plan, "verify": _verify, "snapshot": _snapshot, "stale": _stale, "diff": _diff,
    "packages": _packages, "manifest": _manifest, "demo": _demo, "pack": _pack,
    "apply": _apply, "rollback": _rollback, "check": _check,
}  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    return _VERBS[args.verb](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `imgdiff` console script."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ImgdiffError as exc:
        print(f"imgdiff: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        print(
            f"imgdiff: internal error: {type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
