"""A small, real example image pair for `imgdiff demo` and the README.

Both images are built from files of the running system (the `wsgiref` package of the
interpreter running imgdiff, a real shared library, real executables), then the NEW one
gets what a typical update does: a changed Python module, a rebuilt library, a changed
config file, a new doc page, a removed file and many touched mtimes. Nothing
built here is ever executed by imgdiff.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

_LIBDIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


def _find_lib(name: str) -> Path | None:
    for d in _LIBDIRS:
        p = Path(d) / name
        if p.is_file():
            return p.resolve()
    return None


def _populate(root: Path) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    py = root / "usr/lib/python3.11"
    shutil.copytree(
        stdlib / "wsgiref", py / "wsgiref", ignore=shutil.ignore_patterns("__pycache__")
    )
    libdir = root / "usr/lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    for name in ("libz.so.1", "libssl.so.3", "libcrypto.so.3"):
        lib = _find_lib(name)
        if lib is not None:
            shutil.copy2(lib, libdir / lib.name)
            if lib.name != name:
                os.symlink(lib.name, libdir / name)
    bindir = root / "usr/bin"
    bindir.mkdir(parents=True)
    for exe in ("ls", "cat", "env"):
        src = shutil.which(exe)
        if src:
            shutil.copy2(os.path.realpath(src), bindir / exe)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib")):
        os.symlink(target, root / link)
    etc = root / "etc"
    (etc / "app").mkdir(parents=True)
    (etc / "app/app.conf").write_text("listen = 8080\nworkers = 4\n")
    (etc / "hostname").write_text("example\n")
    unit = root / "usr/lib/systemd/system"
    unit.mkdir(parents=True)
    (unit / "app.service").write_text(
        "[Unit]\nDescription=Example app\n\n[Service]\n"
        "ExecStart=/usr/bin/python3 -m wsgiref.simple_server\n"
    )
    doc = root / "usr/share/doc/app"
    doc.mkdir(parents=True)
    (doc / "README").write_text("An example application.\n")
    (doc / "old-notes.txt").write_text("Removed in the update.\n")


def build_example_pair(workdir: str | os.PathLike[str]) -> tuple[str, str]:
    """Build `old/` and `new/` under `workdir` (replacing them) and return their paths."""
    base = Path(workdir)
    old, new = base / "old", base / "new"
    for d in (old, new):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        _populate(d)
    # the update
    init = new / "usr/lib/python3.11/wsgiref/__init__.py"
    init.write_text(init.read_text() + "\n# patched by the update\n")
    libssl = new / "usr/lib/x86_64-linux-gnu/libssl.so.3"
    if libssl.is_file():
        data = libssl.read_bytes()  # stands for a rebuilt library: same soname, new bytes
        libssl.unlink()  # a new inode, as dpkg's write-and-rename gives
        libssl.write_bytes(data + b"\0rebuilt\0")
    (new / "etc/app/app.conf").write_text("listen = 8080\nworkers = 8\n")
    (new / "usr/share/doc/app/CHANGES").write_text("workers: 4 -> 8\n")
    (new / "usr/share/doc/app/old-notes.txt").unlink()
    os.chmod(new / "usr/bin/cat", 0o4755)  # noqa: S103 - a mode change the demo should show
    for dirpath, _, files in os.walk(new / "usr/lib/python3.11"):
        for f in files:  # an update touches many mtimes without changing content
            os.utime(os.path.join(dirpath, f), ns=(1_751_328_000 * 10**9,) * 2)
    return str(old), str(new)
