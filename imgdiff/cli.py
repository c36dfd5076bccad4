"""The `imgdiff` command: argument parsing, rendering, exit codes.

The only module that prints or exits. Exit codes (docs/contract.md): 0 the command ran, 1 only
for `check`: the answer is no, 2 usage error, 3 bad input (one line naming the file or
entry), 4 internal error. With `--exit-code`, `diff`, `stale`, `verify` and `plan` answer
as `check` does (1: there is something to do; `plan`: 1 restart, 5 reboot, 6 reimage).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack, contextmanager

from imgdiff import __version__
from imgdiff.errors import BadInput, ImgdiffError, escape_path, one_line
from imgdiff.fs.inputs import directory
from imgdiff.fs.outputs import writable
from imgdiff.report import draws_on_stderr

# Start-up is part of the answer for `stale` and `snapshot` (a cron job, a monitoring
# probe): this module imports only what parsing needs, everything else where it is used
# (tests/test_startup.py keeps rich, attrs and the image stages out of `import imgdiff.cli`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

EXIT_OK, EXIT_NO, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3, 4
# `plan --exit-code`: restart is 1 (something to do), as `dnf needs-restarting -r` gives 1
# for a reboot; reboot and reimage get codes of their own so a script can tell them apart
EXIT_REBOOT, EXIT_REIMAGE = 5, 6
# the policy used when neither --policy nor $IMGDIFF_POLICY names one (if it exists)
SYSTEM_POLICY = "/etc/imgdiff/policy.toml"
# verbs whose output is a list of records: `plain` is their default when stdout is a pipe
_LISTING = frozenset({"diff", "packages", "snapshot", "stale", "verify"})
_IMAGE_ARGS = ("old", "new", "image")  # the arguments that may be `-` (an image on stdin)


def _common_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """-v, -q and --debug, accepted before the verb and after it (after it, they are
    SUPPRESSed unless given, so the verb's parser never resets what came before it)."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("output on stderr")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="every warning (not the first 50), the policy used, seconds per stage",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default(False),
        help="no progress and no warnings: errors only",
    )  # fmt: skip
    group.add_argument(
        "--debug", action="store_true", default=default(False),
        help="print the traceback of an error, for a bug report",
    )  # fmt: skip


def _output_options(parser: argparse.ArgumentParser, *, plain: bool = True) -> None:
    """--format (table, plain, json) and --json, its alias for json."""
    formats = ("table", "plain", "json") if plain else ("table", "json")
    text = (
        "table for people, plain: one tab-separated record per line, json "
        "(default: table on a terminal, plain otherwise)"
        if plain
        else "table for people (the default) or json"
    )  # the formats accepted, and only those
    parser.add_argument("--format", choices=formats, default=None, help=text)
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )


def _exit_code_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit 1 when {what} (default: 0 whenever the command ran)",
    )


def _image_arg(parser: argparse.ArgumentParser, name: str, metavar: str, text: str) -> None:
    parser.add_argument(name, metavar=metavar, help=text)


class _PrintCompletion(argparse.Action):
    """--print-completion SHELL: shtab's script for the whole parser, then exit. shtab is
    imported only here (it costs 50 ms of start-up through importlib.metadata)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        import shtab

        paths = {"FILE", "DIR", "TREE", "DELTA", "--root", "--spool", "--snapshot", "--policy"}
        for sub in (parser, *_verb_parsers(parser).values()):
            for action in sub._actions:
                named = {str(action.metavar), *action.option_strings}
                if action.dest in _IMAGE_ARGS or named & paths or action.dest == "deltas":
                    action.complete = shtab.FILE  # type: ignore[attr-defined]  # read by shtab
                elif isinstance(action.type, _Vocabulary):  # --kind, --status: one value
                    action.choices = action.type.members()  # shtab offers choices; we exit
        sys.stdout.write(shtab.complete(parser, values))
        parser.exit(0)


def _verb_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each verb's own parser."""
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(verbs.choices)


