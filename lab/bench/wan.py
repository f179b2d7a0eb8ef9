"""``scripts/bench --only wan``: WAN fidelity on the path in use, and the userspace emulator's
highest throughput at zero delay beside the unimpaired veth path, measured side by side in one
IPv4 lab (``wan-bench``) between its two gateways.

Figures: RTT at 10, 50 and 200 ms one-way delay (tolerance max(1 ms, 10%) of 2 x delay), rate at
10 and 50 Mbit/s (UDP at the iperf3 server; tolerance 10%, payload only so about 3.5% below),
10% loss one way over 2000 pings (8-12%), every preset's RTT and rate, and TCP throughput through
the emulator with no impairment but its own (target: at least 500 Mbit/s).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from lab.backends.base import Lab
from lab.bench.store import cli_lab
from lab.model.topology import Wan, WanProfile
from lab.model.wan import PRESETS, parse_option
from lab.wan import apply, measure

LAB = "wan-bench"
CAPACITY_TARGET_MBIT = 500.0


def _lab() -> AbstractContextManager[Lab]:
    return cli_lab("ipv4", LAB, "--no-services")


def _set(lab: Lab, wan: Wan) -> str:
    return apply.apply(lab, wan).path


def _rtt_rows(lab: Lab) -> list[str]:
    rows = []
    src, _, addr = measure.endpoints(lab.topology)
    for delay in (10, 50, 200):
        _set(lab, parse_option(f"delay={delay}ms"))
        p = measure.ping(lab, src, addr, 20, 0.05)
        want = 2 * delay
        ok = abs(p.rtt_avg_ms - want) <= max(1.0, 0.1 * want)
        rows.append(f"  RTT, delay {delay:>3} ms: {p.rtt_avg_ms:8.2f} ms (min {p.rtt_min_ms:.2f}) "
                    f"vs {want} ms configured, error {p.rtt_avg_ms - want:+.2f} ms "
                    f"{'ok' if ok else 'OUT OF TOLERANCE'}")
    return rows


def _rate_rows(lab: Lab) -> list[str]:
    rows = []
    src, dst, addr = measure.endpoints(lab.topology)
    for rate in (10, 50):
        _set(lab, parse_option(f"rate={rate}mbit"))
        got = measure.iperf_rate(lab, src, dst, addr, 4, 1, udp_mbit=1.2 * rate)
        ok = abs(got - rate) <= 0.1 * rate
        rows.append(f"  rate {rate:>3} Mbit/s: {got:8.2f} Mbit/s received (UDP payload), ratio "
                    f"{got / rate:.3f} {'ok' if ok else 'OUT OF TOLERANCE'}")
    apply.apply(lab, Wan("loss", WanProfile(loss_pct=10), WanProfile()))
    p = measure.ping(lab, src, addr, 2000, 0.002)
    ok = 8 <= p.loss_pct <= 12
    rows.append(f"  loss 10% one way: {p.loss_pct:.2f}% of {p.sent} pings "
                f"{'ok' if ok else 'OUT OF TOLERANCE'}")
    return rows


def _preset_rows(lab: Lab) -> list[str]:
    rows = []
    for name in PRESETS:
        wan = parse_option(name)
        _set(lab, wan)
        f = measure.fidelity(lab, wan)
        rows.append(f"  {name:<28} RTT {f['rtt_measured_ms']:8.2f} ms / "
                    f"{f['rtt_configured_ms']:g}; rate {f['rate_measured_mbit']:8.2f} / "
                    f"{f['rate_configured_mbit']:g} Mbit/s; ping loss {f['ping_loss_pct']:g}%")
    return rows


def _capacity_rows(lab: Lab) -> list[str]:
    """Host to host (the DICOM path: the hosts' TSO and checksum offloads stay on)."""
    src, dst = lab.topology.sites[0].hosts[0], lab.topology.sites[1].hosts[0]
    addr = str(lab.topology.node(dst).addresses()[0].ip)
    apply.reset(lab)
    veth = measure.iperf_rate(lab, src, dst, addr, 4, 1)
    path = _set(lab, Wan("capacity", WanProfile(limit=4000), WanProfile(limit=4000)))
    emu = measure.iperf_rate(lab, src, dst, addr, 4, 1)
    return [f"  zero delay, TCP {src} -> {dst}: {path} path {emu:.0f} Mbit/s, "
            f"unimpaired veth {veth:.0f} Mbit/s "
            f"(ratio {emu / veth:.3f}); target {CAPACITY_TARGET_MBIT:g} Mbit/s: "
            f"{'met' if emu >= CAPACITY_TARGET_MBIT else 'NOT MET'} "
            f"({emu * 1e6 / 8 / 1500:.0f} packets/s of 1500 bytes)"]


def print_wan(progress: Callable[[str], None]) -> None:
    with _lab() as lab:
        progress("WAN fidelity: RTT")
        rows = _rtt_rows(lab)
        progress("WAN fidelity: rate and loss")
        rows += _rate_rows(lab)
        progress("WAN fidelity: presets")
        rows += _preset_rows(lab)
        progress("WAN emulator capacity")
        rows += _capacity_rows(lab)
        path = apply.read_state(lab.paths).path
    print(f"wan ({path} path, between the gateways of lab {LAB}):")
    for row in rows:
        print(row)
