"""Static import graph: which files an untraced Python program loads, found without running it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.python import (
    ImportCache,
    ImportGraph,
    RunMode,
    find_interpreter,
    interpreter_paths,
    parse_cmdline,
    static_imports,
)

from .conftest import write_tree

STDLIB = Path(sysconfig.get_paths()["stdlib"])
EXE = "/usr/bin/python3.11"
LIB = "/usr/lib/python3.11"
LOCAL_SITE = "/usr/local/lib/python3.11/dist-packages"
DEBIAN_SITE = "/usr/lib/python3/dist-packages"
CORPUS = Path("/var/tmp/imgdiff-corpus/new")

BASE_FILES: dict[str, str | bytes] = {
    "usr/bin/python3.11": b"",  # never executed: an empty file is enough
    "usr/lib/python3.11/os.py": "import abc\nimport sys\nimport stat\nimport posixpath\n",
    # Debian's site.py is recognised by its dist-packages layout
    "usr/lib/python3.11/site.py": '"""Debian: lib/python3/dist-packages."""\nimport os\n',
    "usr/lib/python3.11/encodings/__init__.py": "import codecs\nfrom . import aliases\n",
    "usr/lib/python3.11/encodings/aliases.py": "aliases = {}\n",
    "usr/lib/python3.11/encodings/utf_8.py": "import codecs\n",
    "usr/lib/python3.11/lib-dynload/.keep": "",
    "usr/lib/python3/dist-packages/.keep": "",
    "usr/local/lib/python3.11/dist-packages/.keep": "",
    "srv/.keep": "",
}

MakeRoot = Callable[..., RootFS]


def copy_stdlib(root: Path, names: Sequence[str]) -> None:
    """Copy real stdlib modules/packages of this interpreter into ROOT/usr/lib/python3.11."""
    for name in names:
        src = STDLIB / name
        dest = root / "usr/lib/python3.11" / name
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "test*"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


@pytest.fixture
def make_root(tmp_path: Path) -> Iterator[MakeRoot]:
    """A fake Debian-like root with python3.11, optional real stdlib parts and extra files."""
    opened: list[RootFS] = []

    def make(
        files: Mapping[str, str | bytes] | None = None,
        stdlib: Sequence[str] = (),
        name: str = "root",
    ) -> RootFS:
        root = write_tree(tmp_path / name, BASE_FILES)
        (root / "usr/bin/python3").symlink_to("python3.11")
        copy_stdlib(root, stdlib)
        write_tree(root, files or {})
        fs = RootFS(str(root))
        opened.append(fs)
        return fs

    yield make
    for fs in opened:
        fs.close()


def run(fs: RootFS, *args: str, cwd: str | None = "/srv", **kw: object) -> ImportGraph:
    return static_imports(fs, ["/usr/bin/python3", *args], EXE, cwd, **kw)  # type: ignore[arg-type]


# -- the classic -------------------------------------------------------------------------


def test_script_importing_wsgiref_simple_server_loads_the_package_and_what_it_imports(
    make_root: MakeRoot,
) -> None:
    fs = make_root(
        {"srv/app.py": "import wsgiref.simple_server\n"},
        stdlib=["wsgiref", "http", "socketserver.py", "platform.py"],
    )
    g = run(fs, "/srv/app.py")
    assert g.entry == "/srv/app.py"
    assert g.mode is RunMode.SCRIPT
    assert g.sys_path[0] == "/srv"
    for rel in (
        "wsgiref/__init__.py",
        "wsgiref/simple_server.py",
        "wsgiref/handlers.py",  # from wsgiref.handlers import SimpleHandler
        "wsgiref/headers.py",
        "wsgiref/util.py",
        "http/__init__.py",
        "http/server.py",  # from http.server import BaseHTTPRequestHandler
        "http/client.py",
        "socketserver.py",
        "platform.py",
    ):
        assert f"{LIB}/{rel}" in g.files, rel
    assert g.modules["wsgiref.simple_server"] == f"{LIB}/wsgiref/simple_server.py"
    assert "/srv/app.py" in g.files
    assert "urllib" in g.unresolved  # imported by simple_server, not in this root
    assert "sys" in g.in_binary
    assert "wsgiref" not in g.unresolved


# -- command lines -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "mode", "target", "args"),
    [
        (["python3", "app.py", "-v"], RunMode.SCRIPT, "app.py", ("-v",)),
        (["python3", "-Bum", "pkg", "x"], RunMode.MODULE, "pkg", ("x",)),
        (["python3", "-m", "http.server", "80"], RunMode.MODULE, "http.server", ("80",)),
        (["python3", "-mhttp.server"], RunMode.MODULE, "http.server", ()),
        (["python3", "-c", "import json", "a"], RunMode.COMMAND, "import json", ("a",)),
        (["python3", "-Icimport json"], RunMode.COMMAND, "import json", ()),
        (["python3", "-W", "ignore", "-X", "dev", "app.py"], RunMode.SCRIPT, "app.py", ()),
        (["python3", "-Wignore", "-Xdev", "app.py"], RunMode.SCRIPT, "app.py", ()),
        (["python3", "--check-hash-based-pycs", "always", "a.py"], RunMode.SCRIPT, "a.py", ()),
        (["python3", "-u", "--", "-c"], RunMode.SCRIPT, "-c", ()),
        (
            ["/usr/bin/python3", "-u", "/usr/local/bin/app"],
            RunMode.SCRIPT,
            "/usr/local/bin/app",
            (),
        ),
        (["python3", "-", "a"], RunMode.STDIN, "-", ("a",)),
        (["python3", "-i"], RunMode.INTERACTIVE, None, ()),
        (["python3"], RunMode.INTERACTIVE, None, ()),
    ],
)
def test_command_line_follows_cpython_option_grammar(
    argv: list[str], mode: RunMode, target: str | None, args: tuple[str, ...]
) -> None:
    inv = parse_cmdline(argv)
    assert (inv.mode, inv.target, inv.args) == (mode, target, args)


def test_command_line_flags_that_change_sys_path_are_kept() -> None:
    isolated = parse_cmdline(["python3", "-Im", "pkg"])
    assert (isolated.isolated, isolated.safe_path, isolated.no_user_site) == (True, True, True)
    assert (isolated.ignore_environment, isolated.no_site) == (True, False)
    assert parse_cmdline(["python3", "-S", "a.py"]).no_site
    assert parse_cmdline(["python3", "-P", "a.py"]).safe_path
    assert parse_cmdline(["python3", "-sE", "a.py"]).no_user_site
    assert parse_cmdline(["python3", "-x", "a.py"]).skip_first_line
    assert parse_cmdline(["python3", "-X", "frozen_modules=off", "a.py"]).frozen_modules is False


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        ([], RunMode.UNSUPPORTED),
        (["gunicorn: master [app:app]"], RunMode.UNSUPPORTED),  # setproctitle
        (["uwsgi", "--ini", "app.ini"], RunMode.UNSUPPORTED),
        (["python3", "-Q", "new", "a.py"], RunMode.UNSUPPORTED),
        (["python3", "-J", "a.py"], RunMode.UNSUPPORTED),
        (["python3", "--foo", "a.py"], RunMode.UNSUPPORTED),
        (["python3", "-m"], RunMode.UNSUPPORTED),
        (["python3", "--version"], RunMode.EXITS),
        (["python3", "-V"], RunMode.EXITS),
        (["python3", "-h"], RunMode.EXITS),
    ],
)
def test_command_lines_cpython_rejects_or_that_exit_are_reported_not_guessed(
    argv: list[str], mode: RunMode, make_root: MakeRoot
) -> None:
    inv = parse_cmdline(argv)
    assert inv.mode is mode
    assert inv.problem
    g = static_imports(make_root(), argv, EXE, "/srv")
    assert g.mode is mode
    assert not g.files
    assert g.notes == (inv.problem,)


# -- entry points ------------------------------------------------------------------------

PKG = {
    "srv/pkg/__init__.py": "name = 1\n",
    "srv/pkg/__main__.py": "from . import helper\nfrom .mod import run\n",
    "srv/pkg/helper.py": "",
    "srv/pkg/mod.py": "import json\ndef run(): pass\n",
}


def test_module_run_with_m_loads_package_init_and_main_with_cwd_first(
    make_root: MakeRoot,
) -> None:
    g = run(make_root(PKG), "-m", "pkg")
    assert g.entry == "pkg"
    assert g.sys_path[0] == "/srv"
    assert {"/srv/pkg/__init__.py", "/srv/pkg/__main__.py", "/srv/pkg/helper.py"} <= g.files
    assert "/srv/pkg/mod.py" in g.files
    assert "runpy" in g.in_binary  # frozen in 3.11: -m goes through runpy


def test_submodule_run_with_m_loads_its_parents_but_no_main(make_root: MakeRoot) -> None:
    g = run(make_root(PKG), "-m", "pkg.mod")
    assert {"/srv/pkg/__init__.py", "/srv/pkg/mod.py"} <= g.files
    assert "/srv/pkg/__main__.py" not in g.files
    assert "json" in g.unresolved


def test_combined_flags_before_m_still_select_the_module(make_root: MakeRoot) -> None:
    g = run(make_root(PKG), "-Bum", "pkg")
    assert g.mode is RunMode.MODULE
    assert "/srv/pkg/__main__.py" in g.files


def test_c_code_is_parsed_with_cwd_on_sys_path(make_root: MakeRoot) -> None:
    g = run(make_root(stdlib=["json"]), "-c", "import json")
    assert g.entry == "-c"
    assert g.sys_path[0] == "/srv"
    assert {f"{LIB}/json/__init__.py", f"{LIB}/json/decoder.py"} <= g.files
    assert "-c code parsed" in g.notes


def test_isolated_mode_leaves_the_script_directory_off_sys_path(make_root: MakeRoot) -> None:
    fs = make_root({"srv/app.py": "import helper\n", "srv/helper.py": ""})
    assert "/srv/helper.py" in run(fs, "/srv/app.py").files
    g = run(fs, "-I", "/srv/app.py")
    assert "/srv" not in g.sys_path
    assert "/srv/helper.py" not in g.files
    assert "helper" in g.unresolved
    assert "/srv/app.py" in g.files  # the script itself still runs


def test_no_site_flag_drops_site_packages_and_site_itself(make_root: MakeRoot) -> None:
    fs = make_root({"srv/app.py": "import deb\n", f"{DEBIAN_SITE[1:]}/deb.py": ""})
    assert f"{DEBIAN_SITE}/deb.py" in run(fs, "/srv/app.py").files
    g = run(fs, "-S", "/srv/app.py")
    assert DEBIAN_SITE not in g.sys_path
    assert "deb" in g.unresolved
    assert "site" not in g.in_binary


def test_relative_script_path_resolves_against_cwd_and_symlinked_script_uses_its_real_dir(
    make_root: MakeRoot, tmp_path: Path
) -> None:
    fs = make_root({"opt/app/main.py": "import helper\n", "opt/app/helper.py": ""})
    os.makedirs(tmp_path / "root/usr/local/bin", exist_ok=True)
    os.symlink("/opt/app/main.py", tmp_path / "root/usr/local/bin/app")
    g = static_imports(fs, ["/usr/bin/python3", "/usr/local/bin/app"], EXE, "/")
    assert g.sys_path[0] == "/opt/app"
    assert {"/usr/local/bin/app", "/opt/app/main.py", "/opt/app/helper.py"} <= g.files
    rel = static_imports(fs, ["python3", "main.py"], EXE, "/opt/app")
    assert "/opt/app/helper.py" in rel.files
    unknown = static_imports(fs, ["python3", "main.py"], EXE, None)
    assert any("unknown working directory" in n for n in unknown.notes)


def test_directory_given_as_script_runs_its_main(make_root: MakeRoot) -> None:
    fs = make_root({"srv/tool/__main__.py": "import helper\n", "srv/tool/helper.py": ""})
    g = run(fs, "/srv/tool")
    assert g.sys_path[0] == "/srv/tool"
    assert {"/srv/tool/__main__.py", "/srv/tool/helper.py"} <= g.files


def test_skip_first_line_flag_ignores_the_first_line(make_root: MakeRoot) -> None:
    fs = make_root({"srv/app.py": "import first\nimport second\n", "srv/second.py": ""})
    g = run(fs, "-x", "/srv/app.py")
    assert "first" not in g.unresolved
    assert "/srv/second.py" in g.files


# -- import forms ------------------------------------------------------------------------


def test_relative_imports_resolve_against_the_importing_module_package(
    make_root: MakeRoot,
) -> None:
    fs = make_root(
        {
            "srv/app.py": "import top.a.b\n",
            "srv/top/__init__.py": "",
            "srv/top/a/__init__.py": "",
            "srv/top/a/b.py": "from ..c import d\nfrom .. import e\nfrom . import sib\n",
            "srv/top/c.py": "d = 1\n",
            "srv/top/e.py": "",
            "srv/top/a/sib.py": "from ... import toofar\n",
        }
    )
    g = run(fs, "/srv/app.py")
    assert {"/srv/top/c.py", "/srv/top/e.py", "/srv/top/a/sib.py"} <= g.files
    assert any("beyond the top-level package" in n for n in g.notes)


def test_from_import_loads_submodules_but_not_plain_names(make_root: MakeRoot) -> None:
    fs = make_root(
        {
            "srv/app.py": "from pkg import submodule, name\nfrom pkg import *\n",
            "srv/pkg/__init__.py": "name = 1\n__all__ = ['name', 'starred']\n",
            "srv/pkg/submodule.py": "",
            "srv/pkg/starred.py": "",
            "srv/pkg/unlisted.py": "",
        }
    )
    g = run(fs, "/srv/app.py")
    assert {"/srv/pkg/submodule.py", "/srv/pkg/starred.py"} <= g.files
    assert "/srv/pkg/unlisted.py" not in g.files
    assert not [u for u in g.unresolved if u.startswith("pkg")]


def test_every_branch_is_followed_including_try_except_and_functions(
    make_root: MakeRoot,
) -> None:
    app = (
        "try:\n    import fastjson as json\nexcept ImportError:\n    import json\n"
        "if False:\n    import inbranch\n"
        "def later():\n    from lazy import thing\n"
        "x = 1; import aftersemi\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import typingonly\nelse:\n    import notyping\n"
        '"""\nimport indocstring\n"""\n'
        "# import incomment\n"
        "s = 'import instring'\n"
    )
    fs = make_root({"srv/app.py": app}, stdlib=["json", "typing.py"])
    for parse in ("scan", "ast"):
        g = run(fs, "/srv/app.py", parse=parse)
        assert f"{LIB}/json/__init__.py" in g.files
        assert {"fastjson", "inbranch", "lazy", "aftersemi", "notyping"} <= set(g.unresolved)
        assert not {"typingonly", "indocstring", "incomment", "instring"} & set(g.unresolved)


def test_literal_import_module_and_dunder_import_calls_are_followed(make_root: MakeRoot) -> None:
    app = (
        "import importlib\n"
        "mod = importlib.import_module('x.y')\n"
        "z = __import__('z')\n"
        "w = __import__('w', globals(), locals(), ['sub'])\n"
        "r = importlib.import_module('.rel', 'x')\n"
        "name = 'computed'\n"
        "d = importlib.import_module(name)\n"
    )
    fs = make_root(
        {
            "srv/app.py": app,
            "srv/x/__init__.py": "",
            "srv/x/y.py": "",
            "srv/x/rel.py": "",
            "srv/z.py": "",
            "srv/w/__init__.py": "",
            "srv/w/sub.py": "",
        },
        stdlib=["importlib"],
    )
    for parse in ("scan", "ast"):
        g = run(fs, "/srv/app.py", parse=parse)
        expected = {"/srv/x/__init__.py", "/srv/x/y.py", "/srv/x/rel.py", "/srv/z.py"}
        assert expected | {"/srv/w/sub.py"} <= g.files
        assert "/srv/app.py:7" in g.dynamic
        assert "computed" not in g.unresolved


def test_namespace_package_spans_several_site_directories(make_root: MakeRoot) -> None:
    fs = make_root(
        {
            "srv/app.py": "import ns.a\nimport ns.b\n",
            f"{LOCAL_SITE[1:]}/ns/a.py": "",
            f"{DEBIAN_SITE[1:]}/ns/b.py": "",
        }
    )
    g = run(fs, "/srv/app.py")
    assert {f"{LOCAL_SITE}/ns/a.py", f"{DEBIAN_SITE}/ns/b.py"} <= g.files
    assert "ns" in g.namespace_packages
    assert "ns" not in g.modules


def test_regular_module_later_on_the_path_beats_an_earlier_namespace_directory(
    make_root: MakeRoot,
) -> None:
    fs = make_root(
        {
            "srv/app.py": "import thing\n",
            "srv/thing/data.txt": "",
            "usr/lib/python3.11/thing.py": "",
        }
    )
    g = run(fs, "/srv/app.py")
    assert g.modules["thing"] == f"{LIB}/thing.py"


def test_extension_module_is_recorded_but_never_parsed(make_root: MakeRoot) -> None:
    so = f"{LIB}/lib-dynload/_fast.cpython-311-x86_64-linux-gnu.so"
    fs = make_root(
        {
            "srv/app.py": "import _fast\nimport pkgx\n",
            so[1:]: b"\x7fELF\0\0 import notfollowed\n",
            f"{LOCAL_SITE[1:]}/pkgx/__init__.py": "from ._speed import go\n",
            f"{LOCAL_SITE[1:]}/pkgx/_speed.abi3.so": b"\x7fELF",
            f"{LOCAL_SITE[1:]}/pkgx/_speed.py": "import purepython\n",  # extension wins
        }
    )
    g = run(fs, "/srv/app.py")
    assert so in g.files
    assert g.modules["pkgx._speed"] == f"{LOCAL_SITE}/pkgx/_speed.abi3.so"
    assert "notfollowed" not in g.unresolved
    assert "purepython" not in g.unresolved


def test_frozen_stdlib_modules_come_from_the_binary_unless_frozen_modules_off(
    make_root: MakeRoot,
) -> None:
    fs = make_root({"srv/app.py": "import os\n"})
    g = run(fs, "/srv/app.py")
    assert "os" in g.in_binary
    assert f"{LIB}/os.py" not in g.files
    assert "abc" in g.in_binary  # followed through os.py's source
    off = run(fs, "-X", "frozen_modules=off", "/srv/app.py")
    assert f"{LIB}/os.py" in off.files


def test_startup_imports_are_included(make_root: MakeRoot) -> None:
    fs = make_root(
        {"srv/app.py": "", "etc/python3.11/sitecustomize.py": "import apport_hook\n"},
    )
    os.symlink(
        "/etc/python3.11/sitecustomize.py", Path(fs.name) / "usr/lib/python3.11/sitecustomize.py"
    )
    g = run(fs, "/srv/app.py")
    assert {f"{LIB}/encodings/__init__.py", f"{LIB}/encodings/utf_8.py"} <= g.files
    assert f"{LIB}/encodings/aliases.py" in g.files
    # the import system's path and the file it really is (a conffile under /etc)
    assert {f"{LIB}/sitecustomize.py", "/etc/python3.11/sitecustomize.py"} <= g.files
    assert "apport_hook" in g.unresolved
    assert "site" in g.in_binary


# -- the interpreter's sys.path ----------------------------------------------------------


def test_debian_interpreter_paths_follow_its_site_layout(make_root: MakeRoot) -> None:
    fs = make_root()
    paths = interpreter_paths(fs, "/usr/bin/python3", "/srv", script="/srv/app.py")
    assert paths == ("/srv", LIB, f"{LIB}/lib-dynload", LOCAL_SITE, DEBIAN_SITE)
    assert interpreter_paths(fs, "/usr/bin/python3", "/work")[0] == "/work"
    assert interpreter_paths(fs, EXE, "/srv", safe_path=True, no_site=True) == (
        LIB,
        f"{LIB}/lib-dynload",
    )
    interp = find_interpreter(fs, "/usr/bin/python3")
    assert interp.real_executable == EXE
    assert interp.version == (3, 11)
    assert interp.prefix == "/usr"
    assert interp.debian


def test_usr_local_build_uses_its_own_prefix_and_site_packages(make_root: MakeRoot) -> None:
    fs = make_root(
        {
            "usr/local/bin/python3.12": b"",
            "usr/local/lib/python3.12/os.py": "",
            "usr/local/lib/python3.12/site.py": "# upstream site.py\n",
            "usr/local/lib/python3.12/site-packages/mod.py": "",
        }
    )
    interp = find_interpreter(fs, "/usr/local/bin/python3.12")
    assert (interp.prefix, interp.version, interp.debian) == ("/usr/local", (3, 12), False)
    assert interp.site == ("/usr/local/lib/python3.12/site-packages",)


def test_version_of_a_hard_linked_python3_comes_from_its_versioned_twin(
    make_root: MakeRoot,
) -> None:
    fs = make_root()
    root = Path(fs.name)
    os.link(root / "usr/bin/python3.11", root / "usr/bin/python3h")
    assert find_interpreter(fs, "/usr/bin/python3h").version == (3, 11)


@pytest.mark.parametrize("system_site", [False, True])
def test_venv_found_from_argv0_uses_its_site_packages_first(
    make_root: MakeRoot, system_site: bool
) -> None:
    fs = make_root(
        {
            "opt/venv/pyvenv.cfg": (
                "home = /usr/bin\n"
                f"include-system-site-packages = {str(system_site).lower()}\n"
                "version = 3.11.2\n"
            ),
            "opt/venv/lib/python3.11/site-packages/vpkg/__init__.py": "",
            "srv/app.py": "import vpkg\nimport deb\n",
            f"{DEBIAN_SITE[1:]}/deb.py": "",
        }
    )
    os.makedirs(Path(fs.name) / "opt/venv/bin")
    os.symlink(EXE, Path(fs.name) / "opt/venv/bin/python")
    g = static_imports(fs, ["/opt/venv/bin/python", "/srv/app.py"], EXE, "/srv")
    venv_site = "/opt/venv/lib/python3.11/site-packages"
    assert f"{venv_site}/vpkg/__init__.py" in g.files
    assert g.sys_path[:4] == ("/srv", LIB, f"{LIB}/lib-dynload", venv_site)
    assert (f"{DEBIAN_SITE}/deb.py" in g.files) is system_site
    # /proc/PID/exe alone (argv[0] without a slash) cannot reveal the venv
    bare = static_imports(fs, ["python", "/srv/app.py"], EXE, "/srv")
    assert "vpkg" in bare.unresolved


def test_pth_path_lines_are_added_and_import_lines_only_parsed(
    make_root: MakeRoot, tmp_path: Path
) -> None:
    marker = tmp_path / "pth-was-executed"
    pth = (
        "# comment\n"
        "\n"
        "../../../../opt/extra\n"
        "/does/not/exist\n"
        f"import os; open({str(marker)!r}, 'w').close()\n"
        "import hookmod\n"
    )
    fs = make_root(
        {
            f"{DEBIAN_SITE[1:]}/zz.pth": pth,
            f"{DEBIAN_SITE[1:]}/hookmod.py": "",
            "opt/extra/extramod.py": "",
            "srv/app.py": "import extramod\n",
        }
    )
    g = run(fs, "/srv/app.py")
    assert "/opt/extra" in g.sys_path
    assert "/does/not/exist" not in g.sys_path
    assert "/opt/extra/extramod.py" in g.files
    assert f"{DEBIAN_SITE}/hookmod.py" in g.files  # runs at start-up in every process
    assert any(".pth `import` line" in n for n in g.notes)
    assert not marker.exists()
    assert "/opt/extra" not in run(fs, "-S", "/srv/app.py").sys_path


# -- hostile roots and files -------------------------------------------------------------


def test_symlinks_resolve_inside_the_root_only(make_root: MakeRoot, tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"evilpkg/__init__.py": "import secret\n"})
    fs = make_root(
        {
            "srv/app.py": "import evilabs\nimport evilrel\nimport etcpkg\nimport goodpkg\n",
            "opt/goodpkg/__init__.py": "",
        }
    )
    lib = Path(fs.name) / "usr/lib/python3.11"
    os.symlink(outside / "evilpkg", lib / "evilabs")  # a host path: absent inside the root
    os.symlink("../../../../../../../../../.." + str(outside / "evilpkg"), lib / "evilrel")
    os.symlink("/etc", lib / "etcpkg")  # the root's /etc, which has no __init__.py
    os.symlink("/opt/goodpkg", lib / "goodpkg")
    g = run(fs, "/srv/app.py")
    assert {"evilabs", "evilrel"} <= set(g.unresolved)
    assert "secret" not in g.unresolved
    assert {f"{LIB}/goodpkg/__init__.py", "/opt/goodpkg/__init__.py"} <= g.files
    assert not [f for f in g.files if f.startswith(str(tmp_path))]
    assert g.modules.get("etcpkg") is None


@pytest.mark.parametrize("parse", ["scan", "ast"])
def test_hostile_files_become_notes_never_exceptions(make_root: MakeRoot, parse: str) -> None:
    files: dict[str, str | bytes] = {
        "srv/app.py": "import syn, big, deep, latin, nul, cookie, okafter\n",
        "srv/syn.py": "import fine1\ndef broken(:\n",
        "srv/big.py": b"import hidden\n" + b"#" * (2 << 20),
        "srv/deep.py": "import fine2\nx = a" + ".b" * 200_000 + "\n",
        "srv/latin.py": b"import fine3\ns = '\xe9'\n",
        "srv/nul.py": b"import fine4\x00\n",
        "srv/cookie.py": b"# -*- coding: nonexistent -*-\nimport fine5\n",
        "srv/okafter.py": "",
    }
    fs = make_root(files)
    g = run(fs, "/srv/app.py", parse=parse, max_file_size=1 << 20)
    notes = "\n".join(g.notes)
    for name in ("big", "latin", "nul", "cookie"):
        assert f"/srv/{name}.py:" in notes, name
    assert "over 1048576 bytes" in notes
    assert "/srv/okafter.py" in g.files
    assert {f"/srv/{n}.py" for n in ("syn", "big", "deep", "latin", "nul", "cookie")} <= g.files
    assert "hidden" not in g.unresolved
    assert not {"fine3", "fine4", "fine5"} & set(g.unresolved)
    if parse == "ast":  # whole files are parsed: refused ones give nothing
        assert "/srv/syn.py:" in notes
        assert "RecursionError" in notes
        assert not {"fine1", "fine2"} & set(g.unresolved)
    else:  # statements are read one by one: the rest of the file does not matter
        assert {"fine1", "fine2"} <= set(g.unresolved)


def test_hostile_import_statement_in_scan_mode_is_a_note(make_root: MakeRoot) -> None:
    fs = make_root({"srv/app.py": "import ok1\nimport (\nfrom . import\nimport ok2\n"})
    g = run(fs, "/srv/app.py")
    assert {"ok1", "ok2"} <= set(g.unresolved)
    assert any("/srv/app.py: line 2: import statement not understood" in n for n in g.notes)


def test_the_process_environment_is_never_consulted(
    make_root: MakeRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = make_root({"envdir/envmod.py": "", "srv/app.py": "import envmod\n"})
    monkeypatch.setenv("PYTHONPATH", f"/envdir:{fs.name}/envdir")
    monkeypatch.setenv("PYTHONHOME", "/envdir")
    monkeypatch.setenv("VIRTUAL_ENV", "/envdir")
    g = run(fs, "/srv/app.py")
    assert "envmod" in g.unresolved
    assert not [p for p in g.sys_path if "envdir" in p]
    assert any("PYTHONPATH" in n for n in g.notes)


def test_module_limit_stops_the_walk_with_a_note(make_root: MakeRoot) -> None:
    files: dict[str, str | bytes] = {f"srv/m{i}.py": f"import m{i + 1}\n" for i in range(50)}
    files["srv/app.py"] = "import m0\n"
    g = run(make_root(files), "/srv/app.py", max_modules=10)
    assert len(g.modules) <= 10
    assert any("stopped at 10 modules" in n for n in g.notes)


# -- caching -----------------------------------------------------------------------------


def test_shared_cache_gives_the_same_graph_and_sees_changed_files(make_root: MakeRoot) -> None:
    fs = make_root({"srv/app.py": "import a\n", "srv/a.py": "import b\n", "srv/b.py": ""})
    cache = ImportCache()
    first = run(fs, "/srv/app.py", cache=cache)
    assert len(cache) > 0
    assert run(fs, "/srv/app.py", cache=cache) == first
    write_tree(Path(fs.name), {"srv/a.py": "import c\n", "srv/c.py": ""})
    changed = run(fs, "/srv/app.py", cache=cache)
    assert "/srv/c.py" in changed.files
    assert "/srv/b.py" not in changed.files


# -- never executing, never importing what is inspected ----------------------------------

AUDIT_CHILD = r"""
import os, sys
root = os.path.realpath(sys.argv[1])
from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.python import static_imports