_ACCEPTED = (
    "a directory, a tar (plain, .gz, .bz2, .xz, .zst), an OCI layout (LAYOUT[:TAG]) or "
    "archive, a docker-save archive, a delta archive, a saved manifest, or - for a tar on "
    "stdin"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imgdiff",
        description="What changed between two images, and what running processes use it.",
    )
    p.add_argument("--version", action="version", version=f"imgdiff {__version__}")
    p.add_argument(
        "--print-completion",
        choices=("bash", "zsh"),
        action=_PrintCompletion,
        help="print a completion script for bash or zsh (generated from this parser)",
    )
    _common_options(p, top=True)
    # not required=True: `_parse` says so itself, after naming an unknown option first
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
        _common_options(parser)
        return parser

    _diff_verb(verb)

    k = verb("packages", "package-level delta (dpkg, rpm, pip) between two images")
    _image_arg(k, "old", "OLD", _ACCEPTED + " (a saved manifest has no package databases)")
    _image_arg(k, "new", "NEW", "the same kinds as OLD")
    _output_options(k)
    k.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    s = verb("snapshot", "capture the live /proc view: processes and their files")
    s.add_argument("--root", default="/", help="only processes whose root is PATH (default /)")
    _output_options(s)
    s.add_argument("-o", "--output", metavar="FILE", help="write the JSON snapshot to FILE")
    s.add_argument("--spool", metavar="DIR", default=None, help="import tracer spool directory")

    t = verb("stale", "processes running code or config no longer on disk")
    t.add_argument("--root", default="/", help="only processes whose root is PATH (default /)")
    _output_options(t)
    t.add_argument(
        "--brief", action="store_true", help="one line per process: PID UNIT EXE (as checkrestart)"
    )
    t.add_argument("--spool", metavar="DIR", default=None, help="import tracer spool directory")
    _exit_code_option(t, "a process uses deleted or replaced files")
    t.add_argument(
        "--against",
        metavar="MANIFEST_OR_IMAGE",
        help="the tree as it was before the update: reasons whose bytes did not change go",
    )
    t.add_argument("--full", action="store_true", help="list unconfirmed reasons one by one")

    _plan_verb(verb)

    v = verb("verify", "check a directory tree against an image or manifest")
    v.add_argument("tree", metavar="TREE", help="the directory to check (a live root, a chroot)")
    _image_arg(v, "image", "MANIFEST_OR_IMAGE", "what TREE should be: " + _ACCEPTED)
    _output_options(v)
    _policy_option(v, "a TOML policy: its drift_ignore is used")
    v.add_argument(
        "--exact", action="store_true", help="ignore nothing (default: state, local data, ...)"
    )
    v.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")
    _exit_code_option(v, "the tree differs from the image")

    m = verb("manifest", "save an image's manifest (every digest) for later diffs")
    _image_arg(m, "image", "IMAGE", _ACCEPTED)
    m.add_argument(
        "-o", "--output", required=True, metavar="FILE",
        help="where to write it (zstd JSON); diff, plan and verify read it as an image",
    )  # fmt: skip
    m.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    e = verb("demo", "the main job on a built-in example: two images, live services, the plan")
    _output_options(e, plain=False)
    e.add_argument("--keep", metavar="DIR", help="build the example images in DIR and keep them")
    _archive_verbs(verb)
    from imgdiff._cli_fleet import add_verbs

    add_verbs(verb)  # report, fleet plan
    return p


def _diff_verb(verb: Any) -> None:
    """`diff`, with its filters."""
    d = verb("diff", "file-level delta between two images, with kinds and stats")
    _image_arg(d, "old", "OLD", _ACCEPTED)
    _image_arg(d, "new", "NEW", "the same kinds as OLD")
    _output_options(d)
    d.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")
    d.add_argument(
        "--all", action="store_true", help="list every change in the table (default: first 200)"
    )
    d.add_argument(
        "--no-packages", action="store_true", help="do not read package databases to name owners"
    )
    _exit_code_option(d, "any change is listed (the filters apply)")
    f = d.add_argument_group("filters (the changes listed; stats stay the whole delta's)")
    f.add_argument(
        "--kind", action="append", type=_Vocabulary("Kind"), metavar="KIND[,KIND]",
        help="only these kinds (%(type)s)",
    )  # fmt: skip
    f.add_argument(
        "--status", action="append", type=_Vocabulary("Status"), metavar="STATUS[,STATUS]",
        help="only these statuses (%(type)s)",
    )  # fmt: skip
    f.add_argument(
        "--package", action="append", metavar="NAME",
        help="only paths owned by this package (name, name:arch or manager:name; globs work)",
    )  # fmt: skip
    f.add_argument(
        "--path", action="append", metavar="GLOB",
        help="only paths matching GLOB (fnmatch: * also matches /)",
    )  # fmt: skip


