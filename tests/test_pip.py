"""The pip reader on real wheels built and installed by pip, and on hand-made hostile metadata."""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

import imgdiff
from imgdiff.manifest import Manifest
from imgdiff.packages import pip
from imgdiff.packages.base import Package, PackageDB, PathResolver

from .conftest import gnu_tar, write_tree

SITE = "/usr/local/lib/python3.11/dist-packages"
PIP = [sys.executable, "-m", "pip", "-q", "--no-input", "--disable-pip-version-check"]
PIP_ENV = {**os.environ, "PIP_NO_INDEX": "1"}  # offline: hatchling is in the venv

ALPHA = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "Alpha_Lib"
version = "{version}"

[project.scripts]
alpha-cli = "alpha.core:main"

[tool.hatch.build.targets.wheel]
packages = ["src/alpha"]
"""

BETA = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "beta.tool"
version = "2.0"
dependencies = ["alpha-lib>=1.0", "Idna ; python_version >= '3'"]

[project.optional-dependencies]
speed = ["gamma>=1"]

[tool.hatch.build.targets.wheel]
packages = ["src/beta_tool"]
"""


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """alpha-lib 1.0 and 1.1 (core.py changed) and beta.tool 2.0, built once by pip."""
    base = tmp_path_factory.mktemp("projects")
    projects = [
        write_tree(
            base / f"alpha-{v}",
            {
                "pyproject.toml": ALPHA.format(version=v),
                "src/alpha/__init__.py": "",
                "src/alpha/core.py": f"VERSION = {v!r}\n\n\ndef main() -> int:\n    return 0\n",
            },
        )
        for v in ("1.0", "1.1")
    ]
    projects.append(
        write_tree(
            base / "beta",
            {"pyproject.toml": BETA, "src/beta_tool/__init__.py": "import alpha\n"},
        )
    )
    out = base / "wheels"
    # one pip per version of alpha-lib (one resolver refuses two), run side by side
    runs = [
        subprocess.Popen(
            [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), *map(str, group)],
            env=PIP_ENV,
        )
        for group in (projects[0::2], projects[1:2])
    ]
    assert [run.wait() for run in runs] == [0, 0]
    found = {"-".join(w.name.split("-")[:2]): w for w in out.glob("*.whl")}
    assert set(found) == {"alpha_lib-1.0", "alpha_lib-1.1", "beta_tool-2.0"}
    return found


def _install(tree: Path, *wheel_files: Path) -> Path:
    subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(tree) + SITE, *map(str, wheel_files)],
        check=True,
        env=PIP_ENV,
    )
    return tree


