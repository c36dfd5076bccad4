"""The fleet plan on a real Dask cluster (a `dask scheduler` and two `dask worker`
processes on 127.0.0.1, started here): every host's verdict equals single-host `plan`'s,
waves and summary follow, a worker killed mid-run loses no host, an unreachable scheduler
is a clear error, and hostile reports stay their own host's problem."""

from __future__ import annotations

import copy
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

import imgdiff.fleet  # noqa: E402 - after the skip: the fleet extra may be absent
from imgdiff.cli import main  # noqa: E402
from imgdiff.hostreport import MAX_REPORT_BYTES  # noqa: E402
from imgdiff.pipeline import plan_update  # noqa: E402
from imgdiff.report.json import verdict_doc  # noqa: E402

from .procs import fifo, join_cgroup, processes, scratch_dir, unit_cgroup  # noqa: E402
from .pyroot import PYTHON, SERVICE, python_root  # noqa: E402
from .test_runtime import _wait_for_exe  # noqa: E402

DASK = str(Path(sys.executable).with_name("dask"))


class Cluster:
    """A scheduler and workers as separate processes; killed and reaped at the end."""

    def __init__(self, workdir: Path, workers: int) -> None:
        self.file = workdir / "scheduler.json"
        self.logs = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self._start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.file)], "scheduler",
        )  # fmt: skip
        for _ in range(100):
            if self.file.exists() and self.file.stat().st_size:
                break
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        worker = [DASK, "worker", self.address, "--nthreads", "1", "--no-nanny"]
        for n in range(workers):
            argv = [*worker, "--no-dashboard", "--host", "127.0.0.1"]
            self.workers.append(self._start(argv, f"worker{n}"))
        with distributed.Client(self.address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)

    def _start(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield c
    finally:
        c.close()


class World:
    """OLD: a root running a python3.11 service (app unit) and a second one that imports
    nothing that changes (idle unit); NEW changes wsgiref. Reports made from it."""

    def __init__(self, old: Path, new: Path, reports: Path, app: str, idle: str) -> None:
        self.old, self.new, self.reports, self.app, self.idle = old, new, reports, app, idle


IDLE = "import time; print('ready', flush=True); time.sleep(900)"


def _variant(base: dict[str, Any], path: Path, host: str, change: Any = None) -> Path:
    doc = copy.deepcopy(base)
    doc["host"]["hostname"] = host
    if change is not None:
        change(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("fleet")
    with (
        scratch_dir("/srv") as old,
        processes() as procs,
        unit_cgroup() as (app, app_cg),
        unit_cgroup() as (idle, idle_cg),
    ):
        python_root(old)
        new = tmp / "new"
        shutil.copytree(old, new, symlinks=True)
        init = new / "usr/lib/python3.11/wsgiref/__init__.py"
        init.write_text(init.read_text() + "\n# patched\n")
        for code, cg in ((SERVICE, app_cg), (IDLE, idle_cg)):
            proc = procs.start(["chroot", str(old), PYTHON, "-c", code])
            _wait_for_exe(proc.pid, f"{old}{PYTHON}")
            join_cgroup(cg, proc.pid)
        reports = tmp / "reports"
        reports.mkdir()
        first = reports / "h00.json"
        assert main(["report", "--root", str(old), "--against", str(old),
                     "-o", str(first), "-q"]) == 0  # fmt: skip
        base = json.loads(first.read_text())
        base_app = [p for p in base["snapshot"]["processes"] if p["unit"] == app]

        def without_app(doc: dict[str, Any]) -> None:
            procs_ = doc["snapshot"]["processes"]
            procs_[:] = [p for p in procs_ if p["unit"] != app]

        def app_as_pid1(doc: dict[str, Any]) -> None:
            for p in doc["snapshot"]["processes"]:
                if p["unit"] == app:
                    p["pid"] = 1

        def drifted(doc: dict[str, Any]) -> None:
            doc["tree"] |= {"matches": False, "differs": ["/etc/local-hack"], "differs_total": 1}

        def redacted(doc: dict[str, Any]) -> None:
            doc["redacted"] = True
            for p in doc["snapshot"]["processes"]:
                p["cmdline"] = p["cmdline"][:1]

        assert base_app, "the app service is in the report"
        for n in (1, 2, 3):
            _variant(base, reports / f"h0{n}.json", f"app{n}")
        _variant(base, reports / "h04.json", "idle1", without_app)
        _variant(base, reports / "h05.json", "init1", app_as_pid1)
        _variant(base, reports / "h06.json", "drift1", drifted)
        _variant(base, reports / "h07.json", "redact1", redacted)
        yield World(old, new, reports, app, idle)


def _hostile(where: Path, base: Path) -> list[Path]:
    bad = [where / n for n in ("x-notjson.json", "x-types.json", "x-huge.json", "x-relroot.json")]
    bad[0].write_bytes(b"\x00not json at all")
    bad[1].write_text(json.dumps({"schema": "imgdiff.report/1", "host": [], "root": 7}))
    with open(bad[2], "wb") as fh:
        fh.truncate(MAX_REPORT_BYTES + 1)
    # a relative root: read against the planner's working directory, it matched nothing
    _variant(json.loads(base.read_text()), bad[3], "rel1", lambda d: d.update(root="srv/x"))
    return [*bad, where / "x-fifo.json"]  # a FIFO: opened, it waits for a writer forever


def _host_part(doc: dict[str, Any]) -> dict[str, Any]:
    """A fleet host's entry without the keys single-host plan does not have."""
    extra = {"snapshot", "host", "error", "machine_id", "drifted", "behind", "wave"}
    return {k: v for k, v in doc.items() if k not in extra}


def test_every_host_gets_exactly_the_single_host_plan(
    world: World, cluster: Cluster, tmp_path: Path
) -> None:
    bad = _hostile(tmp_path, world.reports / "h00.json")
    good = sorted(world.reports.glob("*.json"))
    with distributed.Client(cluster.address) as client, fifo(bad[-1]):
        fv = imgdiff.fleet.plan(
            str(world.old), str(world.new), [str(world.reports), *map(str, bad)],
            client=client, use_cache=False,
        )  # fmt: skip
    doc = fv.to_json()
    assert doc["schema"] == "imgdiff.fleet/1"
    assert [h["snapshot"] for h in doc["hosts"]] == [*map(str, good), *map(str, bad)]
    for path, host in zip(good, doc["hosts"], strict=False):
        single = plan_update(
            str(world.old), str(world.new), root=str(world.old), snapshot=str(path),
            use_cache=False,
        ).verdict  # fmt: skip
        expected = verdict_doc(single)
        del expected["schema"]
        assert _host_part(host) == expected, path.name
        assert host["error"] is None
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host["app1"]["verdict"] == "restart"
    assert [s["unit"] for s in by_host["app1"]["steps"]] == [world.app]
    assert by_host["idle1"]["verdict"] == "no-action"
    assert by_host["init1"]["verdict"] == "reboot"
    assert by_host["drift1"]["verdict"] == "reimage"
    assert by_host["drift1"]["drifted"] is True
    assert by_host["redact1"]["verdict"] == "restart"
    assert "command line redacted" in by_host["redact1"]["uninspected"][0]
    # hostile reports: their own host's error, one line naming the file
    errors = {Path(e["snapshot"]).name: e["error"] for e in doc["errors"]}
    assert errors == {
        "x-notjson.json": f"{bad[0]}: not JSON: Expecting value: line 1 column 1 (char 0)",
        "x-types.json": f"{bad[1]}: malformed host report: report key 'host' has a list",
        "x-huge.json": f"{bad[2]}: too large for a report: {MAX_REPORT_BYTES + 1} bytes "
        f"(at most {MAX_REPORT_BYTES})",
        "x-relroot.json": f"{bad[3]}: malformed host report: report key 'root' 'srv/x' is not "
        "an absolute, normalised path",
        "x-fifo.json": f"{bad[4]}: not readable: not a regular file",
    }
    assert all(h["verdict"] is None and h["wave"] is None for h in doc["hosts"][-5:])
    # summary
    s = doc["summary"]
    assert s["hosts"] == 13
    assert s["verdicts"] == {"no-action": 1, "restart": 5, "reboot": 1, "reimage": 1, "error": 5}
    assert s["units"] == {world.app: 4}  # h00..h03 restart it; the redacted host has no step
    assert s["drifted"] == [str(world.reports / "h06.json")]
    assert s["top_reasons"][0]["code"] == "saved-snapshot"
    assert s["top_reasons"][0]["hosts"] == 8


def test_a_plain_snapshot_of_this_boot_has_this_root_checked_as_plan_does(
    world: World, cluster: Cluster, tmp_path: Path
) -> None:
    """`plan --root / --snapshot` walks / for a snapshot of this very boot (docs/fleet.md):
    the fleet did not, and said its root could not be checked ("another machine or
    boot"). Of another boot, neither checks."""
    here = tmp_path / "here.json"
    assert main(["snapshot", "-o", str(here)]) == 0
    other = tmp_path / "other.json"
    doc = json.loads(here.read_text())
    doc["boot_id"] = "00000000-0000-0000-0000-000000000000"
    other.write_text(json.dumps(doc))
    with distributed.Client(cluster.address) as client:
        fv = imgdiff.fleet.plan(
            str(world.old), str(world.new), [str(here), str(other)], client=client,
            use_cache=False,
        )  # fmt: skip
    hosts = fv.to_json()["hosts"]
    for path, host in zip((here, other), hosts, strict=True):
        single = plan_update(str(world.old), str(world.new), snapshot=str(path), use_cache=False)
        expected = verdict_doc(single.verdict)
        del expected["schema"]
        # / is live: how many of its paths differ changes from one walk to the next
        for d in (expected, host):
            d["reasons"] = [
                str(r)
                for r, c in zip(d.pop("reasons"), d["reason_codes"], strict=True)
                if c != "drift"
            ]
        assert _host_part(host) == expected, path.name
    # / is not the little python root OLD is: it drifted; the other boot is not checked
    assert hosts[0]["verdict"] == "reimage"
    assert "drift-hint" in hosts[0]["reason_codes"]
    assert "drift-not-checked" not in hosts[0]["reason_codes"]
    assert hosts[1]["reason_codes"][-1] == "drift-not-checked"
    assert "drift" in fv.timings


def test_a_plain_snapshot_whose_root_drifted_is_drifted_and_behind_in_its_host_entry(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The drift the verdict weighed for a plain snapshot of this boot (its / walked here)
    was left out of the host entry: reimage for drift and a missed update, yet "drifted"
    false, "behind" empty and neither in the summary (only a report's tree state set them)."""
    status = Path("/var/lib/dpkg/status")
    if not status.is_file():
        pytest.skip("this host has no dpkg database")
    stanza = next(s for s in status.read_text().split("\n\n") if s.startswith("Package: bash\n"))
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "var/lib/dpkg").mkdir(parents=True)
    (old / "etc").mkdir()
    # OLD has a later bash than this host: the host missed an update
    newer = re.sub(r"(?m)^Version: .*$", "Version: 99:1.0-1", stanza)
    (old / "var/lib/dpkg/status").write_text(newer + "\n\n")
    (old / "etc/app.conf").write_text("a = 1\n")
    shutil.copytree(old, new)
    (new / "etc/app.conf").write_text("a = 2\n")
    here = tmp_path / "here.json"
    assert main(["snapshot", "-o", str(here), "-q"]) == 0
    with distributed.Client(cluster.address) as client:
        fv = imgdiff.fleet.plan(str(old), str(new), [str(here)], client=client, use_cache=False)
    doc = fv.to_json()
    host = doc["hosts"][0]
    assert host["verdict"] == "reimage"
    assert {"drift", "package-drift"} <= set(host["reason_codes"])
    assert host["drifted"] is True
    assert len(host["behind"]) == 1
    assert host["behind"][0].startswith("dpkg:bash:")
    assert host["behind"][0].endswith(" 99:1.0-1 in OLD (live is older: a missed update)")
    assert doc["summary"]["drifted"] == doc["summary"]["missed_update"] == [str(here)]


def test_waves_cover_every_class_with_canaries_then_respect_max_unavailable(
    world: World, cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def waves(policy: str) -> Any:
        (tmp_path / "policy.toml").write_text(policy)
        argv = ["fleet", "plan", str(world.old), str(world.new), str(world.reports),
                "--scheduler", cluster.address, "--policy", str(tmp_path / "policy.toml"),
                "--json", "--no-cache", "-o", str(tmp_path / "fleet.json")]  # fmt: skip
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert out == json.loads((tmp_path / "fleet.json").read_text())
        return [(w["kind"], w["hosts"]) for w in out["waves"]], out["reimage"]

    tight, reimage = waves('max_unavailable = "10%"\n')
    # one canary per (verdict, units) class: restart of the app, no-action, reboot, and
    # restart with no unit (the redacted host's uninspected process); the reboot takes
    # the app down too, so the app's restart canary waits for the next wave
    assert tight[:2] == [
        ("canary", ["idle1", "init1", "redact1"]),
        ("canary", [socket.gethostname()]),
    ]
    assert tight[2:] == [
        ("restart", ["app1"]),
        ("restart", ["app2"]),
        ("restart", ["app3"]),
    ]  # 10% of 7 hosts running the app rounds down: one host at a time
    assert reimage == [str(world.reports / "h06.json")]
    loose, _ = waves('max_unavailable = 0.5\ncanaries = 1\nunknown = "strict"\n')
    assert loose[1:] == [("restart", ["app1", "app2", "app3"])]  # 3 of 7 at once


def test_a_worker_killed_mid_run_loses_and_duplicates_no_host(world: World, tmp_path: Path) -> None:
    base = json.loads((world.reports / "h00.json").read_text())
    app = [p for p in base["snapshot"]["processes"] if p["unit"] == world.app]
    # a heavier report (many processes) so the run lasts long enough to be interrupted
    base["snapshot"]["processes"] += [dict(p, pid=100_000 + i) for i in range(60) for p in app]
    many = tmp_path / "many"
    many.mkdir()
    for n in range(240):
        _variant(base, many / f"h{n:03}.json", f"host{n:03}")
    c = Cluster(tmp_path, workers=2)
    killed_at: list[int] = []
    try:
        victim = c.workers[0]

        def progress(done: int, total: int) -> None:
            if done and not killed_at:
                killed_at.append(done)
                victim.send_signal(signal.SIGKILL)

        with distributed.Client(c.address) as client:
            fv = imgdiff.fleet.plan(
                str(world.old), str(world.new), [str(many)], client=client,
                use_cache=False, progress=progress,
            )  # fmt: skip
        assert victim.wait(timeout=10) == -signal.SIGKILL
    finally:
        c.close()
    assert killed_at
    assert killed_at[0] < 240  # the worker died with hosts still to plan
    assert [h.snapshot for h in fv.hosts] == [str(many / f"h{n:03}.json") for n in range(240)]
    assert {h.verdict.verdict for h in fv.hosts if h.verdict} == {"restart"}
    assert all(h.error is None for h in fv.hosts)


def test_an_unreachable_scheduler_is_bad_input_not_a_local_run(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    code = main(["fleet", "plan", str(world.old), str(world.new), str(world.reports),
                 "--scheduler", address])  # fmt: skip
    assert code == 3
    assert time.monotonic() - started < 5
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"imgdiff: {address}: cannot reach the Dask scheduler: Connection refused"


def test_without_a_scheduler_it_runs_on_a_local_cluster_here(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded default: a local cluster started and stopped by the command."""
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["fleet", "plan", str(world.old), str(world.new), str(world.reports),
                 "--no-cache"]) == 0  # fmt: skip
    # its worker processes are gone (multiprocessing's resource tracker may stay)
    assert not [c for c in _children() if "spawn_main" in " ".join(c.cmdline())]
    out = capsys.readouterr().out
    assert out.startswith("8 hosts: 1 no-action, 5 restart, 1 reboot, 1 reimage\n")
    assert "canary" in out
    assert "reimage  drift1" in out.replace("   ", "  ")


def _children() -> list[Any]:
    import psutil

    children: list[Any] = psutil.Process().children(recursive=True)
    return children


def test_a_well_formed_but_odd_report_is_unknown_not_a_crash(
    world: World, cluster: Cluster, tmp_path: Path
) -> None:
    """A program whose arguments cannot name a file (a NUL byte) or whose path is not
    absolute: its evidence is not computed, the process is uninspected, and the host
    still has its verdict beside a normal one."""
    base = json.loads((world.reports / "h00.json").read_text())

    def odd(doc: dict[str, Any]) -> None:
        for p in doc["snapshot"]["processes"]:
            if p["unit"] == world.app:
                p["cmdline"] = [PYTHON, "/app\x00.py"]
            elif p["exe"]:
                p["exe"] = "relative/python3.11"

    weird = _variant(base, tmp_path / "odd.json", "odd1", odd)
    with distributed.Client(cluster.address) as client:
        fv = imgdiff.fleet.plan(
            str(world.old), str(world.new), [str(weird), str(world.reports / "h01.json")],
            client=client, use_cache=False,
        )  # fmt: skip
    odd_host, normal = fv.hosts
    assert odd_host.error is None
    assert odd_host.verdict is not None
    assert odd_host.verdict.verdict == "restart"  # strict: an unknown process may be hit
    relative = [g for g in odd_host.verdict.uninspected if "relative/" in g]
    (gap,) = [g for g in odd_host.verdict.uninspected if g not in relative]
    assert "evidence not computed from OLD's files" in gap
    assert "not found in the root" in gap  # the NUL ends the path: /app is not in OLD
    # a relative exe would match no image path: not judged, rather than judged clean
    assert relative
    assert all("its exe 'relative/python3.11' is not an absolute path" in g for g in relative)
    assert normal.verdict is not None
    assert [s.unit for s in normal.verdict.steps] == [world.app]


def test_a_library_reached_through_usr_merge_links_is_judged_as_plan_judges_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The fleet joins what a closure names with the delta through OLD's and NEW's
    symlinks, as plan does (/lib -> usr/lib, libc.so.6 repointed by NEW)."""
    from .test_plan import repoint_libc, usr_merged

    with usr_merged(tmp_path, lambda old, unit: None, ["/bin/sleep", "600"], repoint_libc) as box:
        box.plan()  # makes NEW
        snap = tmp_path / "r.json"
        assert main(["report", "--root", str(box.old), "-o", str(snap)]) == 0
        single = plan_update(
            str(box.old), str(box.new), root=str(box.old), snapshot=str(snap), use_cache=False
        ).verdict
        with distributed.Client(cluster.address) as client:
            fv = imgdiff.fleet.plan(
                str(box.old), str(box.new), [str(snap)], client=client, use_cache=False
            )
    (host,) = fv.to_json()["hosts"]
    expected = verdict_doc(single)
    del expected["schema"]
    assert _host_part(host) == expected
    assert host["verdict"] == "restart"