def _plan_verb(verb: Any) -> None:
    """`plan`."""
    pl = verb("plan", "the verdict for updating this host (or --root) from OLD to NEW")
    _image_arg(pl, "old", "OLD", _ACCEPTED + "; what --root runs now")
    _image_arg(pl, "new", "NEW", "the image to update to (the same kinds as OLD)")
    pl.add_argument("--root", default="/", help="where OLD is live (default /)")
    pl.add_argument("--snapshot", metavar="FILE", help="use a saved snapshot instead of /proc")
    _policy_option(pl, "a TOML policy (see docs/plan.md)")
    pl.add_argument("--spool", metavar="DIR", default=None, help="import tracer spool directory")
    _output_options(pl)
    pl.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")
    pl.add_argument("--timings", action="store_true", help="seconds per stage, on stderr")
    pl.add_argument(
        "--full", action="store_true", help="every evidence line and whole import chains"
    )
    pl.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 0 no-action, 1 restart, 5 reboot, 6 reimage (default: 0 whenever it ran)",
    )


def _policy_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help=f"{text} (default: $IMGDIFF_POLICY, else {SYSTEM_POLICY} if it exists)",
    )


class _Vocabulary:
    """An argparse type: comma-separated members of a closed vocabulary of `imgdiff.model`,
    named rather than imported, so building the parser does not load the model; its text
    (`%(type)s` in a help string) is the members, comma-separated."""

    def __init__(self, name: str) -> None:
        self.name = name

    def members(self) -> list[str]:
        """The vocabulary's values, in declaration order."""
        from imgdiff import model

        return [str(m) for m in getattr(model, self.name)]

    def __str__(self) -> str:
        return ", ".join(self.members())

    def __call__(self, text: str) -> list[str]:
        values = [v for v in text.split(",") if v]
        known = set(self.members())
        wrong = [v for v in values if v not in known]
        if wrong or not values:
            raise argparse.ArgumentTypeError(
                f"{', '.join(wrong) or repr(text)} (choose from {', '.join(sorted(known))})"
            )
        return values


def _archive_verbs(verb: Any) -> None:
    """The delta archive's verbs: pack, apply, check, rollback."""
    pk = verb("pack", "a delta archive: only what NEW has that OLD has not")
    _image_arg(pk, "old", "OLD", _ACCEPTED)
    _image_arg(pk, "new", "NEW", "the same kinds as OLD")
    pk.add_argument("-o", "--output", required=True, metavar="DELTA", help="where to write it")
    _output_options(pk, plain=False)

    ap = verb("apply", "apply delta archives, in order, to a tree that is the first one's OLD")
    ap.add_argument("deltas", metavar="DELTA", nargs="+")
    ap.add_argument("tree", metavar="TREE")
    ap.add_argument(
        "--digest",
        metavar="HEX",
        action="append",
        help="refuse any delta but this one (once per DELTA)",
    )
    _output_options(ap, plain=False)
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    ck = verb("check", "exit 0 iff TREE is NEW and nothing running in it uses replaced files")
    ck.add_argument("tree", metavar="TREE")
    _image_arg(ck, "image", "DELTA_OR_IMAGE", "NEW: " + _ACCEPTED)
    _output_options(ck)
    ck.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    rb = verb("rollback", "give back exactly OLD after an apply, finished or not")
    rb.add_argument("tree", metavar="TREE")
    _output_options(rb, plain=False)


def _diff(args: argparse.Namespace) -> int:
    from imgdiff.pipeline import diff

    with _reading(args) as (reading, progress):
        delta = diff(
            args.old,
            args.new,
            use_cache=not args.no_cache,
            owners=not args.no_packages,
            progress=progress,
            reading=reading,
        )
    shown = _select(delta, args)
    _emit(shown, args, full=args.all)
    return EXIT_NO if args.exit_code and shown.changes else EXIT_OK


