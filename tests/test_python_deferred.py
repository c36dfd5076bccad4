"""Imports inside functions (deferred, lazy imports) may never run: a module only they
reach is still evidence (the verdict stays conservative), but its chain says where the
function-level hop is and that it is uncertain. Real chrooted processes on real trees."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from imgdiff.loaders.python.scan import ParseMode, extract
from imgdiff.pipeline import plan_update

from .procs import build_chroot, processes, replace_file, scratch_dir
from .pyroot import PYTHON

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="no python3.11")

_UNCERTAIN = "(uncertain: reached only through imports inside functions, which may not have run)"
_MODULES = {
    "main.py": "import appmod, time\nprint('ready', flush=True)\ntime.sleep(600)\n",
    # module level: `atop`; in a function: `lazy`; `both` either way (the module-level
    # way is longer, yet its certain chain is the one shown)
    "appmod.py": "import atop\n\ndef later():\n    import lazy\n    import both\n",
    "atop.py": "import both\n",
    "lazy.py": "L = 1\n",
    "both.py": "B = 1\n",
}


def _app_root(root: Path) -> tuple[Path, Path]:
    """`root` made a chroot with python3.11, its encodings and /opt/app's `_MODULES`;
    (root, its /opt/app)."""
    build_chroot(root, [PYTHON])
    lib = root / "usr/lib/python3.11"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copytree("/usr/lib/python3.11/encodings", lib / "encodings", symlinks=True)
    app = root / "opt/app"
    app.mkdir(parents=True)
    for name, text in _MODULES.items():
        (app / name).write_text(text)
    return root, app


def _plan_changing(tmp_path: Path, module: str) -> dict[str, str]:
    """The import-graph details of the process running /opt/app/main.py (under -S) when
    NEW changes only `module`, by path."""
    with scratch_dir() as opt, processes() as procs:
        old, app = _app_root(opt / "old")
        proc = procs.start(["chroot", str(old), PYTHON, "-S", "/opt/app/main.py"])
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        replace_file(new / "opt/app" / module, (app / module).read_bytes() + b"# NEW\n")
        verdict = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
    assert verdict.verdict == "restart"  # conservative: the function may have run
    (step,) = [s for s in verdict.steps if proc.pid in s.pids]
    return {
        e.path: e.detail for p in step.processes for e in p.evidence if str(e.via) == "import-graph"
    }


def test_a_module_only_a_function_imports_is_uncertain_evidence(tmp_path: Path) -> None:
    assert _plan_changing(tmp_path, "lazy.py") == {
        "/opt/app/lazy.py": f"lazy ← appmod (in a function) ← __main__ {_UNCERTAIN}"
    }


def test_a_module_level_import_keeps_its_certain_chain(tmp_path: Path) -> None:
    assert _plan_changing(tmp_path, "atop.py") == {"/opt/app/atop.py": "atop ← appmod ← __main__"}


def test_a_module_imported_both_ways_is_shown_through_module_level_imports(
    tmp_path: Path,
) -> None:
    assert _plan_changing(tmp_path, "both.py") == {
        "/opt/app/both.py": "both ← atop ← appmod ← __main__"
    }


def test_stale_says_a_module_only_a_function_imports_is_uncertain() -> None:
    """`stale` on an untraced process: modules rewritten after it started are reasons;
    the one only a function imports says so, the module-level one reads as before."""
    from imgdiff.runtime import Snapshot, stale

    with scratch_dir() as opt, processes() as procs:
        root, app = _app_root(opt / "root")
        proc = procs.start(["chroot", str(root), PYTHON, "-S", "/opt/app/main.py"])
        time.sleep(1.2)  # ctimes a second past the start: the check's slack
        for module in ("lazy.py", "atop.py"):
            replace_file(app / module, (app / module).read_bytes() + b"# NEW\n")
        report = stale(Snapshot.capture(str(root)), root=str(root))
    (found,) = [p for p in report.processes if p.pid == proc.pid]
    why = {r.path[len(str(root)) :] if r.path.startswith(str(root)) else r.path: r.detail
           for r in found.reasons if str(r.via) == "import-graph"}  # fmt: skip
    assert why == {
        "/opt/app/lazy.py": f"changed after the process started {_UNCERTAIN}",
        "/opt/app/atop.py": "changed after the process started",
    }


_SOURCE = b'''import a
try:
    import b
except ImportError:
    b = None
if a:
    import c
class K:
    import d
    def method(self):
        import e
        x = __import__("f")
    @staticmethod
    def over_lines(
        x=1,
    ):
        from . import g
def one_line(): import h
async def co():
    import i
    def nested():
        pass
    import j
s = """
def in_a_string():
"""
import k
if __name__ == "__main__":
    def main():
        import m
    import n
'''


@pytest.mark.parametrize("parse", ["scan", "ast"])
def test_imports_in_function_bodies_are_marked_and_module_level_ones_not(parse: ParseMode) -> None:
    """Module-level code, `try`/`if` blocks and class bodies run at import; a function's
    body (a method's, a nested or async one, one on the header's line) when called."""
    refs = extract(_SOURCE, parse, newer_syntax=False).refs
    found = {r.module or r.names[0]: r.deferred for r in refs}
    assert found == {
        **dict.fromkeys("abcdkn", False),
        **dict.fromkeys("efghijm", True),
    }


def test_an_import_deep_in_a_long_function_is_marked_too() -> None:
    """Past the lines walked up from an import, every function's body is found instead."""
    source = "def f(\n    a,\n):\n" + "    x = 1\n" * 2100 + "    import deep\nimport top\n"
    refs = extract(source.encode(), "scan", newer_syntax=False).refs
    assert {r.module: r.deferred for r in refs} == {"deep": True, "top": False}
