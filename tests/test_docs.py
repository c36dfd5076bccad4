"""The documentation stands alone: every relative link in README.md and docs/*.md leads
to a file of the repository, and nothing points outside it (no ../shared). The man page
is the one Sphinx builds from docs/, and the policy example is a valid policy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)
NAMED = re.compile(r"`((?:docs/)?[\w.-]+\.md)`")  # a page named in backticks: `plan.md`
HEADING = re.compile(r"^#+ (.*)$", re.MULTILINE)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _targets(page: Path) -> list[str]:
    return LINK.findall(page.read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_lead_to_files_of_the_repository(page: Path) -> None:
    text = page.read_text()
    assert "../shared" not in text
    for target in _targets(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            assert "example.invalid" not in target
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_file(), f"{page.name}: {target} leads nowhere"
        assert dest.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        if anchor and dest.suffix == ".md":
            anchors = {_slug(h) for h in HEADING.findall(dest.read_text())}
            assert anchor in anchors, f"{page.name}: no heading #{anchor} in {dest.name}"
    for named in NAMED.findall(text):
        candidates = [page.parent / named, REPO / named, REPO / "docs" / named]
        assert any(c.is_file() for c in candidates), f"{page.name}: `{named}` names no page"


def test_the_contract_is_linked_from_the_readme_and_the_docs() -> None:
    assert "docs/contract.md" in _targets(REPO / "README.md")
    for name in ("cli.md", "architecture.md"):
        assert "contract.md" in _targets(REPO / "docs" / name)


def test_the_contract_has_an_example_of_every_json_document() -> None:
    text = (REPO / "docs" / "contract.md").read_text()
    examples = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    schemas = set(re.findall(r'"schema": "(imgdiff\.[a-z-]+/\d+)"', "".join(examples)))
    assert schemas >= {
        "imgdiff.delta/1", "imgdiff.packages/1", "imgdiff.snapshot/1", "imgdiff.stale/1",
        "imgdiff.verdict/1", "imgdiff.verify/1", "imgdiff.check/1", "imgdiff.pack/1",
        "imgdiff.apply/1",
    }  # fmt: skip


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_json_examples_parse(page: Path) -> None:
    decoder = json.JSONDecoder()
    for example in re.findall(r"```json\n(.*?)```", page.read_text(), re.DOTALL):
        text, at = example.strip(), 0
        while at < len(text):  # one or more documents, one after another
            _, end = decoder.raw_decode(text, at)
            at = len(text) - len(text[end:].lstrip())


def test_project_metadata_has_no_placeholder_url() -> None:
    assert "example.invalid" not in (REPO / "pyproject.toml").read_text()


def test_the_committed_man_page_is_the_one_built_from_the_docs(tmp_path: Path) -> None:
    """docs/man/imgdiff.1 is generated (its CLI reference from the argparse parser), and
    committed so the wheel can install it without Sphinx: it must be current."""
    subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "man",
         "-D", "nb_execution_mode=off", str(REPO / "docs"), str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip

    def body(path: Path) -> list[str]:  # comment lines name the docutils version
        return [line for line in path.read_text().splitlines() if not line.startswith('.\\"')]

    built, committed = tmp_path / "imgdiff.1", REPO / "docs/man/imgdiff.1"
    assert body(built) == body(committed), "stale man page: run bash scripts/dev.sh man"
    assert ".SH COMMANDS" in built.read_text()
    for verb in ("diff", "plan", "apply", "fleet plan"):
        assert f"imgdiff {verb}" in built.read_text()


def test_the_policy_pages_example_is_a_valid_policy(tmp_path: Path) -> None:
    from imgdiff.fleet import load_policy

    text = (REPO / "docs/policy.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    (tmp_path / "policy.toml").write_text(example)
    policy, rollout = load_policy(tmp_path / "policy.toml")
    assert policy.never_restart == ("postgresql.service",)
    assert rollout.max_unavailable == 0.1


PYTHON_NAME = re.compile(r"`(imgdiff(?:\.[A-Za-z_]\w*)+)(?![\w/.])")  # not a schema name


def _resolve(dotted: str) -> object:
    """The object a dotted name gives: attributes, or submodules where an attribute of a
    module is missing (as `import imgdiff.x.y` would load them)."""
    import importlib

    obj: object = importlib.import_module("imgdiff")
    for part in dotted.split(".")[1:]:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if not isinstance(obj, type(sys)):
                raise
            obj = importlib.import_module(f"{obj.__name__}.{part}")
    return obj


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_python_name_the_pages_give_resolves(page: Path) -> None:
    """plan.md named `imgdiff.verify.verify_restarted`: `imgdiff.verify` is the function
    (the lazy name wins over the module of the same name), so that was AttributeError."""
    for dotted in PYTHON_NAME.findall(page.read_text()):
        _resolve(dotted)
