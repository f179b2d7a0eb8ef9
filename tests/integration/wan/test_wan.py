"""WAN emulation on real labs (labs named wan-*): fidelity within the issue's tolerances, packets
never reordered unless asked, a dead emulator cuts the WAN and is reported, every preset applies
on every shipped topology, and run records the profile, path and fidelity.

Measured between the two gateways (the nearest nodes on either side of the WAN router)."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.backends.base import Lab
from lab.model.names import LabPaths
from lab.model.topology import Wan, WanProfile
from lab.model.wan import PRESETS, parse_option
from lab.runtime import lifecycle
from lab.topology import shipped
from lab.wan import apply, measure

from ..conftest import TOPOLOGIES, teleradlab

LAB = "wan-fid"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    teleradlab("down", LAB, check=False)
    teleradlab("up", str(TOPOLOGIES / "ipv4.yaml"), "--name", LAB, "--no-services")
    try:
        yield lifecycle.attach(LAB)
    finally:
        teleradlab("down", LAB, check=False)


def _set(lab: Lab, wan: Wan | str) -> apply.WanState:
    wanted = parse_option(wan) if isinstance(wan, str) else wan
    return apply.apply(lab, wanted)


def _ping(lab: Lab, count: int, interval: float = 0.05) -> measure.Ping:
    src, _, addr = measure.endpoints(lab.topology)
    return measure.ping(lab, src, addr, count, interval)


@pytest.mark.parametrize("delay", [10, 50, 200])
def test_rtt_is_twice_the_delay(lab: Lab, delay: int) -> None:
    state = _set(lab, f"delay={delay}ms")
    assert state.path in ("netem", "userspace")
    p = _ping(lab, 20)
    assert p.received == 20
    assert abs(p.rtt_avg_ms - 2 * delay) <= max(1.0, 0.1 * 2 * delay), p


@pytest.mark.parametrize("rate", [10, 50])
def test_rate_within_ten_percent(lab: Lab, rate: int) -> None:
    _set(lab, f"rate={rate}mbit")
    src, dst, addr = measure.endpoints(lab.topology)
    got = measure.iperf_rate(lab, src, dst, addr, 4, 1, udp_mbit=1.2 * rate)
    assert abs(got - rate) <= 0.1 * rate, got


def test_loss_over_a_thousand_packets(lab: Lab) -> None:
    """10% loss on the way out only (the replies come back unimpaired)."""
    _set(lab, Wan("loss", WanProfile(loss_pct=10), WanProfile()))
    p = _ping(lab, 1500, 0.002)
    assert p.sent == 1500
    assert 8.0 <= p.loss_pct <= 12.0, p


def _udp_out_of_order(lab: Lab) -> tuple[int, int]:
    """(datagrams received, out of order) at the iperf3 server for 2 s of 5 Mbit/s UDP."""
    src, dst, addr = measure.endpoints(lab.topology)
    server = lab.spawn(dst, ["iperf3", "-s", "-1", "-J", "-p", "5298"])
    try:
        time.sleep(0.3)
        res = lab.exec(src, ["iperf3", "-c", addr, "-p", "5298", "-u", "-b",
                                               "5M", "-l", "1000", "-t", "2", "-J",
                                               "--get-server-output"], timeout=30)
    finally:
        server.wait(timeout=10)
    doc: dict[str, Any] = json.loads(res.stdout)
    stream = doc["server_output_json"]["end"]["streams"][0]["udp"]
    return int(stream["packets"]), int(stream["out_of_order"])


def test_jitter_never_reorders_unless_asked(lab: Lab) -> None:
    _set(lab, "delay=10ms,jitter=5ms")
    received, out_of_order = _udp_out_of_order(lab)
    assert received > 1000 and out_of_order == 0
    _set(lab, "delay=10ms,jitter=5ms,reorder=25%")
    received, out_of_order = _udp_out_of_order(lab)
    assert out_of_order > 0


def test_duplicate_and_corrupt(lab: Lab) -> None:
    src, _, addr = measure.endpoints(lab.topology)
    _set(lab, Wan("dup", WanProfile(duplicate_pct=100), WanProfile()))
    res = lab.exec(src, ["ping", "-n", "-c", "5", "-i", "0.05", addr])
    # ping stops at the fifth reply, so the fifth's duplicate may come too late to be counted
    assert res.stdout.count("DUP!") >= 4
    # every packet gets a flipped bit: IP header or ICMP checksums then refuse all of them
    _set(lab, Wan("corrupt", WanProfile(corrupt_pct=100), WanProfile()))
    assert _ping(lab, 20).received == 0


def test_dead_emulator_cuts_the_wan_and_is_reported(lab: Lab) -> None:
    state = _set(lab, "delay=5ms")
    if state.path != "userspace":
        pytest.skip("the kernel path has no emulator")
    os.kill(state.pid, signal.SIGKILL)
    res = teleradlab("wan", "show", "--lab", LAB, check=False)
    assert res.returncode == 1 and "has stopped" in res.stderr
    assert _ping(lab, 3).received == 0  # cut, never silently unimpaired
    teleradlab("wan", "set", "--lab", LAB, "delay=5ms", "--no-measure")
    p = _ping(lab, 5)
    assert p.received == 5 and p.rtt_min_ms >= 10.0


def test_reset_restores_the_unimpaired_wan(lab: Lab) -> None:
    _set(lab, "delay=50ms")
    teleradlab("wan", "reset", "--lab", LAB)
    assert apply.read_state(LabPaths(LAB)).path == ""
    assert _ping(lab, 5).rtt_avg_ms < 5.0


@pytest.mark.parametrize("topology", shipped())
def test_every_preset_applies_on_every_shipped_topology(topology: str) -> None:
    name = f"wan-p-{topology}"[:24]
    teleradlab("down", name, check=False)
    teleradlab("up", str(TOPOLOGIES / f"{topology}.yaml"), "--name", name, "--no-services",
               "--no-check")
    try:
        lab = lifecycle.attach(name)
        for preset, (_, profile) in PRESETS.items():
            teleradlab("wan", "set", "--lab", name, preset, "--no-measure")
            state = apply.read_state(LabPaths(name))
            assert state.wan.name == preset and state.path
            p = _ping(lab, 3, 0.2)
            assert p.received >= 1, (topology, preset)
            assert p.rtt_min_ms >= 2 * (profile.delay_ms - profile.jitter_ms), (topology, preset)
    finally:
        teleradlab("down", name, check=False)


def test_run_records_profile_path_and_fidelity(tmp_path: Path) -> None:
    topo = tmp_path / "wan-run.yaml"
    topo.write_text((TOPOLOGIES / "ipv4.yaml").read_text())
    out = tmp_path / "out"
    teleradlab("down", "wan-run", check=False)
    res = teleradlab("run", str(topo), "--wan", "dsl-20m-30ms", "--objects", "3",
                     "--out", str(out), timeout=300)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert rows and all(r["ok"] == "True" for r in rows), res.stdout
    state_path = json.loads((out / "run.json").read_text())["wan"]["path"]
    assert {(r["wan_profile"], r["wan_path"]) for r in rows} == {("dsl-20m-30ms", state_path)}
    fidelity = json.loads((out / "run.json").read_text())["wan"]["fidelity"]
    assert abs(fidelity["rtt_measured_ms"] - 60) <= 6
    assert abs(fidelity["rate_measured_mbit"] - 20) <= 2
    assert "wan-run" not in lifecycle.running()


def test_a_dead_emulator_fails_the_run(tmp_path: Path) -> None:
    """run on a lab whose emulator has died: refused with the reason, recorded in run.json."""
    name = "wan-crash"
    teleradlab("down", name, check=False)
    teleradlab("up", str(TOPOLOGIES / "ipv4.yaml"), "--name", name, "--wan", "delay=5ms")
    try:
        os.kill(apply.read_state(LabPaths(name)).pid, signal.SIGKILL)
        out = tmp_path / "out"
        res = teleradlab("run", "--lab", name, "--objects", "1", "--out", str(out), check=False)
        assert res.returncode == 1 and "WAN emulator" in res.stderr
        doc = json.loads((out / "run.json").read_text())
        assert "has stopped" in doc["error"] and not doc["all_ok"]
        assert not (out / "results.csv").read_text().strip().splitlines()[1:]  # no rows
    finally:
        teleradlab("down", name, check=False)


def test_jumbo_frames_cross_the_emulator(tmp_path: Path) -> None:
    """The emulator's buffers follow the WAN's MTU: 8000-byte pings pass unfragmented."""
    topo = tmp_path / "wan-jumbo.yaml"
    text = (TOPOLOGIES / "ipv4.yaml").read_text().replace("  router: wan\n",
                                                         "  router: wan\n  mtu: 9000\n")
    topo.write_text(text)
    teleradlab("down", "wan-jumbo", check=False)
    teleradlab("up", str(topo), "--no-services", "--wan", "delay=1ms")
    try:
        lab = lifecycle.attach("wan-jumbo")
        src, _, addr = measure.endpoints(lab.topology)
        res = lab.exec(src, ["ping", "-n", "-c", "3", "-i", "0.1", "-s", "8000",
                                               "-M", "do", addr], check=False)
        assert "3 received" in res.stdout, res.stdout + res.stderr
        assert apply.counters(LabPaths("wan-jumbo"))["directions"][0]["oversize"] == 0
    finally:
        teleradlab("down", "wan-jumbo", check=False)


def test_kernel_path_requests_are_accepted_by_this_kernel(lab: Lab) -> None:
    """sch_netem is missing here, but tbf and the slot netem takes below it are real: the tbf
    request, and a pfifo where netem would go (same handle and parent), are accepted as built;
    and netem's absence is detected, not assumed."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl import TC_H_ROOT

    from lab.wan import netem

    apply.reset(lab)
    ns = lab.backend.netns_path(lab.name, lab.topology.wan_router)
    tbf, below = netem.requests(WanProfile(delay_ms=5, rate_mbit=10))
    with IPRoute(netns=str(ns)) as ipr:
        index = ipr.link_lookup(ifname="gw-b")[0]
        netem.send(ipr, tbf, index)
        netem.send(ipr, netem.QdiscRequest("pfifo", below.handle, below.parent, {"limit": 100}),
                   index)
        found = {(q.get_attr("TCA_KIND"), q["handle"], q["parent"])
                 for q in ipr.get_qdiscs(index=index)}
    netem.reset(ns, ["gw-b"])
    assert ("tbf", netem.TBF_HANDLE, TC_H_ROOT) in found
    assert ("pfifo", netem.NETEM_HANDLE, netem.TBF_CLASS) in found
    # the same question asked through tc(8), on the router's loopback
    tc = ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    has_netem = lab.exec(lab.topology.wan_router, tc, check=False).ok
    lab.exec(lab.topology.wan_router, ["tc", "qdisc", "del", "dev", "lo",
                                                          "root"], check=False)
    assert netem.available(ns, "gw-a")[0] is has_netem