@pytest.fixture(scope="session")
def trees(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> tuple[Path, Path]:
    """Two image trees: old with alpha-lib 1.0, new with 1.1; beta.tool 2.0 in both."""
    base = tmp_path_factory.mktemp("images")
    old = _install(base / "old", wheels["alpha_lib-1.0"], wheels["beta_tool-2.0"])
    new = _install(base / "new", wheels["alpha_lib-1.1"], wheels["beta_tool-2.0"])
    return old, new


def _read(source: Path) -> PackageDB:
    m = Manifest.read(str(source), use_cache=False, capture=pip.wants)
    db = pip.read_pip(m, PathResolver(m))
    assert db is not None
    return db


def _by_name(db: PackageDB) -> dict[str, Package]:
    return {p.name: p for p in db.packages}


def _messages(db: PackageDB) -> list[str]:
    return [f"{w.path}: {w.message}" for w in db.warnings]


def _inside_image(path: str) -> bool:
    return path.startswith("/") and posixpath.normpath(path) == path and "\x00" not in path


# -- real wheels -------------------------------------------------------------------------


def test_wheels_installed_with_target_are_read_with_normalised_names(
    trees: tuple[Path, Path],
) -> None:
    db = _read(trees[0])
    assert db.manager == "pip"
    assert db.source == SITE
    assert db.warnings == ()
    assert [(p.name, p.version, p.arch) for p in db.packages] == [
        ("alpha-lib", "1.0", SITE),
        ("beta-tool", "2.0", SITE),
    ]
    assert {p.key for p in db.packages} == {f"alpha-lib:{SITE}", f"beta-tool:{SITE}"}


def test_owned_files_are_every_installed_file_including_the_target_bin_script(
    trees: tuple[Path, Path],
) -> None:
    tree = trees[0]
    pkgs = _by_name(_read(tree))
    on_disk = {
        "/" + str(p.relative_to(tree)) for p in (tree / SITE.lstrip("/")).rglob("*") if p.is_file()
    }
    owned = set(pkgs["alpha-lib"].files) | set(pkgs["beta-tool"].files)
    assert owned == on_disk
    assert not set(pkgs["alpha-lib"].files) & set(pkgs["beta-tool"].files)
    # RECORD says ../../bin/alpha-cli; pip --target moved it to SITE/bin
    assert f"{SITE}/bin/alpha-cli" in pkgs["alpha-lib"].files
    assert f"{SITE}/alpha/core.py" in pkgs["alpha-lib"].files
    assert f"{SITE}/beta_tool/__init__.py" in pkgs["beta-tool"].files


def test_digests_are_the_sha256_of_the_installed_files(trees: tuple[Path, Path]) -> None:
    tree = trees[0]
    for package in _read(tree).packages:
        digests = dict(package.file_digests)
        # RECORD cannot hash itself; pip records the .pyc files it compiles without hashes
        unhashed = {f for f in package.files if f.endswith((".dist-info/RECORD", ".pyc"))}
        assert len(unhashed) > 1
        assert set(digests) == set(package.files) - unhashed
        for path, digest in digests.items():
            data = (tree / path.lstrip("/")).read_bytes()
            assert digest == "sha256:" + hashlib.sha256(data).hexdigest(), path


def test_depends_lists_required_names_but_not_extras(trees: tuple[Path, Path]) -> None:
    pkgs = _by_name(_read(trees[0]))
    assert pkgs["beta-tool"].depends == ("alpha-lib", "idna")  # gamma is only for [speed]
    assert pkgs["alpha-lib"].depends == ()


def test_upgrade_shows_newer_version_and_changed_module_digest(trees: tuple[Path, Path]) -> None:
    old, new = (_by_name(_read(t)) for t in trees)
    assert pip.compare_versions(old["alpha-lib"].version, new["alpha-lib"].version) == -1
    old_digests, new_digests = (
        dict(old["alpha-lib"].file_digests),
        dict(new["alpha-lib"].file_digests),
    )
    core = f"{SITE}/alpha/core.py"
    assert old_digests[core] != new_digests[core]
    assert old_digests[f"{SITE}/alpha/__init__.py"] == new_digests[f"{SITE}/alpha/__init__.py"]
    assert old["beta-tool"] == new["beta-tool"]


def test_tar_gives_the_directory_result_from_the_first_pass_alone(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    tree = trees[1]
    archive = gnu_tar(tree, tmp_path / "new.tar.gz", "gzip")
    m = Manifest.read(str(archive), capture=pip.wants)
    archive.unlink()  # any second pass over the archive would now fail
    from_tar = pip.read_pip(m, PathResolver(m))
    assert from_tar == _read(tree)


def test_saved_manifest_gives_the_directory_result(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    Manifest.read(str(trees[1]), use_cache=False).save(tmp_path / "m")
    m = Manifest.load(tmp_path / "m")
    assert not m.has_contents
    from_saved = pip.read_pip(m, PathResolver(m))
    assert from_saved is not None
    assert len(from_saved.packages) == 2
    assert from_saved == _read(trees[1])


def test_image_without_python_distributions_has_no_pip_database(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", {"usr/lib/python3/dist-packages/six.py": "x = 1\n"})
    m = Manifest.read(str(tree), use_cache=False)
    assert pip.read_pip(m, PathResolver(m)) is None


# -- wants -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        (f"{SITE}/requests-2.32.5.dist-info/METADATA", True),
        (f"{SITE}/requests-2.32.5.dist-info/RECORD", True),
        ("/opt/venv/lib/python3.12/site-packages/x-1.dist-info/METADATA", True),
        ("/usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO", True),
        ("/usr/lib/python3/dist-packages/six-1.16.0.egg-info/installed-files.txt", True),
        ("/usr/lib/python3/dist-packages/six-1.16.0.egg-info/requires.txt", True),
        ("/usr/lib/python3/dist-packages/rpm-4.18.0.egg-info", True),
        (f"{SITE}/requests-2.32.5.dist-info/WHEEL", False),
        (f"{SITE}/requests-2.32.5.dist-info/sub/METADATA", False),
        (f"{SITE}/requests/METADATA", False),
        ("/usr/lib/python3/dist-packages/six-1.16.0.egg-info/RECORD", False),
        (f"{SITE}/x.dist-info", False),
        ("/usr/bin/python3", False),
    ],
)
def test_wants_selects_only_the_metadata_the_reader_reads(path: str, wanted: bool) -> None:
    assert pip.wants(path) is wanted


# -- versions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.1", -1),
        ("1.0", "1.0.0", 0),
        ("1.0rc1", "1.0", -1),
        ("1.0", "1.0.post1", -1),
        ("1.0.dev1", "1.0a1", -1),
        ("1!0.1", "2.0", 1),
        ("1.10", "1.9", 1),
        ("not a version", "0.1", -1),  # invalid sorts below every valid version
        ("2023.x.10", "2023.x.9", 1),  # two invalid: digit runs compare as numbers
        ("abc", "abc", 0),
    ],
)
def test_versions_order_by_pep440_and_never_raise(a: str, b: str, expected: int) -> None:
    assert pip.compare_versions(a, b) == expected
    assert pip.compare_versions(b, a) == -expected