def _select(delta: Any, args: argparse.Namespace) -> Any:
    """The delta with only the changes the filters keep (stats stay the whole delta's)."""
    kinds = {k for group in args.kind or () for k in group}
    statuses = {s for group in args.status or () for s in group}
    if not (kinds or statuses or args.package or args.path):
        return delta
    import fnmatch

    import attrs

    def owned(packages: Sequence[str]) -> bool:
        for owner in packages:  # "manager:name[:arch or site]"
            manager, _, rest = owner.partition(":")
            name = rest.split(":", 1)[0]
            forms = (owner, rest, name, f"{manager}:{name}")
            if any(fnmatch.fnmatchcase(f, want) for f in forms for want in args.package):
                return True
        return False

    kept = tuple(
        c
        for c in delta.changes
        if (not kinds or c.kind in kinds)
        and (not statuses or c.status in statuses)
        and (not args.package or owned(c.packages))
        and (not args.path or any(fnmatch.fnmatchcase(c.path, g) for g in args.path))
    )
    return attrs.evolve(delta, changes=kept)


def _packages(args: argparse.Namespace) -> int:
    from imgdiff.pipeline import package_diff

    with _reading(args) as (reading, progress):
        _, pdelta = package_diff(
            args.old, args.new, use_cache=not args.no_cache, progress=progress, reading=reading
        )
    return _emit(pdelta, args)


def _format(args: argparse.Namespace) -> str:
    """--format as given, else table on a terminal; in a pipe, plain for the listing
    verbs (the others keep their table, drawn without wrapping)."""
    if args.format:
        return str(args.format)
    if args.verb in _LISTING and not sys.stdout.isatty():
        return "plain"
    return "table"


def _emit(result: Any, args: argparse.Namespace, *, full: bool = False) -> int:
    """A command's result on stdout: its JSON document, plain records, or rendered for
    people (every result renders through `report`; `full` lists every row); but for JSON,
    read warnings go to stderr."""
    fmt = _format(args)
    result = _as_given(args, result)
    if fmt == "json":
        from imgdiff.report.json import write

        write(result, sys.stdout)  # in pieces: a large delta's text is never held whole
        sys.stdout.write("\n")
    elif fmt == "plain":
        from imgdiff.report.plain import lines, notes

        for line in lines(result):
            sys.stdout.write(line + "\n")
        _warn(args, list(notes(result)))
    else:
        from imgdiff.report.console import render
        from imgdiff.report.plain import warnings

        _stdout_console().print(render(result, full))
        _warn(args, list(warnings(result)))  # as in plain: on stderr, -q and -v apply
    return EXIT_OK


def _stdout_console() -> Any:
    """The console for results: a terminal's width (or $COLUMNS), else in a pipe no width
    at all, so a path is never broken across lines."""
    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=1 << 20)


def _warn(args: argparse.Namespace, messages: Sequence[str]) -> None:
    """Warnings on stderr, one line each (never wrapped): the first 50 unless -v, none
    with -q."""
    if args.quiet or not messages:
        return
    messages = [_as_given(args, m) for m in messages]
    most = len(messages) if args.verbose else 50
    for message in messages[:most]:
        sys.stderr.write(f"imgdiff: warning: {one_line(message)}\n")
    if len(messages) > most:
        sys.stderr.write(f"imgdiff: {len(messages) - most} more warnings (-v shows them)\n")


@contextmanager
def _progress(args: argparse.Namespace, description: str) -> Iterator[Any]:
    if not draws_on_stderr(quiet=args.quiet):
        yield None  # nothing is drawn: rich is not loaded
        return
    from imgdiff.report import console as rc

    with rc.progress_bar(description, quiet=args.quiet) as progress:
        yield progress


@contextmanager
def _reading(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """(read counts, hashing progress) for the pipeline, drawn as one display on stderr;
    (None, None) when nothing is drawn."""
    if not draws_on_stderr(quiet=args.quiet):
        yield None, None
        return
    from imgdiff.report import console as rc

    with rc.image_progress(quiet=args.quiet) as display:
        if display.reading is None:
            yield None, None
        else:
            yield display.reading, display.update


class _Undrawn:
    """The status line when nothing is drawn on stderr (rich's `Status`, silent)."""

    def __enter__(self) -> _Undrawn:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *args: object, **kwargs: object) -> None:
        """Nothing to redraw."""


def _status(args: argparse.Namespace, text: str) -> Any:
    if not draws_on_stderr(quiet=args.quiet):
        return _Undrawn()
    from imgdiff.report import console as rc

    return rc.stderr_console(quiet=args.quiet).status(text)


