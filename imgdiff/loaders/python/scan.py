"""The lexer: the imports of one Python source file, found without compiling it.

This module owns reading import statements out of source text: `import` and `from ...
import` statements and literal `importlib.import_module`/`__import__` calls are located
lexically (skipping strings, comments, `if TYPE_CHECKING:` bodies, and marking what only
runs under `if __name__ == "__main__":` and what sits in a function's body) and each is
cut out and parsed with `ast`; with ``parse="ast"`` whole files are parsed instead, up to
`FULL_PARSE_LIMIT`. It must not compile, execute or import anything, nor resolve a module
name to a file (the finder does), and it never reads files: it is given their bytes.
"""

from __future__ import annotations

import ast
import bisect
import io
import re
import tokenize
from collections.abc import Sequence
from typing import Literal

import attrs

ParseMode = Literal["scan", "ast"]

_MAX_STATEMENT = 64 << 10
_MAX_CALL = 4 << 10
_MAX_IMPORTS = 50_000  # `import` words looked at in one file (real files: a few hundred)
# ast.parse costs up to ~1 KiB of memory per byte of hostile source (measured: 16 MiB of
# `a\n` lines took 67 s and 14 GiB), so whole-file parsing is capped well below the read cap.
FULL_PARSE_LIMIT = 1 << 20


@attrs.frozen
class Ref:
    """One import found in source: `from ..module import names` or `import module`."""

    module: str  # without the leading dots; "" for `from . import x`
    level: int
    names: tuple[str, ...]  # the from-list; () for `import a.b`
    line: int
    anchor: str | None = None  # explicit package of import_module(".x", "pkg")
    # under a top-level `if __name__ == "__main__":`: runs only when the module is the
    # program itself, never when it is imported
    main_only: bool = False
    # in a function's body (a method's, a nested function's): runs when it is called, if
    # ever, not when the module is imported
    deferred: bool = False


@attrs.frozen
class Parsed:
    """The imports of one source file, and what could not be read of it."""

    refs: tuple[Ref, ...] = ()
    dynamic: tuple[int, ...] = ()  # lines importing a name computed at run time
    all_names: tuple[str, ...] | None = None  # a literal module-level __all__
    problems: tuple[str, ...] = ()


NOTHING = Parsed()  # a file without imports


class _SourceError(ValueError):
    """Source text CPython would refuse to compile (the reason is the message)."""


def _decode(data: bytes) -> str:
    """Source bytes as CPython reads them (PEP 263 cookie, BOM, UTF-8 default)."""
    if b"\0" in data:
        raise _SourceError("contains a null byte (CPython refuses the source)")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise _SourceError(f"bad encoding declaration: {exc.msg}") from None
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise _SourceError(f"not decodable as {encoding}: {exc}") from None
    if "\r" in text:  # the tokenizer reads \r\n and \r as \n
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def extract(data: bytes, parse: ParseMode, *, newer_syntax: bool) -> Parsed:
    """The imports of one source file given as bytes."""
    if b"import" not in data and b"__all__" not in data:
        return NOTHING
    if parse == "ast":
        if len(data) <= FULL_PARSE_LIMIT:
            try:
                tree = ast.parse(data)
            except SyntaxError as exc:
                if not newer_syntax:
                    return Parsed(problems=(f"not parsed: {_syntax_reason(exc)}",))
            except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
                return Parsed(problems=(f"not parsed: {type(exc).__name__}",))
            else:
                return _refs_from_tree(tree)
        note = "over the whole-file parse limit" if len(data) > FULL_PARSE_LIMIT else "newer syntax"
        scanned = _extract_scan(data)
        return attrs.evolve(scanned, problems=(*scanned.problems, f"{note}: scanned instead"))
    return _extract_scan(data)


def _extract_scan(data: bytes) -> Parsed:
    try:
        text = _decode(data)
    except _SourceError as exc:
        return Parsed(problems=(f"not read: {exc}",))
    return _scan(text)