def test_a_refused_change_leaves_the_wan_as_it_was(lab: Lab) -> None:
    """Asking for netem where the kernel has none is refused before anything changes."""
    before = _set(lab, "delay=5ms")
    if before.path != "userspace":
        pytest.skip("this kernel has netem")
    res = teleradlab("wan", "set", "--lab", LAB, "--path", "netem", "delay=9ms", check=False)
    assert res.returncode == 1 and "kernel path was asked for" in res.stderr
    after = apply.check(lab)
    assert after == before
    p = _ping(lab, 5)
    assert p.received == 5 and 10.0 <= p.rtt_min_ms < 12.0


def test_up_removes_the_lab_when_the_wan_cannot_be_impaired(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An emulator that exits at once (here /bin/false in its place) fails up, which removes
    everything it made."""
    from lab.errors import LabError
    from lab.wan import userspace

    from ..conftest import netns_names

    monkeypatch.setattr(userspace, "binary", lambda cache=None: Path("/bin/false"))
    monkeypatch.setattr(apply, "choose_path", lambda *a: ("userspace", "test"))
    teleradlab("down", "wan-rb", check=False)
    with pytest.raises(LabError, match="did not start"):
        lifecycle.up(TOPOLOGIES / "ipv4.yaml", "wan-rb", start_services=False,
                     wan=parse_option("delay=5ms"))
    assert "wan-rb" not in lifecycle.running()
    assert netns_names("tl-wan-rb.") == []