# -- hand-made metadata ------------------------------------------------------------------

META = "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
LIB = "/usr/lib/python3/dist-packages"


def _site(rel: str, files: Mapping[str, str | bytes]) -> dict[str, str | bytes]:
    return {f"{rel.strip('/')}/{k}": v for k, v in files.items()}


def test_hostile_record_lines_are_skipped_with_warnings_and_never_leave_the_image(
    tmp_path: Path,
) -> None:
    good_hash = "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"  # of b""
    record = "\n".join(
        [
            f"bad/__init__.py,{good_hash},0",
            "bad/two-columns.py,sha256=x",
            "bad/four.py,,1,extra",
            "../../../../../../../../etc/shadow,,",
            "/etc/../../../root/.ssh/id_rsa,,",
            "/etc/bad.conf,,",
            "bad/mod.py,sha256=!!notbase64!!,3",
            "bad/short.py,sha256=AAAA,3",
            "bad/hex.py,sha256=" + hashlib.sha256(b"x").hexdigest() + ",1",
            '"bad/quoted, with comma.py",,',
            ",,",
            "",
            "bad-1.0.dist-info/RECORD,,",
        ]
    )
    tree = write_tree(
        tmp_path / "t",
        _site(
            SITE,
            {
                "bad-1.0.dist-info/METADATA": META.format(name="bad", version="1.0"),
                "bad-1.0.dist-info/RECORD": record,
                "bad/__init__.py": "",
            },
        ),
    )
    for source in (tree, gnu_tar(tree, tmp_path / "t.tar")):
        db = _read(source)
        (package,) = db.packages
        assert all(_inside_image(f) for f in package.files)
        assert set(package.files) == {
            f"{SITE}/bad/__init__.py",
            "/etc/bad.conf",
            f"{SITE}/bad/mod.py",
            f"{SITE}/bad/short.py",
            f"{SITE}/bad/hex.py",
            f"{SITE}/bad/quoted, with comma.py",
            f"{SITE}/bad-1.0.dist-info/RECORD",
        }
        assert dict(package.file_digests) == {
            f"{SITE}/bad/__init__.py": "sha256:" + hashlib.sha256(b"").hexdigest(),
            f"{SITE}/bad/hex.py": "sha256:" + hashlib.sha256(b"x").hexdigest(),
        }
        where = f"{SITE}/bad-1.0.dist-info/RECORD: "
        assert sorted(_messages(db)) == sorted(
            where + m
            for m in [
                "line skipped: wrong number of columns (expected path,hash,size) "
                "(2 lines, first at line 2)",
                "line skipped: path leaves the image root (line 4)",
                "line skipped: absolute path with '..' (line 5)",
                "malformed hash: file kept without a digest (2 lines, first at line 7)",
                "line skipped: empty path (line 11)",
            ]
        )


def test_record_lines_beyond_the_bound_are_ignored_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pip, "MAX_RECORD_LINES", 5)
    record = "".join(f"big/m{i}.py,,\n" for i in range(50))
    tree = write_tree(
        tmp_path / "t",
        _site(
            SITE,
            {
                "big-1.dist-info/METADATA": META.format(name="big", version="1"),
                "big-1.dist-info/RECORD": record,
            },
        ),
    )
    db = _read(tree)
    assert len(db.packages[0].files) == 5
    assert _messages(db) == [
        f"{SITE}/big-1.dist-info/RECORD: more than 5 lines; the rest ignored",
    ]