def _syntax_reason(exc: SyntaxError) -> str:
    return f"SyntaxError at line {exc.lineno}: {exc.msg}"


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _is_main_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = (test.left, test.comparators[0])
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _refs_from_tree(tree: ast.Module) -> Parsed:
    """Every import in a module's tree (walked iteratively: trees can be very deep)."""
    refs: list[Ref] = []
    dynamic: list[int] = []
    guarded: list[ast.If] = [n for n in tree.body if isinstance(n, ast.If) and _is_main_guard(n)]
    for block in guarded:
        inner = _refs_from_tree(ast.Module(body=list(block.body), type_ignores=[]))
        refs.extend(attrs.evolve(r, main_only=True) for r in inner.refs)
        dynamic.extend(inner.dynamic)
    skip = {id(n) for n in guarded}
    # (node, inside a function's body)
    stack: list[tuple[ast.AST, bool]] = [(n, False) for n in tree.body if id(n) not in skip]
    for block in guarded:
        stack.extend((n, False) for n in block.orelse)  # `else:` of the guard runs on import
    while stack:
        node, deferred = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found = _refs_of_statement(node)
            refs.extend([attrs.evolve(r, deferred=True) for r in found] if deferred else found)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((n, deferred) for n in node.orelse)  # only typing tools read the body
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # decorators, defaults and annotations run at `def`; the body when called
            stack.extend((n, deferred) for n in (*node.decorator_list, node.args))
            stack.extend((n, deferred) for n in (node.returns,) if n is not None)
            stack.extend((n, True) for n in node.body)
            continue
        if isinstance(node, ast.Call):
            call = _ref_of_call(node)
            if isinstance(call, Ref):
                refs.append(attrs.evolve(call, deferred=True) if deferred else call)
            elif call == "dynamic":
                dynamic.append(node.lineno)
        stack.extend((n, deferred) for n in ast.iter_child_nodes(node))
    refs.sort(key=lambda r: r.line)
    return Parsed(tuple(refs), tuple(sorted(dynamic)), _all_names(tree.body))


def _refs_of_statement(node: ast.Import | ast.ImportFrom) -> list[Ref]:
    if isinstance(node, ast.Import):
        return [Ref(alias.name, 0, (), node.lineno) for alias in node.names]
    names = tuple(alias.name for alias in node.names)
    return [Ref(node.module or "", node.level, names, node.lineno)]