@contextmanager
def _writing(path: str) -> Iterator[None]:
    """An OSError while writing `path` is bad input naming it (a full disk, a read-only
    filesystem), not an internal error."""
    try:
        yield
    except OSError as exc:
        raise BadInput(path, f"cannot write: {exc.strerror or exc}") from None


def _spool(arg: str | None) -> str | None:
    from imgdiff.trace.tracer import DEFAULT_SPOOL_DIR  # not spool's: it loads attrs

    if arg is not None:
        return arg
    return DEFAULT_SPOOL_DIR if os.path.isdir(DEFAULT_SPOOL_DIR) else None


def _policy(args: argparse.Namespace) -> Any:
    """--policy, else $IMGDIFF_POLICY, else SYSTEM_POLICY if it exists, else None (the
    built-in defaults). A file named by the first two must exist."""
    from imgdiff.plan import Policy

    path = args.policy or os.environ.get("IMGDIFF_POLICY") or None
    if path is None and os.path.exists(SYSTEM_POLICY):
        path = SYSTEM_POLICY
    if path is None:
        return None
    if args.verbose:
        sys.stderr.write(f"imgdiff: policy from {escape_path(path)}\n")
    return Policy.load(path)


def _nobody_in_root(args: argparse.Namespace) -> bool:
    """True when no process but this one runs in --root (and none is unreadable): then
    `snapshot` and `stale` have nothing to report, and say so without loading the record
    classes, the loaders or rich, whose import is most of such a run's time."""
    from imgdiff.runtime import _procfs

    return not _procfs.anyone_in(args.root, besides=os.getpid())


def _print_json(doc: dict[str, Any]) -> None:
    import json

    # as report.json.dumps writes every document
    sys.stdout.write(json.dumps(doc, ensure_ascii=True, separators=(",", ":")) + "\n")


def _empty_snapshot(args: argparse.Namespace) -> int:
    """`snapshot` of a root no process runs in: what `_emit` prints for an empty
    `Snapshot` (tests/test_startup.py compares the two)."""
    if _format(args) == "json":
        from imgdiff.runtime import _procfs

        _print_json(
            {
                "schema": "imgdiff.snapshot/1",
                "boot_id": _procfs.boot_id(),
                "taken_at": time.time(),
                "host": _procfs.hostname(),
                "clock_ticks": _procfs.clock_ticks(),
                "processes": [],
                "gaps": [],
            }
        )
    return EXIT_OK  # plain: no record, no note


def _empty_stale(args: argparse.Namespace) -> int:
    """`stale` in a root no process runs in: what `_emit` (or --brief) prints for a
    `StaleReport` that considered no process (tests/test_startup.py compares the two)."""
    if _format(args) == "json":
        _print_json(
            {
                "schema": "imgdiff.stale/1",
                "processes": [],
                "gaps": [],
                "root": args.root,
                "considered": 0,
                "against": None,
            }
        )
    else:
        _warn(args, [f"no process runs in {args.root}: nothing was checked"])
    return EXIT_OK


def _snapshot(args: argparse.Namespace) -> int:
    directory(args.root)
    if not args.output and _format(args) != "table" and _nobody_in_root(args):
        return _empty_snapshot(args)
    from imgdiff.runtime import Snapshot

    if args.output:
        writable(args.output)
    with _status(args, "reading /proc"):
        snap = Snapshot.capture(
            args.root, spool=_spool(args.spool), exclude_self=True, compare_deleted=True
        )
    if args.output:
        with _writing(args.output):
            snap.save(args.output)
        if not args.format:
            return EXIT_OK
    return _emit(snap, args)