def test_unusable_metadata_falls_back_to_the_directory_name_or_skips_the_dist(
    tmp_path: Path,
) -> None:
    tree = write_tree(
        tmp_path / "t",
        _site(
            SITE,
            {
                "noname-2.5.dist-info/METADATA": "Metadata-Version: 2.1\nSummary: x\n",
                "latin-3.0.dist-info/METADATA": b"Name: caf\xe9\nVersion: 3.0\n",
                "spaced-1.0.dist-info/METADATA": META.format(name="spaced", version="1.0 beta"),
                "nometa-0.1.dist-info/RECORD": "nometa/__init__.py,,\n",
                "weird.dist-info/METADATA": "Summary: neither name nor version\n",
                "ok-1.0.dist-info/METADATA": "Name: OK\nVersion: 1.0\n\nName: body-is-ignored\n",
                "file-1.0.dist-info": "I am a file, not a directory\n",
            },
        ),
    )
    db = _read(tree)
    assert [(p.name, p.version) for p in db.packages] == [
        ("latin", "3.0"),
        ("nometa", "0.1"),
        ("noname", "2.5"),
        ("ok", "1.0"),
        ("spaced", "1.0"),
    ]
    assert _by_name(db)["nometa"].files == (f"{SITE}/nometa/__init__.py",)
    messages = _messages(db)
    for expected in [
        f"{SITE}/noname-2.5.dist-info/METADATA: no Name, no Version",
        f"{SITE}/noname-2.5.dist-info: using noname 2.5 from the directory name",
        f"{SITE}/latin-3.0.dist-info/METADATA: not valid UTF-8 (byte 9); "
        "undecodable bytes kept as-is",
        f"{SITE}/latin-3.0.dist-info/METADATA: no valid Name",
        f"{SITE}/spaced-1.0.dist-info/METADATA: no valid Version",
        f"{SITE}/nometa-0.1.dist-info: no readable METADATA",
        f"{SITE}/weird.dist-info: name or version unknown (not in metadata nor directory name)",
        f"{SITE}/file-1.0.dist-info: not a directory (file); not read as a distribution",
    ]:
        assert expected in messages
    assert not any("ok-1.0" in m for m in messages)


