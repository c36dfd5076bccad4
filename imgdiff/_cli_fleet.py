"""The fleet's verbs of the `imgdiff` command: `report` and `fleet plan`.

Their arguments and how each runs; `cli` adds them to its parser and dispatches to them,
and they print only through `cli`'s helpers (`cli` stays the one module that prints).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager

from imgdiff.fs.inputs import directory
from imgdiff.fs.outputs import writable

TYPE_CHECKING = False  # not typing's: `imgdiff` builds this parser at every start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

EXIT_OK = 0


def add_verbs(verb: Any) -> None:
    """`report` and `fleet plan`, through `cli`'s verb factory and option helpers."""
    from imgdiff import cli

    r = verb("report", "a host report for fleet planning: snapshot, identity, tree state")
    r.add_argument("--root", default="/", help="the processes and tree of PATH (default /)")
    r.add_argument(
        "--against", metavar="MANIFEST_OR_IMAGE",
        help="the image the tree should be: the report says whether it matches, which "
        "paths differ and which packages it is behind on",
    )  # fmt: skip
    r.add_argument(
        "--redact", action="store_true", help="drop command-line arguments (keep the program)"
    )
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="written mode 0600")
    r.add_argument("--spool", metavar="DIR", default=None, help="import tracer spool directory")
    r.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")

    f = verb("fleet", "plan an update for many hosts from their reports (Dask)")
    sub = f.add_subparsers(dest="fleet_verb", required=True, metavar="VERB")
    fp = sub.add_parser(
        "plan", help="per-host verdicts, a summary and rollout waves",
        description="per-host verdicts (each what `imgdiff plan` says for that host), "
        "a summary and rollout waves, computed on Dask",
    )  # fmt: skip
    cli._common_options(fp)
    cli._image_arg(fp, "old", "OLD", "the image the hosts run (a directory lets graphs be read)")
    cli._image_arg(fp, "new", "NEW", "the image to update to")
    fp.add_argument(
        "reports", metavar="REPORTS", nargs="+",
        help="host reports or saved snapshots: files, or directories of *.json files",
    )  # fmt: skip
    fp.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="a running Dask scheduler (tcp://HOST:PORT); default: a local cluster here",
    )  # fmt: skip
    cli._policy_option(fp, "a TOML policy (docs/plan.md; fleet keys in docs/fleet.md)")
    cli._output_options(fp, plain=False)
    fp.add_argument("-o", "--output", metavar="FILE", help="also write the JSON document to FILE")
    fp.add_argument("--no-cache", action="store_true", help="do not read or write the digest cache")


def run_report(args: argparse.Namespace) -> int:
    """`imgdiff report`."""
    from imgdiff import cli
    from imgdiff.hostreport import HostReport

    directory(args.root)
    writable(args.output)
    with cli._status(args, "reading /proc" + (" and the tree" if args.against else "")):
        report = HostReport.capture(
            args.root,
            args.against,
            redact=args.redact,
            spool=cli._spool(args.spool),
            use_cache=not args.no_cache,
            exclude_self=True,
        )
    with cli._writing(args.output):
        report.save(args.output)
    if not args.quiet:
        tree = report.tree
        state = (
            ""
            if tree is None
            else "; tree matches the image"
            if tree.matches
            else f"; tree differs from the image in {tree.differs_total} paths"
            + (f", behind on {len(tree.behind)} packages" if tree.behind else "")
        )
        n = len(report.snapshot.processes)
        sys.stderr.write(
            f"imgdiff: report of {report.identity.hostname}: "
            f"{n} process{'' if n == 1 else 'es'}{state}\n"
        )
    return EXIT_OK


def run_fleet(args: argparse.Namespace) -> int:
    """`imgdiff fleet plan`."""
    from imgdiff import cli, fleet
    from imgdiff.errors import escape_path
    from imgdiff.report.json import dumps

    if args.output:
        writable(args.output)
    policy, rollout = (None, None)
    # as plan's --policy, $IMGDIFF_POLICY, then the system policy; the fleet keys beside
    path = args.policy or os.environ.get("IMGDIFF_POLICY") or None
    if path is None and os.path.exists(cli.SYSTEM_POLICY):
        path = cli.SYSTEM_POLICY
    if path is not None:
        if args.verbose:
            sys.stderr.write(f"imgdiff: policy from {escape_path(path)}\n")
        policy, rollout = fleet.load_policy(path)
    with _hosts_progress(args) as progress:
        result = fleet.plan(
            args.old,
            args.new,
            args.reports,
            policy=policy,
            rollout=rollout,
            use_cache=not args.no_cache,
            progress=progress,
            scheduler=args.scheduler,
        )
    doc = result.to_json()
    if args.output:
        with cli._writing(args.output), open(args.output, "w", encoding="ascii") as fh:
            fh.write(dumps(doc) + "\n")
    if cli._format(args) == "json":
        sys.stdout.write(dumps(doc) + "\n")
    else:
        cli._stdout_console().print(result)
    return EXIT_OK


@contextmanager
def _hosts_progress(args: argparse.Namespace) -> Iterator[Callable[[int, int], None] | None]:
    """A bar of hosts planned on stderr (a terminal only), or None."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from imgdiff.report.console import stderr_console

    console = stderr_console(quiet=args.quiet)
    if console.quiet:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("hosts planned", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
