"""What changes an untraced interpreter's next start without being a module it loaded:
a .pth file in a site directory (its `import` lines run, its path lines make sys.path)
and a module NEW adds that a restart would import instead. Real chrooted processes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imgdiff.pipeline import plan_update

from .procs import processes, replace_file, scratch_dir
from .pyroot import PYTHON, python_root

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="no python3.11")

SITE = "usr/local/lib/python3.11/dist-packages"
CODE = "import emod, time; print('ready', flush=True); time.sleep(600)"


def _pth_root(old: Path) -> None:
    """A real python3.11 root whose site directory holds hook.pth (an `import` line) and
    extra.pth (the path /opt/extra, where emod.py is)."""
    python_root(old)
    site = old / SITE
    site.mkdir(parents=True)
    (site / "hook.pth").write_text("import os; os.environ.setdefault('HOOKED', '1')\n")
    (site / "extra.pth").write_text("/opt/extra\n")
    for d, v in (("extra", "1"), ("extra2", "2")):
        (old / "opt" / d).mkdir(parents=True)
        (old / "opt" / d / "emod.py").write_text(f"E = {v}\n")


def _hook(new: Path) -> None:
    replace_file(new / SITE / "hook.pth", b"import os; os.environ.setdefault('HOOKED', '2')\n")


def _repoint(new: Path) -> None:
    replace_file(new / SITE / "extra.pth", b"/opt/extra2\n")


def _shadow(new: Path) -> None:
    (new / SITE / "emod.py").write_text("E = 'shadow'\n")


def _unrelated(new: Path) -> None:
    (new / SITE / "other.py").write_text("O = 1\n")


@pytest.mark.parametrize(
    ("change", "path", "detail"),
    [
        (_hook, f"/{SITE}/hook.pth", f"(start-up): a .pth file site reads from /{SITE}"),
        (_repoint, f"/{SITE}/extra.pth", f"(start-up): a .pth file site reads from /{SITE}"),
        (
            _shadow,
            f"/{SITE}/emod.py",
            "added: shadows emod, imported from /opt/extra/emod.py (emod ← __main__)",
        ),
        (_unrelated, None, None),
    ],
    ids=["pth-import-line", "pth-path-line", "added-shadowing-module", "added-unrelated"],
)
def test_pth_files_and_shadowing_modules_change_the_next_start(
    tmp_path: Path, change: object, path: str | None, detail: str | None
) -> None:
    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        _pth_root(old)
        proc = procs.start(["chroot", str(old), PYTHON, "-c", CODE])
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        assert callable(change)
        change(new)
        verdict = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
    if path is None:  # a module nobody imports is no evidence
        assert verdict.verdict == "no-action", verdict.reasons
        return
    assert verdict.verdict == "restart"
    (step,) = [s for s in verdict.steps if proc.pid in s.pids]
    found = {(e.path, str(e.via), e.detail) for p in step.processes for e in p.evidence}
    assert found == {(path, "import-graph", detail)}


def _zip(path: Path, text: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("zmod.py", text)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_a_changed_zip_on_sys_path_is_uncertain_import_graph_evidence(tmp_path: Path) -> None:
    """zmod is imported from /opt/zips/lib.zip (a .pth path line): the archive is not
    searched, so its change is evidence that says it is uncertain."""
    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        _pth_root(old)
        (old / "opt/zips").mkdir()
        _zip(old / "opt/zips/lib.zip", "Z = 1\n")
        (old / SITE / "zips.pth").write_text("/opt/zips/lib.zip\n")
        code = "import zmod, time; print('ready', flush=True); time.sleep(600)"
        proc = procs.start(["chroot", str(old), PYTHON, "-c", code])
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        (new / "opt/zips/lib.zip").unlink()
        _zip(new / "opt/zips/lib.zip", "Z = 2\n")
        verdict = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
    (step,) = [s for s in verdict.steps if proc.pid in s.pids]
    (e,) = [e for p in step.processes for e in p.evidence]
    assert (e.path, str(e.via)) == ("/opt/zips/lib.zip", "import-graph")
    assert "not searched" in e.detail
    assert "uncertain" in e.detail