def test_symlinked_metadata_is_not_followed(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", _site(SITE, {"real-1.0.dist-info/RECORD": ""}))
    (tmp_path / "outside").write_text(META.format(name="host", version="9"))
    (tree / SITE.lstrip("/") / "real-1.0.dist-info/METADATA").symlink_to(tmp_path / "outside")
    db = _read(tree)
    assert [(p.name, p.version) for p in db.packages] == [("real", "1.0")]
    assert f"{SITE}/real-1.0.dist-info/METADATA: not a regular file (symlink); ignored" in (
        _messages(db)
    )


def test_egg_info_directories_and_files_are_read_with_installed_files_and_requires(
    tmp_path: Path,
) -> None:
    requires = "six>=1\n\n[:python_version < '4']\nToml\n\n[docs]\nsphinx\n"
    tree = write_tree(
        tmp_path / "t",
        _site(
            LIB,
            {
                "lazr.uri-1.0.6-py3.11.egg-info/PKG-INFO": META.format(
                    name="lazr.uri", version="1.0.6"
                )
                + "Requires-Dist: setuptools\n",
                "lazr.uri-1.0.6-py3.11.egg-info/requires.txt": requires,
                "lazr.uri-1.0.6-py3.11.egg-info/installed-files.txt": (
                    "../lazr/uri/__init__.py\nPKG-INFO\n../../../../bin/lazr\n"
                    "../../../../../../../../../x\n"
                ),
                "lazr/uri/__init__.py": "",
                "rpm-4.18.0.egg-info": META.format(name="rpm", version="4.18.0"),
            },
        ),
    )
    db = _read(tree)
    pkgs = _by_name(db)
    assert pkgs["rpm"].version == "4.18.0"
    assert pkgs["rpm"].files == ()
    lazr = pkgs["lazr-uri"]
    assert lazr.arch == LIB
    assert lazr.depends == ("setuptools", "six", "toml")
    assert lazr.files == (
        "/usr/bin/lazr",
        f"{LIB}/lazr.uri-1.0.6-py3.11.egg-info/PKG-INFO",
        f"{LIB}/lazr/uri/__init__.py",
    )
    assert _messages(db) == [
        f"{LIB}/lazr.uri-1.0.6-py3.11.egg-info/installed-files.txt: "
        "line skipped: path leaves the image root (line 4)"
    ]


def test_same_distribution_in_two_sites_is_two_packages_but_once_per_site(
    tmp_path: Path,
) -> None:
    tree = write_tree(
        tmp_path / "t",
        {
            **_site(
                LIB, {"six-1.16.0.dist-info/METADATA": META.format(name="six", version="1.16.0")}
            ),
            **_site(LIB, {"six.egg-info/PKG-INFO": META.format(name="six", version="1.15.0")}),
            **_site(
                SITE, {"six-1.17.0.dist-info/METADATA": META.format(name="six", version="1.17.0")}
            ),
        },
    )
    db = _read(tree)
    assert [(p.key, p.version) for p in db.packages] == [
        (f"six:{LIB}", "1.16.0"),
        (f"six:{SITE}", "1.17.0"),
    ]
    assert db.source == f"{LIB}, {SITE}"
    assert _messages(db) == [
        f"{LIB}/six.egg-info: six 1.15.0 is also installed in the same directory by "
        f"{LIB}/six-1.16.0.dist-info; this one is ignored"
    ]


def test_record_paths_are_resolved_through_the_images_own_symlinks(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "t",
        _site(
            LIB,
            {
                "tool-1.dist-info/METADATA": META.format(name="tool", version="1"),
                "tool-1.dist-info/RECORD": "/bin/tool,,\n../../../../lib/tool/data,,\n",
            },
        ),
    )
    (tree / "bin").symlink_to("usr/bin")
    (tree / "lib").symlink_to("usr/lib")
    db = _read(tree)
    assert db.packages[0].files == ("/usr/bin/tool", "/usr/lib/tool/data")


def test_a_new_interpreter_moves_a_distribution_as_an_upgrade_not_remove_and_add(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    from imgdiff.pipeline import package_diff

    def installed(root: Path, version: str, wheel: Path) -> Path:
        subprocess.run(
            [*PIP, "install", "--no-deps", "--target",
             str(root / f"usr/lib/python{version}/site-packages"), str(wheel)],
            check=True, env=PIP_ENV,
        )  # fmt: skip
        return root

    old = installed(tmp_path / "old", "3.11", wheels["alpha_lib-1.0"])
    new = installed(tmp_path / "new", "3.12", wheels["alpha_lib-1.1"])
    _, pdelta = package_diff(str(old), str(new), use_cache=False)
    (change,) = [c for c in pdelta.changes if c.manager == "pip"]
    assert (change.name, change.change) == ("alpha-lib", "upgraded")
    assert (change.old_version, change.new_version) == ("1.0", "1.1")
    assert change.location == "/usr/lib/python3.12/site-packages"
    assert change.arch == change.location  # the contract's `arch` keeps its meaning
    from imgdiff.report.json import document

    (doc,) = [c for c in document(pdelta)["changes"] if c["manager"] == "pip"]
    assert doc["location"] == "/usr/lib/python3.12/site-packages"


def test_two_interpreters_side_by_side_keep_two_distributions(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    from imgdiff.pipeline import package_diff

    sites = ["usr/lib/python3.11/site-packages", "usr/lib/python3.12/site-packages"]
    for site in sites:
        subprocess.run(
            [*PIP, "install", "--no-deps", "--target", str(tmp_path / "new" / site),
             str(wheels["alpha_lib-1.1"])],
            check=True, env=PIP_ENV,
        )  # fmt: skip
    (tmp_path / "old").mkdir()
    _, pdelta = package_diff(str(tmp_path / "old"), str(tmp_path / "new"), use_cache=False)
    added = sorted(c.location for c in pdelta.changes if c.change == "added")
    assert added == ["/" + s for s in sites]


def test_a_distribution_kept_in_one_site_and_added_in_another_is_one_addition(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    """The kept one was keyed by lineage in OLD, by site in NEW: added, added, removed."""
    other = "/usr/local/lib/python3.12/dist-packages"
    old = _install(tmp_path / "old", wheels["alpha_lib-1.0"])
    new = tmp_path / "new"
    shutil.copytree(old, new, symlinks=True)
    subprocess.run(
        [*PIP, "install", "--no-deps", "--target", f"{new}{other}", str(wheels["alpha_lib-1.0"])],
        check=True, env=PIP_ENV,
    )  # fmt: skip
    delta = imgdiff.package_diff(str(old), str(new))[1]
    assert [(c.name, c.change, c.location) for c in delta.changes] == [
        ("alpha-lib", "added", other)
    ]
