"""Restart order from real unit files read out of an image."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgdiff import Manifest
from imgdiff.systemd.unitfiles import (
    aliases,
    batches,
    config_sources,
    dependencies,
    is_unit_file,
    override_paths,
    parse_unit,
    split_command,
    unit_file_name,
)

from .conftest import write_tree

UNITS: dict[str, str | bytes] = {
    "usr/lib/systemd/system/db.service": "[Unit]\nDescription=db\n[Service]\nExecStart=/db\n",
    "usr/lib/systemd/system/cache.service": "[Unit]\nAfter=db.service\n",
    "usr/lib/systemd/system/web.service": "[Unit]\nAfter=cache.service network.target\n",
    "usr/lib/systemd/system/worker.service": "[Unit]\nPartOf=web.service\n",
    "usr/lib/systemd/system/log.service": "[Unit]\nAfter=db.service\n",
    # the admin's copy wins over the vendor's, and a drop-in resets then adds
    "etc/systemd/system/log.service": "[Unit]\nAfter=web.service\n",
    "etc/systemd/system/log.service.d/override.conf": "[Unit]\nAfter=\nAfter=cache.service\n",
    # `Before=` orders the named unit after this one; a drop-in's reset drops it
    "usr/lib/systemd/system/early.service": "[Unit]\nBefore=db.service\n",
    "usr/lib/systemd/system/gone.service": "[Unit]\nBefore=db.service\n",
    "usr/lib/systemd/system/gone.service.d/x.conf": "[Unit]\nBefore=\n",
    "etc/systemd/system/a.service": "[Unit]\nAfter=b.service\n",
    "etc/systemd/system/b.service": "[Unit]\nAfter=a.service\n",
    "etc/app.conf": "not a unit\n",
}


def _deps(tmp_path: Path) -> dict[str, set[str]]:
    m = Manifest.read(str(write_tree(tmp_path / "img", UNITS)), use_cache=False)
    files = m.read_files([p for p in m.entries if is_unit_file(p)])
    return dependencies(files)


def test_precedence_and_dropins(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    assert deps["log.service"] == {"cache.service"}
    assert deps["web.service"] == {"cache.service", "network.target"}
    assert deps["worker.service"] == {"web.service"}
    assert deps["db.service"] == {"early.service"}
    assert batches({"db.service", "early.service"}, deps) == [["early.service"], ["db.service"]]


def test_batches_put_dependencies_first_even_through_units_outside_the_plan(
    tmp_path: Path,
) -> None:
    deps = _deps(tmp_path)
    # cache.service is not in the plan, but web comes after it and it after db
    assert batches({"web.service", "db.service", "worker.service"}, deps) == [
        ["db.service"],
        ["web.service"],
        ["worker.service"],
    ]
    assert batches({"log.service", "web.service"}, deps) == [["log.service", "web.service"]]


def test_a_cycle_does_not_hang(tmp_path: Path) -> None:
    assert batches({"a.service", "b.service"}, _deps(tmp_path)) == [["a.service", "b.service"]]


def test_parse_ignores_other_sections_and_comments() -> None:
    text = (
        "[Service]\nAfter=nope.service\n[Unit]\n# After=comment.service\n"
        "Requires=x.service y.service\n"
    )
    assert parse_unit(text) == {"Requires": ["x.service", "y.service"]}


def test_a_comment_inside_a_continuation_is_skipped(tmp_path: Path) -> None:
    """systemd.syntax(7): comment lines after a backslash are ignored, the line goes on."""
    tree = {
        "usr/lib/systemd/system/bb.service": "[Unit]\nAfter=\\\n# a comment\n  cc.service\n",
        "usr/lib/systemd/system/cc.service": "[Unit]\n",
    }
    m = Manifest.read(str(write_tree(tmp_path / "img", tree)), use_cache=False)
    deps = dependencies(m.read_files([p for p in m.entries if is_unit_file(p)]))
    assert deps["bb.service"] == {"cc.service"}


SERVICE = (
    "[Unit]\nDescription=web\n"
    "[Service]\n"
    "EnvironmentFile=-/etc/web/env\n"
    "ExecStartPre=/usr/bin/web-check --config=/etc/web/web.toml\n"
    "ExecStart=@/usr/bin/web web -c /etc/web/extra.conf \\\n"
    "    --log %L/web.log $OPTS /srv/../etc/shadow\n"
    "ConfigurationDirectory=web-extra web-more/sub\n"
    "ExecReload=/bin/kill -HUP $MAINPID\n"
)


def test_config_sources_name_what_a_service_reads(tmp_path: Path) -> None:
    tree = {
        "usr/lib/systemd/system/web.service": SERVICE,
        "usr/lib/systemd/system/web.service.d/10-env.conf": "[Service]\nEnvironmentFile=/etc/x\n",
        # the same drop-in name under /etc masks the vendor's
        "etc/systemd/system/web.service.d/10-env.conf": "[Service]\nEnvironmentFile=/etc/y\n",
        "usr/lib/systemd/system/getty@.service": "[Service]\nExecStart=/sbin/agetty %I\n",
    }
    m = Manifest.read(str(write_tree(tmp_path / "img", tree)), use_cache=False)
    sources = config_sources(m.read_files([p for p in m.entries if is_unit_file(p)]))
    web = sources["web.service"]
    assert web[:2] == (
        "/usr/lib/systemd/system/web.service",
        "/etc/systemd/system/web.service.d/10-env.conf",
    )
    for named in (
        "/etc/web/env", "/etc/web/web.toml", "/etc/web/extra.conf", "/etc/web-extra/",
        "/etc/web-more/sub/", "/etc/y", "/etc/web/", "/etc/default/web",
    ):  # fmt: skip
        assert named in web
    # specifiers, variables and `..` are not guessed at; the programs a start runs count,
    # not those run later, nor argv[0] given apart (`@`)
    assert not any(p.startswith(("%", "$")) or "shadow" in p or p == "/bin/kill" for p in web)
    assert "/usr/bin/web" in web
    assert "/usr/bin/web-check" in web
    assert "/etc/x" not in web
    # where a drop-in or override added later would change it: not read now
    files = m.read_files([p for p in m.entries if is_unit_file(p)])
    later = override_paths(files)["web.service"]
    for where in (
        "/etc/systemd/system/web.service", "/run/systemd/system/web.service.d/",
        "/usr/lib/systemd/system/service.d/", "/lib/systemd/system/web.service.d/",
    ):  # fmt: skip
        assert where in later
        assert where not in web
    assert "/etc/systemd/system/a-.service.d/" in override_paths({
        "/usr/lib/systemd/system/a-b.service": b"[Service]\n"
    })["a-b.service"]  # fmt: skip
    assert "/etc/getty/" in sources["getty@.service"]
    assert unit_file_name("getty@tty1.service") == "getty@.service"
    assert unit_file_name("web.service") == "web.service"


def test_aliases_name_the_unit_the_cgroup_carries(tmp_path: Path) -> None:
    tree = dict(UNITS)
    tree["usr/lib/systemd/system/ssh.service"] = "[Unit]\nAfter=db.service\n"
    tree["usr/lib/systemd/system/sftp.service"] = "[Unit]\nAfter=sshd.service\n"
    root = write_tree(tmp_path / "img", tree)
    (root / "etc/systemd/system/sshd.service").symlink_to("/usr/lib/systemd/system/ssh.service")
    (root / "etc/systemd/system/masked.service").symlink_to("/dev/null")
    m = Manifest.read(str(root), use_cache=False)
    links = {p: e.target for p, e in m.entries.items() if e.target and is_unit_file(p)}
    alias = aliases(links)
    assert alias == {"sshd.service": "ssh.service"}
    files = m.read_files([p for p, e in m.entries.items() if not e.target and is_unit_file(p)])
    deps = dependencies(files, alias)
    assert deps["sftp.service"] == {"ssh.service"}
    assert batches({"sftp.service", "ssh.service"}, deps) == [["ssh.service"], ["sftp.service"]]


def test_hostile_unit_files_are_parsed_without_errors(tmp_path: Path) -> None:
    tree: dict[str, str | bytes] = {
        "etc/systemd/system/quote.service": "[Service]\nExecStart=/bin/x 'unbalanced /etc/a\n",
        "etc/systemd/system/binary.service": b"\x00\xff\n[Service]\nEnvironmentFile=/etc/\xffx\n",
        "etc/systemd/system/huge.service": "[Service]\n" + "ExecStart=/bin/x /etc/y\n" * 100_000,
        "etc/systemd/system/cont.service": "[Service]\nExecStart=/bin/x \\\n",
    }
    m = Manifest.read(str(write_tree(tmp_path / "img", tree)), use_cache=False)
    sources = config_sources(m.read_files([p for p in m.entries if is_unit_file(p)]))
    assert sources["quote.service"][:4] == (
        "/etc/systemd/system/quote.service", "/etc/quote/", "/etc/default/quote",
        "/etc/sysconfig/quote",
    )  # fmt: skip
    assert "/etc/\udcffx" in sources["binary.service"]  # bytes kept, as manifest paths are
    assert sources["huge.service"].count("/etc/y") == 1  # deduplicated
    assert "cont.service" in sources


def test_dropins_of_every_name_apply_the_most_specific_first(tmp_path: Path) -> None:
    """systemd.unit(5): drop-ins of the unit's name, its template, dash prefixes, aliases
    and type; of two with one file name the more specific name's wins, whatever its
    directory."""
    d = "usr/lib/systemd/system"
    tree = {
        f"{d}/a-b@.service": "[Unit]\n",
        f"{d}/a-b@x.service.d/1.conf": "[Unit]\nAfter=one.service\n",
        f"{d}/a-b@.service.d/2.conf": "[Unit]\nAfter=two.service\n",
        f"{d}/a-.service.d/3.conf": "[Unit]\nAfter=three.service\n",
        f"{d}/alias.service.d/4.conf": "[Unit]\nAfter=four.service\n",
        f"{d}/service.d/5.conf": "[Unit]\nAfter=five.service\n",
        "etc/systemd/system/service.d/1.conf": "[Unit]\nAfter=hidden.service\n",
    }
    m = Manifest.read(str(write_tree(tmp_path / "img", tree)), use_cache=False)
    files = m.read_files([p for p in m.entries if is_unit_file(p)])
    deps = dependencies(files, {"alias.service": "a-b@x.service"})
    assert deps["a-b@x.service"] == {
        f"{n}.service" for n in ("one", "two", "three", "four", "five")
    }
    assert deps["a-b@.service"] == {f"{n}.service" for n in ("two", "three", "five", "hidden")}


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('/bin/x "/etc/x\\x2econf"', ["/bin/x", "/etc/x.conf"]),
        ("/bin/x '/etc/a b' \"/etc/c'd\" a\\ b", ["/bin/x", "/etc/a b", "/etc/c'd", "a b"]),
        ('"\\a\\b\\f\\n\\r\\t\\v\\\\\\"\\\'\\s"', ["\a\b\f\n\r\t\v\\\"' "]),
        ('"\\x41\\101\\u00e9\\U0001F600" \\xe9', ["AAé\U0001f600", "\udce9"]),
        ("/bin/x \\q", None),  # unknown escape: systemd rejects the line
        ('/bin/x "\\x00"', None),
        ('/bin/x "open', None),
    ],
)
def test_exec_lines_are_split_and_unescaped_as_systemd_does(
    line: str, words: list[str] | None
) -> None:
    """systemd.service(5) "Command lines": quotes, and C escapes in and out of them."""
    assert split_command(line) == words