FORBIDDEN = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
             "os.fork", "os.forkpty", "pty.spawn", "ctypes.dlopen"}
violations = []

def under_root(path):
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == root or real.startswith(root + os.sep)

def hook(event, args):
    if event in FORBIDDEN:
        violations.append(event)
    elif event == "exec":
        name = getattr(args[0], "co_filename", "")
        if under_root(name) or not (name.startswith("/") or name.startswith("<frozen ")):
            violations.append(f"exec {name}")
    elif event == "import" and args[1] and under_root(args[1]):
        violations.append(f"import {args[0]} from {args[1]}")
    elif event == "open" and isinstance(args[0], (str, bytes)) and under_root(args[0]):
        mode, flags = args[1] or "", args[2] or 0
        if set(mode) & set("wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            violations.append(f"write {args[0]}")

sys.addaudithook(hook)
with RootFS(root) as fs:
    for argv in (["/usr/bin/python3", "/srv/app.py"], ["/usr/bin/python3", "-m", "evil"],
                 ["/usr/bin/python3", "-c", "import evil, json"]):
        graph = static_imports(fs, argv, "/usr/bin/python3.11", "/srv")
        assert "/srv/evil.py" in graph.files, graph
for name, module in list(sys.modules.items()):
    if under_root(getattr(module, "__file__", None) or ""):
        violations.append(f"module {name}")
print(violations)
sys.exit(1 if violations else 0)
"""


def test_static_imports_never_executes_or_imports_what_it_inspects(
    make_root: MakeRoot, tmp_path: Path
) -> None:
    marker = tmp_path / "executed"
    payload = f"open({str(marker)!r}, 'w').close()\n"
    fs = make_root(
        {
            "usr/bin/python3.11": f"#!/bin/sh\ntouch {marker}\n",
            "srv/app.py": "import evil\nimport json\n" + payload,
            "srv/evil.py": "import os\n" + payload,
            "usr/lib/python3.11/sitecustomize.py": payload,
            f"{DEBIAN_SITE[1:]}/hook.pth": f"import os; {payload}",
            f"{LIB[1:]}/json/__init__.py": payload,
            f"{LIB[1:]}/lib-dynload/_evil.cpython-311-x86_64-linux-gnu.so": b"\x7fELF",
        }
    )
    os.chmod(Path(fs.name) / "usr/bin/python3.11", 0o755)
    child = subprocess.run(
        [sys.executable, "-c", AUDIT_CHILD, fs.name],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert not marker.exists()


# -- the real image ----------------------------------------------------------------------


@pytest.mark.skipif(not (CORPUS / "usr/bin/python3.11").exists(), reason="corpus image absent")
def test_requests_in_the_real_image_resolves_quickly_through_dist_packages() -> None:
    with RootFS(str(CORPUS)) as fs:
        start = time.perf_counter()
        g = static_imports(fs, ["/usr/bin/python3", "-c", "import requests"], EXE, "/")
        elapsed = time.perf_counter() - start
        http = static_imports(fs, ["/usr/bin/python3", "-m", "http.server"], EXE, "/")
    site = "/usr/local/lib/python3.11/dist-packages"
    for rel in ("requests/__init__.py", "urllib3/__init__.py", "idna/core.py", "certifi/core.py"):
        assert f"{site}/{rel}" in g.files, rel
    assert f"{LIB}/json/__init__.py" in g.files
    assert "/etc/python3.11/sitecustomize.py" in g.files
    assert "charset_normalizer" in g.modules
    assert f"{LIB}/http/server.py" in http.files
    assert elapsed < 5  # ~0.1 s cold on the reference machine; generous for CI


GUARDED = {
    "srv/tool.py": (
        "import helper\n"
        'if __name__ == "__main__":\n'
        "    import selftest\n"
        "else:\n"
        "    import onimport\n"
        "def later():\n"
        "    import lazily\n"
    ),
    "srv/app.py": "import tool\nif '__main__' == __name__:\n    import cli_only\n",
    **{f"srv/{m}.py": "" for m in ("helper", "selftest", "onimport", "lazily", "cli_only")},
}


@pytest.mark.parametrize("parse", ["scan", "ast"])
def test_main_guard_of_an_imported_module_never_runs(make_root: MakeRoot, parse: str) -> None:
    """`if __name__ == "__main__":` runs for the program itself, not for what it imports."""
    g = run(make_root(GUARDED), "/srv/app.py", parse=parse)
    assert {"/srv/tool.py", "/srv/helper.py", "/srv/onimport.py", "/srv/cli_only.py"} <= g.files
    assert "/srv/lazily.py" in g.files  # function-level imports may run: kept
    assert "/srv/selftest.py" not in g.files
    assert g.chain("/srv/onimport.py") == ("onimport", "tool", "__main__")


@pytest.mark.parametrize("parse", ["scan", "ast"])
def test_main_guard_of_a_module_run_with_m_runs(make_root: MakeRoot, parse: str) -> None:
    g = run(make_root(GUARDED), "-m", "tool", parse=parse)
    assert "/srv/selftest.py" in g.files
    assert "/srv/onimport.py" in g.files  # the else branch is parsed too (conservative)


def test_a_relative_venv_home_does_not_hang_the_search(make_root: MakeRoot) -> None:
    # `home = bin` once made the prefix search walk up "" forever (an image can say so)
    fs = make_root(
        {
            "opt/venv/pyvenv.cfg": "home = bin\nversion = 3.11.2\n",
            "opt/venv/lib/python3.11/site-packages/vpkg/__init__.py": "",
            "srv/app.py": "import vpkg\n",
        }
    )
    os.makedirs(Path(fs.name) / "opt/venv/bin")
    os.symlink(EXE, Path(fs.name) / "opt/venv/bin/python")
    g = static_imports(fs, ["/opt/venv/bin/python", "/srv/app.py"], EXE, "/srv")
    assert "/opt/venv/lib/python3.11/site-packages/vpkg/__init__.py" in g.files


def test_a_module_behind_a_symlink_has_its_chain_by_its_real_path_too(
    make_root: MakeRoot, tmp_path: Path
) -> None:
    """Debian's sitecustomize.py is a link to /etc/python3.11/sitecustomize.py: a change
    to the real file is evidence whose chain says it is a start-up import."""
    fs = make_root({"etc/python3.11/sitecustomize.py": "X = 1\n", "srv/app.py": "pass\n"})
    os.symlink(
        "/etc/python3.11/sitecustomize.py",
        tmp_path / "root/usr/lib/python3.11/sitecustomize.py",
    )
    g = run(fs, "/srv/app.py")
    assert "/etc/python3.11/sitecustomize.py" in g.files
    assert g.chain("/etc/python3.11/sitecustomize.py") == ("sitecustomize",)
    assert g.chain("/usr/lib/python3.11/sitecustomize.py") == ("sitecustomize",)
