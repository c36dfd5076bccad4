"""Rollout waves and the summary from hand-made verdicts: pure, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgdiff.fleet import load_policy
from imgdiff.fleet.host import HostVerdict
from imgdiff.fleet.waves import RolloutPolicy, summary, waves
from imgdiff.results import Reason, ReasonCode, Step, Verdict


def _host(
    name: str, kind: str, restarts: tuple[str, ...] = (), runs: tuple[str, ...] = ()
) -> HostVerdict:
    steps = tuple(Step(u, (10 + i,), ()) for i, u in enumerate(restarts))
    verdict = Verdict(kind, (Reason(f"{kind} because", ReasonCode.OTHER),), steps)
    return HostVerdict(f"{name}.json", name, verdict, running=tuple(sorted({*runs, *restarts})))


def _names(hosts: list[HostVerdict], rollout: RolloutPolicy) -> list[tuple[str, list[str]]]:
    return [(w.kind, [hosts[i].host for i in w.hosts]) for w in waves(hosts, rollout)]


def test_canaries_then_batches_bounded_per_unit() -> None:
    # 10 hosts run web; 8 restart it, 2 restart web and db (db runs on 4 hosts)
    hosts = [_host(f"w{n}", "restart", ("web.service",)) for n in range(8)]
    hosts += [_host(f"d{n}", "restart", ("db.service", "web.service")) for n in range(2)]
    hosts += [_host(f"x{n}", "no-action", runs=("db.service",)) for n in range(2)]
    plan = _names(hosts, RolloutPolicy(max_unavailable=0.2))
    # one canary per class: (restart, web), (restart, db+web), (no-action, none)
    assert plan[0] == ("canary", ["w0", "d0", "x0"])
    assert plan[1] == ("no-action", ["x1"])
    # 20% of 10 web hosts: 2 at a time; 20% of 4 db hosts rounds down to 0: at least 1
    restart = [names for kind, names in plan[2:]]
    assert restart == [["w1", "d1"], ["w2", "w3"], ["w4", "w5"], ["w6", "w7"]]


def test_canaries_are_under_the_same_bound_as_later_waves() -> None:
    """Three hosts run each of web and tls: one at a time may restart either. One canary
    per class put A, B and C together: web and tls each restarted on two hosts at once."""
    hosts = [
        _host("A", "restart", ("tls.service", "web.service")),
        _host("B", "restart", ("web.service",)),
        _host("C", "restart", ("tls.service",)),
        _host("D", "restart", ("tls.service", "web.service")),
    ]
    assert _names(hosts, RolloutPolicy()) == [
        ("canary", ["A"]),
        ("canary", ["B", "C"]),
        ("restart", ["D"]),
    ]
    # a reboot takes down every unit its host runs, and is one of the hosts that may
    # reboot at once (a tenth of 12: one); a host that needs nothing takes nothing down
    hosts = [_host("r0", "reboot", runs=("web.service",))]
    hosts += [_host("r1", "reboot", runs=("db.service",))]
    hosts += [_host(f"w{n}", "restart", ("web.service",)) for n in range(4)]
    hosts += [_host(f"i{n}", "no-action", runs=("db.service",)) for n in range(6)]
    assert _names(hosts, RolloutPolicy(canaries=2)) == [
        ("canary", ["r0", "i0", "i1"]),
        ("canary", ["r1", "w0"]),
        ("canary", ["w1"]),
        ("no-action", ["i2", "i3", "i4", "i5"]),
        ("restart", ["w2"]),
        ("restart", ["w3"]),
    ]


def test_reboots_in_waves_of_their_own_and_reimage_apart() -> None:
    hosts = [_host(f"r{n}", "reboot", runs=(f"u{n % 2}.service",)) for n in range(6)]
    hosts += [_host("gone", "reimage", ("u0.service",))]
    hosts += [HostVerdict("bad.json", "", None, "bad.json: not JSON")]
    plan = _names(hosts, RolloutPolicy(max_unavailable=0.5, canaries=2))
    # u0 runs on 4 hosts (the reimage one too): 2 at once; u1 on 3: 1 at once; and at
    # most 50% of the 7 planned hosts (3) per wave
    assert plan == [
        ("canary", ["r0", "r1"]),
        ("reboot", ["r2", "r3", "r4"]),
        ("reboot", ["r5"]),
    ]
    s = summary(hosts)
    assert s["verdicts"] == {"no-action": 0, "restart": 0, "reboot": 6, "reimage": 1, "error": 1}
    assert s["units"] == {}  # a reimage's superseded steps restart nothing
    assert s["top_reasons"][0] == {"code": "other", "hosts": 7, "example": "reboot because"}


def test_policy_file_holds_both_kinds_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('max_unavailable = "25%"\ncanaries = 2\nunknown = "lenient"\n')
    policy, rollout = load_policy(path)
    assert (policy.unknown, rollout.max_unavailable, rollout.canaries) == ("lenient", 0.25, 2)
    path.write_text("max_unavailable = 0\n")
    with pytest.raises(ValueError, match="max_unavailable must be a number in"):
        load_policy(path)
    path.write_text("surge = 3\n")
    with pytest.raises(ValueError, match="unknown policy keys: surge"):
        load_policy(path)


def test_one_policy_file_serves_plan_and_fleet(tmp_path: Path) -> None:
    """The fleet's keys sit beside the plan's in one file (the default policy too): a
    single-host plan reads it and leaves them alone; unknown keys are still refused."""
    import attrs

    from imgdiff import BadInput
    from imgdiff.plan import ROLLOUT_KEYS, Policy

    assert {f.name for f in attrs.fields(RolloutPolicy)} == ROLLOUT_KEYS
    both = tmp_path / "policy.toml"
    both.write_text('reimage_share = 0.3\nmax_unavailable = "20%"\ncanaries = 2\n')
    assert Policy.load(both) == Policy(reimage_share=0.3)
    policy, rollout = load_policy(both)
    assert (policy, rollout.max_unavailable, rollout.canaries) == (
        Policy(reimage_share=0.3),
        0.2,
        2,
    )
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("max_unavailabel = 0.1\n")
    with pytest.raises(BadInput, match="unknown policy keys: max_unavailabel"):
        Policy.load(wrong)
