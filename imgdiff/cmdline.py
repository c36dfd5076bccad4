"""The files a command line names: absolute path arguments of a process's argv or of a
unit's `Exec*=` line, as evidence of configuration. Lexical only: nothing is resolved,
opened or run.
"""

from __future__ import annotations

from collections.abc import Iterable


def path_arguments(words: Iterable[str]) -> list[str]:
    """The absolute paths among a command's arguments (`-c /etc/x`, `--config=/etc/x`)."""
    values = (w.partition("=")[2] if w.startswith("-") else w for w in words)
    return [v for v in values if plain_path(v)]


def plain_path(word: str) -> bool:
    """An absolute path with no specifier or variable to expand (and no `..`)."""
    return (
        word.startswith("/") and not any(c in word for c in "%$*?") and ".." not in word.split("/")
    )


__all__ = ["path_arguments", "plain_path"]
