"""The exception tree every imgdiff stage raises from.

Callers catch `ImgdiffError` for anything imgdiff refuses, or the matching builtin
(`ValueError` for bad input, `NotImplementedError` for unsupported formats). Nothing here
prints or exits; `imgdiff.cli` maps these to exit codes.
"""

from __future__ import annotations


class ImgdiffError(Exception):
    """Base of every error imgdiff raises on purpose."""


class BadInput(ImgdiffError, ValueError):
    """An image, archive, manifest or database is malformed, hostile or truncated.

    The message names the file and, where there is one, the entry inside it.
    """

    def __init__(self, source: str, message: str, entry: str | None = None) -> None:
        self.source = source
        self.entry = entry
        self.reason = message
        where = escape_path(source)
        if entry is not None:
            where = f"{where}: {escape_path(entry)}"
        super().__init__(f"{where}: {message}")


class LimitExceeded(BadInput):
    """Input exceeds a safety bound (size, entry count, expansion ratio, depth)."""


class Unsupported(ImgdiffError, NotImplementedError):
    """The input is well-formed but of a kind imgdiff does not read."""


class NoSuchProcess(ImgdiffError, ProcessLookupError):
    """The process exited (or its PID was reused) while it was being read."""

    def __init__(self, pid: int, message: str) -> None:
        self.pid = pid
        super().__init__(message)

    def __str__(self) -> str:  # OSError's own would print the args tuple
        return str(self.args[0])


class AccessDenied(ImgdiffError, PermissionError):
    """Reading the process needs privileges this reader does not have."""

    def __init__(self, pid: int, message: str) -> None:
        self.pid = pid
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


def one_line(message: str) -> str:
    """A message with its control characters escaped, so it prints as one line."""
    if message.isprintable():
        return message
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def escape_path(path: str) -> str:
    """Render a path for a one-line message: control and undecodable bytes escaped."""
    if path.isascii() and path.isprintable() and "\\" not in path:
        return path  # nothing to escape (printable ASCII has no controls nor DEL)
    out = []
    for ch in path:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd raw byte from os.fsdecode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)