def _stale(args: argparse.Namespace) -> int:
    directory(args.root)
    plain = args.brief or _format(args) != "table"
    if not args.against and plain and _nobody_in_root(args):
        return _empty_stale(args)
    from imgdiff.runtime import Snapshot, stale

    against = None
    if args.against:
        from imgdiff.manifest import Manifest

        with _status(args, f"reading {args.against}"):
            against = Manifest.read(args.against)
    with _status(args, "reading /proc"):
        snap = Snapshot.capture(args.root, spool=_spool(args.spool), exclude_self=True)
        report = stale(snap, against=against, root=args.root)
    if args.brief and _format(args) != "json":
        from imgdiff.report.plain import brief, notes

        for line in brief(report):
            sys.stdout.write(line + "\n")
        _warn(args, list(notes(report)))
    else:
        _emit(report, args, full=args.full)
    return EXIT_NO if args.exit_code and report.processes else EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from imgdiff.pipeline import plan_update
    from imgdiff.results import VerdictKind

    directory(args.root)
    policy = _policy(args)
    with ExitStack() as stack:
        shown: dict[str, Any] = {"progress": None, "on_stage": None, "reading": None}
        if draws_on_stderr(quiet=args.quiet):
            from imgdiff.report import console as rc

            display = stack.enter_context(rc.image_progress(quiet=args.quiet))
            if display.reading is not None:
                shown = {
                    "progress": display.update,
                    "on_stage": display.stage,
                    "reading": display.reading,
                }
        plan = plan_update(
            args.old,
            args.new,
            root=args.root,
            snapshot=args.snapshot,
            policy=policy,
            spool=_spool(args.spool),
            use_cache=not args.no_cache,
            exclude_self=True,
            **shown,
        )
    if args.timings or args.verbose:
        for name, seconds in plan.timings.items():
            sys.stderr.write(f"{name:16} {seconds:8.3f} s\n")
    _emit(plan, args, full=args.full)
    if not args.exit_code:
        return EXIT_OK
    return {
        VerdictKind.NO_ACTION: EXIT_OK,
        VerdictKind.RESTART: EXIT_NO,
        VerdictKind.REBOOT: EXIT_REBOOT,
        VerdictKind.REIMAGE: EXIT_REIMAGE,
    }[plan.verdict.verdict]


def _verify(args: argparse.Namespace) -> int:
    from imgdiff.plan import Policy
    from imgdiff.verify import verify

    directory(args.tree)
    ignore = () if args.exact else (_policy(args) or Policy()).drift_ignore
    with _status(args, "reading the tree and the image"):
        result = verify(args.tree, args.image, ignore=ignore, use_cache=not args.no_cache)
    _emit(result, args)
    return EXIT_NO if args.exit_code and not result.matches else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from imgdiff import demo

    def show(workdir: str) -> int:
        with _status(args, "building two images and starting three services"):
            run = demo.run(workdir)
        return _emit(run, args)

    if args.keep:
        return show(args.keep)
    with tempfile.TemporaryDirectory(prefix="imgdiff-demo-") as tmp:
        return show(tmp)


def _manifest(args: argparse.Namespace) -> int:
    from imgdiff.manifest import Manifest, saved_files

    writable(args.output)
    keep = saved_files()  # kept from a streamed archive on its one pass
    with _reading(args) as (reading, progress):
        manifest = Manifest.read(
            args.image, use_cache=not args.no_cache, capture=keep, progress=reading
        )
        manifest.fill_digests(manifest.entries, progress=progress)
    manifest.info = _as_given(args, manifest.info)
    with _writing(args.output):
        manifest.save(args.output, keep=keep)
    _warn(args, [f"{escape_path(w.path)}: {w.message}" for w in manifest.warnings])
    return EXIT_OK


def _pack(args: argparse.Namespace) -> int:
    from imgdiff.archive.pack import pack

    writable(args.output)
    with _progress(args, "encoding") as progress:
        result = pack(args.old, args.new, args.output, progress=progress)
    return _emit(result, args)


def _apply(args: argparse.Namespace) -> int:
    from imgdiff.archive.apply import apply_chain

    directory(args.tree)
    if args.digest is not None and len(args.digest) != len(args.deltas):
        raise BadInput(args.tree, "give --digest once per delta, or not at all")
    with _status(args, "applying") as status:
        results = apply_chain(
            args.deltas,
            args.tree,
            digests=args.digest,
            use_cache=not args.no_cache,
            progress=status.update,
        )
    return _emit(results[-1], args)


def _rollback(args: argparse.Namespace) -> int:
    from imgdiff.archive.apply import rollback

    directory(args.tree)
    with _status(args, "rolling back") as status:
        result = rollback(args.tree, progress=status.update)
    return _emit(result, args)


def _check(args: argparse.Namespace) -> int:
    from imgdiff.check import check

    directory(args.tree)
    with _status(args, "checking the tree and its processes"):
        result = check(args.tree, args.image, use_cache=not args.no_cache)
    _emit(result, args)
    return EXIT_OK if result.ok else EXIT_NO


def _report(args: argparse.Namespace) -> int:
    from imgdiff._cli_fleet import run_report

    return run_report(args)


