"""The `cliref` directive: the command-line reference, generated from imgdiff's own parser.

`imgdiff.cli._parser()` is the one place verbs, options and help texts are defined; this
walks it (sub-commands included, e.g. `fleet plan`) and writes, for each command, its
usage, description and every argument with its help, choices and default, as Sphinx
`program`/`option` descriptions (so `:option:` references and the index work and the man
builder renders them). Nothing here repeats a help text, so the page cannot drift from
the command. Not sphinx-argparse: this is short, has no dependency to keep in step with
each Sphinx release, describes the options every verb shares once, and writes the
`program`/`option` descriptions the man builder renders as a man page should.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

WIDTH = 70  # usage lines are wrapped at a fixed width, whatever the terminal: reproducible
# -v, -q, --debug: accepted by every command; described once, with the top-level options
COMMON = frozenset({"verbose", "quiet", "debug"})
_RST_SPECIAL = re.compile(r"([\\*`|_])")


def _escape(text: str) -> str:
    return _RST_SPECIAL.sub(r"\\\1", text)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def commands(
    parser: argparse.ArgumentParser, prog: str = "imgdiff"
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(full command name, one-line help, parser) for every command, depth first."""
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    for name, child in sub.choices.items():
        full = f"{prog} {name}"
        yield full, helps.get(name, ""), child
        yield from commands(child, full)


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _signature(action: argparse.Action) -> str:
    if not action.option_strings:
        return str(action.metavar or action.dest)
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    if action.metavar is not None:
        arg = str(action.metavar)
    elif action.choices is not None:
        arg = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        arg = action.dest.upper()
    return ", ".join(f"{o} {arg}" for o in action.option_strings)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=WIDTH)
    text = formatter._expand_help(action) if action.help else ""  # %(default)s and co.
    notes = []
    if action.choices is not None and action.option_strings and action.metavar is not None:
        notes.append("one of " + ", ".join(map(str, action.choices)))
    if action.required and action.option_strings:
        notes.append("required")
    if action.nargs in ("+", "*"):
        notes.append("one or more" if action.nargs == "+" else "any number")
    if action.option_strings and isinstance(action, argparse._AppendAction):
        notes.append("may be given more than once")
    if notes:
        text = f"{text} ({'; '.join(notes)})" if text else "; ".join(notes).capitalize()
    return text


def _groups(
    parser: argparse.ArgumentParser, *, skip_common: bool
) -> Iterator[tuple[str, list[argparse.Action]]]:
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
            and not (skip_common and a.dest in COMMON)
        ]
        if actions:
            yield group.title or "options", actions


def _describe(lines: list[str], name: str, parser: argparse.ArgumentParser, *, top: bool) -> None:
    lines += [".. program:: " + name, "", "::", ""]
    lines += ["   " + line for line in _usage(parser).splitlines()]
    lines.append("")
    if parser.description:
        lines += [_escape(parser.description), ""]
    for title, actions in _groups(parser, skip_common=not top):
        lines += [f"**{_escape(title.capitalize())}**", ""]
        for action in actions:
            lines += [".. option:: " + _signature(action), ""]
            help_text = _help(parser, action)
            if help_text:
                lines += ["   " + _escape(help_text), ""]
    if not top:
        lines += [
            "The common options :option:`imgdiff -v`, :option:`imgdiff -q` and "
            ":option:`imgdiff --debug` are accepted here too.",
            "",
        ]


class CliReference(SphinxDirective):
    """`.. cliref::` — every command of `imgdiff`, one section each."""

    def run(self) -> list[nodes.Node]:
        from imgdiff.cli import _parser

        parser = _parser()
        lines: list[str] = []
        title = "imgdiff"
        lines += [title, "~" * len(title), ""]
        _describe(lines, "imgdiff", parser, top=True)
        sub = _subparsers(parser)
        assert sub is not None
        lines += ["Commands (VERB):", ""]
        for full, help_text, _ in commands(parser):
            lines.append(f"- ``{full}``: {_escape(help_text)}")
        lines.append("")
        for full, _, child in commands(parser):
            heading = f"``{full}``"
            lines += [heading, "~" * len(heading), ""]
            _describe(lines, full, child, top=False)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="imgdiff.cli"), container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("cliref", CliReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