def _literal_str(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _ref_of_call(node: ast.Call) -> Ref | Literal["dynamic"] | None:
    """`__import__("a.b", fromlist=[...])` or `import_module(".b", "a")` as an import."""
    func = node.func
    fname = func.id if isinstance(func, ast.Name) else None
    if isinstance(func, ast.Attribute):
        fname = func.attr
    if fname not in ("__import__", "import_module"):
        return None
    kw = {k.arg: k.value for k in node.keywords if k.arg}
    first = node.args[0] if node.args else kw.get("name")
    name = _literal_str(first)
    if name is None:
        return "dynamic" if first is not None else None
    if fname == "__import__":
        fromlist = node.args[3] if len(node.args) > 3 else kw.get("fromlist")
        level_node = node.args[4] if len(node.args) > 4 else kw.get("level")
        level = 0
        if level_node is not None:
            if not (isinstance(level_node, ast.Constant) and type(level_node.value) is int):
                return "dynamic"
            level = level_node.value
        names: tuple[str, ...] = ()
        if isinstance(fromlist, ast.List | ast.Tuple):
            names = tuple(s for s in map(_literal_str, fromlist.elts) if s is not None)
        if level < 0 or (not name and level == 0):
            return None
        return Ref(name, level, names, node.lineno)
    level = len(name) - len(name.lstrip("."))
    if level == 0:
        return Ref(name, 0, (), node.lineno)
    package = node.args[1] if len(node.args) > 1 else kw.get("package")
    anchor = _literal_str(package)
    if anchor is None and not (
        isinstance(package, ast.Name) and package.id in ("__name__", "__package__")
    ):
        return "dynamic"
    return Ref(name[level:], level, (), node.lineno, anchor)


def _all_names(body: Sequence[ast.stmt]) -> tuple[str, ...] | None:
    """A module-level `__all__ = [...]` of string literals."""
    for stmt in body:
        value: ast.expr | None = None
        targets: list[ast.expr] = []
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        if isinstance(value, ast.List | ast.Tuple):
            return tuple(s for s in map(_literal_str, value.elts) if s is not None)
    return None


# The lexical scanner. `import` is searched as plain text (fast), then each hit is kept
# only if it starts a statement (line start, or after `:`/`;`, with an optional
# `from X` before it) outside triple-quoted strings and comments, or is a call of
# `__import__`/`import_module`; the statement or call is then cut out and parsed with
# `ast`. Strings that merely look like statements at a line start can over-report.
_TYPE_CHECKING_IF = re.compile(
    r"^([ \t]*)(?:el)?if[ \t]+(?:[A-Za-z_][\w.]*\.)?TYPE_CHECKING[ \t]*:[ \t]*(?:#[^\n]*)?$", re.M
)
_MAIN_GUARD_IF = re.compile(
    r"^()if[ \t]+(?:__name__[ \t]*==[ \t]*(['\"])__main__\2|(['\"])__main__\3[ \t]*==[ \t]*"
    r"__name__)[ \t]*:[ \t]*(?:#[^\n]*)?$",
    re.M,
)
_DEF_HEAD = re.compile(r"[ \t]*(?:async[ \t]+)?")
_DEF_REST = re.compile(r"def[ \t]+\w+[ \t]*\(")
_CLOSE = re.compile(r"[ \t]*\)")
_DEF_LINE = re.compile(r"(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(")
_WALK_BACK = 2000  # lines walked up from one import before every function is found instead
_PREFIX = re.compile(r"(?P<head>[ \t]*|[^\n]*[:;][ \t]*)(?P<from>from(?!\w)[\w. \t]*)?")
_DEF_BEFORE = re.compile(r"\bdef[ \t]+$")
_ALL_ASSIGN = re.compile(r"__all__[ \t]*(?::[^=\n]*)?=[ \t]*")
# Plain statements, the vast majority, are read without ast.parse (3x faster).
_AS = r"(?:[ \t]+as[ \t]+\w+)?"
_SIMPLE_IMPORT = re.compile(rf"import[ \t]+([\w.]+{_AS}(?:[ \t]*,[ \t]*[\w.]+{_AS})*)[ \t\r]*")
_SIMPLE_FROM = re.compile(
    rf"from[ \t]*(\.*)[ \t]*([\w.]*)[ \t]+import[ \t]+"
    rf"(\*|\w+{_AS}(?:[ \t]*,[ \t]*\w+{_AS})*)[ \t\r]*"
)


def _word(ch: str) -> bool:
    return bool(ch) and (ch.isalnum() or ch == "_")


def _code_state(seg: str) -> int:
    """0 if the end of one line's segment is code, 1 inside a string, 2 in a comment."""
    i = 0
    quote = ""
    while i < len(seg):
        ch = seg[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if seg.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
        elif ch == "#":
            return 2
        elif ch in "'\"":
            quote = ch * 3 if seg.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        i += 1
    return 1 if quote else 0


def _string_end(text: str, i: int, quote: str, limit: int) -> int:
    """Index just past the string whose body starts at `i` (len(text) if unterminated)."""
    while True:
        k = text.find(quote, i, limit)
        if k < 0:
            return limit
        b = k
        while b > i and text[b - 1] == "\\":
            b -= 1
        if (k - b) % 2 == 0:
            return k + len(quote)
        i = k + 1


def _triple_spans(text: str) -> list[tuple[int, int]]:
    """Spans of triple-quoted strings (docstrings): where `import` is only text."""
    spans: list[tuple[int, int]] = []
    floor = 0
    i = 0
    n = len(text)
    double, single = text.find('"""'), text.find("'''")
    while True:
        if 0 <= double < i:
            double = text.find('"""', i)
        if 0 <= single < i:
            single = text.find("'''", i)
        if double < 0 and single < 0:
            return spans
        start = double if single < 0 or 0 <= double < single else single
        line_start = max(text.rfind("\n", 0, start) + 1, floor)
        seg = text[line_start:start]
        if ("#" in seg or "'" in seg or '"' in seg) and _code_state(seg) != 0:
            i = start + 3  # a quote inside a one-line string or a comment
            continue
        end = _string_end(text, start + 3, text[start : start + 3], n)
        spans.append((start, end))
        floor = i = end


def _inside(spans: list[tuple[int, int]], starts: list[int], pos: int) -> bool:
    k = bisect.bisect_right(starts, pos) - 1
    return k >= 0 and pos < spans[k][1]


def _type_checking_blocks(
    text: str, spans: list[tuple[int, int]], starts: list[int]
) -> list[tuple[int, int]]:
    """Bodies of `if TYPE_CHECKING:` blocks, by indentation."""
    if "TYPE_CHECKING" not in text:
        return []
    return _blocks(text, spans, starts, _TYPE_CHECKING_IF)


def _main_guard_blocks(
    text: str, spans: list[tuple[int, int]], starts: list[int]
) -> list[tuple[int, int]]:
    """Bodies of top-level `if __name__ == "__main__":` blocks (an `else:` is not in them)."""
    if "__main__" not in text:
        return []
    return _blocks(text, spans, starts, _MAIN_GUARD_IF)


def _function_blocks(
    text: str, spans: list[tuple[int, int]], starts: list[int]
) -> list[tuple[int, int]]:
    """Bodies of functions and methods (the outermost: nested ones lie inside), a body
    on the header's own line included, by indentation."""
    blocks: list[tuple[int, int]] = []
    pos = 0
    while (i := text.find("def ", pos)) >= 0:  # str.find: far faster than a `^` search
        pos = i + 4
        ls = text.rfind("\n", 0, i) + 1
        head = _DEF_HEAD.match(text, ls)
        if head is None or head.end() != i or _DEF_REST.match(text, i) is None:
            continue
        if _inside(spans, starts, i):
            continue
        # the body ends at the first line no deeper than `def`, but a line starting
        # with `)` closes a signature written over several lines (`def f(\n  a,\n):`)
        indent = text[ls:i]
        indent = indent[: len(indent) - len(indent.lstrip(" \t"))]
        nl = text.find("\n", i)
        end = len(text) if nl < 0 else _body_end(text, spans, starts, nl + 1, indent)
        while _CLOSE.match(text, end):
            end = _body_end(text, spans, starts, end + 1, indent)
        blocks.append((i, end))
        pos = max(pos, end)
    return blocks


class _Functions:
    """Whether a place in source text lies in a function's body (a method's, a nested
    function's). Walked up from the place through the lines that open the blocks around
    it (an import sits a few lines below its `def`, and imports are few); past
    `_WALK_BACK` lines, every function's body in the text is found once instead."""

    def __init__(self, text: str, spans: list[tuple[int, int]], starts: list[int]) -> None:
        self.text, self.spans, self.starts = text, spans, starts
        self._blocks: list[tuple[int, int]] | None = None
        self._block_starts: list[int] = []

    def holds(self, p: int) -> bool:
        """Whether position `p` is in a function's body."""
        text = self.text
        if p == 0 or text[p - 1] == "\n":
            return False  # at a line's start: the module's own code
        if self._blocks is not None:
            return _inside(self._blocks, self._block_starts, p)
        start = text.rfind("\n", 0, p) + 1
        seg = text[start:p]
        body = seg.lstrip(" \t")
        if _DEF_LINE.match(body):
            return True  # `def f(): import x`
        level = _width(seg[: len(seg) - len(body)])
        end = start - 1  # the newline ending the line above
        for _ in range(_WALK_BACK):
            if level == 0 or end <= 0:
                return False
            start = text.rfind("\n", 0, end) + 1
            k = bisect.bisect_right(self.starts, start) - 1
            if k >= 0 and start < self.spans[k][1]:  # in a triple-quoted string:
                end = self.spans[k][0]  # the line it starts on is the one to look at
                start = text.rfind("\n", 0, end) + 1
            seg = text[start:end]
            body = seg.lstrip(" \t")
            end = start - 1
            if not body or body[0] in "#)]}":
                continue  # blank, a comment, or the close of a bracket: no block opens
            indent = _width(seg[: len(seg) - len(body)])
            if indent < level:
                if _DEF_LINE.match(body):
                    return True
                level = indent
        self._blocks = _function_blocks(text, self.spans, self.starts)
        self._block_starts = [b for b, _ in self._blocks]
        return self.holds(p)


def _width(indent: str) -> int:
    return len(indent.expandtabs(8)) if "\t" in indent else len(indent)


def _blocks(
    text: str, spans: list[tuple[int, int]], starts: list[int], header: re.Pattern[str]
) -> list[tuple[int, int]]:
    """(start, end) of the bodies of the `header` lines found outside strings, by
    indentation: a body ends at the first code line indented no deeper than its header."""
    blocks: list[tuple[int, int]] = []
    for m in header.finditer(text):
        if (blocks and m.start() < blocks[-1][1]) or _inside(spans, starts, m.start()):
            continue  # nested in a block already found: keeps this linear
        blocks.append((m.end(), _body_end(text, spans, starts, m.end() + 1, m.group(1))))
    return blocks


_DEDENT: dict[int, re.Pattern[str]] = {}


def _body_end(
    text: str, spans: list[tuple[int, int]], starts: list[int], pos: int, head_indent: str
) -> int:
    """Start of the first code line from `pos` on indented no deeper than `head_indent`
    (len(text) if none): where the block whose header has that indentation ends."""
    n = len(text)
    if "\t" not in head_indent:  # spaces: a regular expression finds the line
        width = len(head_indent)
        dedent = _DEDENT.get(width)
        if dedent is None:  # a literal first character lets `search` skip ahead fast
            dedent = _DEDENT[width] = re.compile(rf"\n {{0,{width}}}[^ \t\n#]")
        if pos > 0 and text[pos - 1] == "\n":
            pos -= 1  # `pos` starts a line: it may be the one
        while (m := dedent.search(text, pos)) is not None:
            found = m.start() + 1
            k = bisect.bisect_right(starts, found) - 1
            if k >= 0 and found < spans[k][1]:
                pos = spans[k][1]  # a line of a triple-quoted string
                continue
            return found
        return n
    indent = len(head_indent.expandtabs(8))
    while pos < n:
        nl = text.find("\n", pos)
        nl = n if nl < 0 else nl
        line = text[pos:nl]
        body = line.lstrip(" \t")
        if (
            body
            and not body.startswith("#")
            and not _inside(spans, starts, pos)
            and len(line[: len(line) - len(body)].expandtabs(8)) <= indent
        ):
            return pos
        pos = nl + 1
    return n


def _statement_end(text: str, start: int) -> int:
    """End of the logical line of an import statement starting at `start`."""
    nl = text.find("\n", start)
    nl = len(text) if nl < 0 else nl
    if not any(c in text[start:nl] for c in "(\\;#"):
        return nl
    depth = 0
    i = start
    limit = min(len(text), start + _MAX_STATEMENT)
    while i < limit:
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "#":
            nl = text.find("\n", i, limit)
            i = limit if nl < 0 else nl
            continue
        elif ch == "\\":
            i += 2
            continue
        elif ch in "\n;" and depth <= 0:
            return i
        i += 1
    return i


def _call_end(text: str, open_paren: int, cap: int = _MAX_CALL) -> int | None:
    """Index just past the `)` matching `open_paren`, strings skipped; None if too far."""
    depth = 0
    i = open_paren
    limit = min(len(text), open_paren + cap)
    while i < limit:
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i = _string_end(text, i + len(quote), quote, limit)
            continue
        elif ch == "#":
            nl = text.find("\n", i, limit)
            i = limit if nl < 0 else nl
            continue
        i += 1
    return None


def _scan(text: str) -> Parsed:
    spans = _triple_spans(text)
    starts = [s for s, _ in spans]
    guarded = _type_checking_blocks(text, spans, starts)
    guarded_starts = [s for s, _ in guarded]
    main_only = _main_guard_blocks(text, spans, starts)
    main_starts = [s for s, _ in main_only]
    functions = _Functions(text, spans, starts)
    refs: list[Ref] = []
    dynamic: list[int] = []
    problems: list[str] = []
    line, line_pos = 1, 0
    pos = 0
    budget = _MAX_IMPORTS
    while (p := text.find("import", pos)) >= 0:
        pos = p + 6
        budget -= 1
        if budget < 0:
            problems.append(f"over {_MAX_IMPORTS} import-like words: the rest not read")
            break
        k = bisect.bisect_right(starts, p) - 1
        if k >= 0 and p < spans[k][1]:
            pos = spans[k][1]
            continue
        if _inside(guarded, guarded_starts, p):
            continue
        line += text.count("\n", line_pos, p)
        line_pos = p
        floor = spans[k][1] if k >= 0 else 0
        held = len(refs)
        if p >= 2 and text.startswith("__import__", p - 2):
            if not _word(text[p - 3 : p - 2]) and not _word(text[p + 8 : p + 9]):
                _scan_call(text, p - 2, p + 8, floor, line, refs, dynamic)
        elif text.startswith("import_module", p):
            if not _word(text[p - 1 : p]) and not _word(text[p + 13 : p + 14]):
                _scan_call(text, p, p + 13, floor, line, refs, dynamic)
        elif not (_word(text[p - 1 : p]) or _word(text[p + 6 : p + 7])):
            found = _scan_statement(text, p, floor, line, problems)
            if found is not None:
                if _inside(main_only, main_starts, p):
                    found = [attrs.evolve(r, main_only=True) for r in found]
                refs.extend(found)
        if len(refs) > held and functions.holds(p):
            refs[held:] = [attrs.evolve(r, deferred=True) for r in refs[held:]]
    return Parsed(tuple(refs), tuple(dynamic), _scan_all(text, spans, starts), tuple(problems))


def _line_prefix(text: str, p: int, floor: int) -> tuple[int, str]:
    """Start of the logical line holding `p` (backslash continuations joined) and the
    text from there to `p`, the same length, continuations blanked."""
    ls = max(text.rfind("\n", 0, p) + 1, floor)
    while ls >= 2 and ls > floor and text[ls - 2] == "\\":
        ls = max(text.rfind("\n", 0, ls - 1) + 1, floor)
    return ls, text[ls:p].replace("\\\n", "  ")


def _scan_statement(
    text: str, p: int, floor: int, line: int, problems: list[str]
) -> list[Ref] | None:
    ls, prefix = _line_prefix(text, p, floor)
    start = p
    at_line_start = not prefix or prefix.isspace()
    if not at_line_start:
        if any(c in prefix for c in "#'\"") and _code_state(prefix) != 0:
            return None  # in a comment, or text in a string after a `;` or `:`
        m = _PREFIX.fullmatch(prefix)
        if m is None or "TYPE_CHECKING" in m.group("head"):
            return None
        if m.group("from") is None and prefix.endswith("."):
            return None
        if m.group("from") is not None:
            start = ls + m.start("from")
        at_line_start = not m.group("head").strip()
    snippet = text[start : _statement_end(text, p)]
    simple = _simple_statement(snippet, line)
    if simple is not None:
        return simple
    try:
        body = ast.parse(snippet).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        if at_line_start:
            problems.append(f"line {line}: import statement not understood")
        return None
    if len(body) != 1 or not isinstance(body[0], ast.Import | ast.ImportFrom):
        return None
    return [Ref(r.module, r.level, r.names, line) for r in _refs_of_statement(body[0])]


def _simple_statement(snippet: str, line: int) -> list[Ref] | None:
    """A one-line statement without parentheses, read by regular expression."""
    m = _SIMPLE_IMPORT.fullmatch(snippet)
    if m is not None:
        return [Ref(part.split()[0], 0, (), line) for part in m.group(1).split(",")]
    m = _SIMPLE_FROM.fullmatch(snippet)
    if m is None or not (m.group(1) or m.group(2)):
        return None
    names = tuple(part.split()[0] for part in m.group(3).split(","))
    return [Ref(m.group(2), len(m.group(1)), names, line)]


def _scan_call(
    text: str,
    start: int,
    name_end: int,
    floor: int,
    line: int,
    refs: list[Ref],
    dynamic: list[int],
) -> None:
    open_paren = name_end
    while open_paren < len(text) and text[open_paren] in " \t":
        open_paren += 1
    if text[open_paren : open_paren + 1] != "(":
        return
    _, prefix = _line_prefix(text, start, floor)
    if any(c in prefix for c in "#'\"") and _code_state(prefix) != 0:
        return
    if _DEF_BEFORE.search(prefix):
        return
    end = _call_end(text, open_paren)
    if end is None:
        dynamic.append(line)
        return
    try:
        expr = ast.parse(text[start:end], mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        dynamic.append(line)
        return
    if not isinstance(expr, ast.Call):
        return
    found = _ref_of_call(expr)
    if isinstance(found, Ref):
        refs.append(Ref(found.module, found.level, found.names, line, found.anchor))
    elif found == "dynamic":
        dynamic.append(line)


def _scan_all(text: str, spans: list[tuple[int, int]], starts: list[int]) -> tuple[str, ...] | None:
    pos = 0
    while (k := text.find("__all__", pos)) >= 0:
        pos = k + 7
        if (k and text[k - 1] != "\n") or _inside(spans, starts, k):
            continue
        m = _ALL_ASSIGN.match(text, k)
        if m is None:
            continue
        if text[m.end() : m.end() + 1] in ("[", "("):
            end = _call_end(text, m.end(), _MAX_STATEMENT)
        else:  # `__all__ = "a", "b"`
            end = text.find("\n", m.end())
            end = len(text) if end < 0 else end
        if end is None:
            return None
        try:
            value = ast.literal_eval(text[m.end() : end])
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
            return None
        if isinstance(value, list | tuple):
            return tuple(v for v in value if isinstance(v, str))
        return None
    return None