def _fleet(args: argparse.Namespace) -> int:
    from imgdiff._cli_fleet import run_fleet

    return run_fleet(args)


_VERBS = {
    "plan": _plan, "verify": _verify, "snapshot": _snapshot, "stale": _stale, "diff": _diff,
    "packages": _packages, "manifest": _manifest, "demo": _demo, "pack": _pack,
    "apply": _apply, "rollback": _rollback, "check": _check, "report": _report,
    "fleet": _fleet,
}  # fmt: skip


@contextmanager
def _stdin_image(args: argparse.Namespace) -> Iterator[None]:
    """An image argument given as `-` is read from stdin into a temporary file first (a
    tar is read more than once: package databases, ELF heads), removed afterwards."""
    dashes = [name for name in _IMAGE_ARGS if getattr(args, name, None) == "-"]
    if not dashes:
        yield
        return
    if len(dashes) > 1:
        raise BadInput("-", "standard input can stand for one image only")
    if sys.stdin is None or sys.stdin.isatty():
        raise BadInput("-", "standard input is a terminal: pipe an image into it")
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="imgdiff-stdin-")
    try:
        path = os.path.join(tmp, "stdin")
        with open(path, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        setattr(args, dashes[0], path)
        args.stdin_copy = path  # shown as `-` wherever the user sees it (`_as_given`)
        yield
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _as_given(args: argparse.Namespace, shown: Any) -> Any:
    """What the user sees (a message, a result record and the records in it) with the
    temporary copy of stdin named `-`, the argument as given, rather than a random path."""
    copy = getattr(args, "stdin_copy", None)
    if copy is None:
        return shown
    if type(shown) is str:  # not a vocabulary's member (a str enum)
        return shown.replace(escape_path(copy), "-") if copy != shown else "-"
    if isinstance(shown, tuple):
        items = tuple(_as_given(args, item) for item in shown)
        return shown if all(a is b for a, b in zip(items, shown, strict=True)) else items
    import attrs

    if not attrs.has(type(shown)):
        return shown
    changed = {}
    for field in attrs.fields(type(shown)):
        value = getattr(shown, field.name)
        if field.init and (given := _as_given(args, value)) is not value:
            changed[field.alias] = given
    return attrs.evolve(shown, **changed) if changed else shown


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with ExitStack() as stack:
        stack.enter_context(_stdin_image(args))
        code = _VERBS[args.verb](args)
    if args.verbose:
        sys.stderr.write(f"imgdiff: {args.verb} took {time.monotonic() - started:.2f} s\n")
    return code


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; one the verb does not know is reported with the verb's usage."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.verb is None:  # `imgdiff --bogus`: the option is what is wrong
        parser.error(
            f"unrecognized arguments: {' '.join(extra)}"
            if extra
            else "the following arguments are required: VERB"
        )
    verb = _verb_parsers(parser)[args.verb]
    if extra:
        verb.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "output", None) == "-":  # not a file named "-" in the current directory
        verb.error("-o - is not supported: name a file (./- for one named '-')")
    if args.verb == "diff" and args.no_packages and args.package:
        verb.error("--package needs the owners --no-packages leaves unread: give one or the other")
    return args


class _Terminated(BaseException):
    """SIGTERM or SIGHUP while the CLI runs: unwinds as Ctrl-C does (temporary files such
    as the copy of stdin are removed on the way out), then exits 128 + the signal."""

    def __init__(self, signo: int) -> None:
        super().__init__(signo)
        self.signo = signo


def _terminate(signo: int, _frame: object) -> None:
    raise _Terminated(signo)


@contextmanager
def _unwind_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `_Terminated` while the CLI runs (their default would end
    the process with no cleanup); the handlers found are put back afterwards, so a caller
    of `main` keeps its own. Only the main thread can set handlers: elsewhere, none is set."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signo: signal.signal(signo, _terminate) for signo in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `imgdiff` console script."""
    args = _parse(argv)
    try:
        with _unwind_on_termination():
            return _run(args)
    except _Terminated as exc:
        return 128 + exc.signo
    except ImgdiffError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"imgdiff: {one_line(_as_given(args, str(exc)))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        hint = "" if args.debug else " (--debug prints the traceback)"
        print(
            f"imgdiff: internal error: {type(exc).__name__}: "
            f"{one_line(_as_given(args, str(exc)))}{hint}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
