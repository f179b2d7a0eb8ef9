"""Fidelity: what the WAN really does, measured between the two gateways (the nearest nodes on
either side of it) next to what was configured — round-trip time with ping, and the bottleneck
rate from the first site to the second with iperf3, as its server (the receiver) counted it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from lab.backends.base import Lab
from lab.errors import LabError
from lab.host.processes import stop
from lab.model.topology import Family, Topology, Wan

IPERF_PORT = 5299
#: iperf3's UDP sender (one thread, 1400-byte datagrams) managed only ~200 Mbit/s on the 2-core VM.
UDP_MAX_MBIT = 200.0
_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_LOSS = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass(frozen=True)
class Ping:
    sent: int
    received: int
    rtt_min_ms: float
    rtt_avg_ms: float
    rtt_max_ms: float

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 0.0


def endpoints(topology: Topology) -> tuple[str, str, str]:
    """(first gateway, second gateway, the second gateway's WAN address) in the WAN's family."""
    first, second = topology.sites[:2]
    iface = topology.node(second.gateway).interface(topology.wan_router)
    families = {Family.of(a) for a in iface.addresses}
    family = Family.IPV4 if Family.IPV4 in families else Family.IPV6
    addr = iface.address(family)
    if addr is None:
        raise LabError(f"{second.gateway} has no WAN address")
    return first.gateway, second.gateway, str(addr.ip)


def ping(lab: Lab, src: str, dst: str, count: int, interval: float,
         timeout: float = 60.0) -> Ping:
    """``ping -c COUNT -i INTERVAL`` from node ``src``; interval below 0.2 s needs root."""
    wait = max(2, math.ceil(timeout / 4))
    res = lab.exec(src, ["ping", "-n", "-q", "-c", str(count), "-i", f"{interval:g}",
                                  "-W", str(wait), dst], check=False, timeout=timeout)
    sent = _LOSS.search(res.stdout)
    if sent is None:
        raise LabError(f"ping from {src} to {dst} gave no summary: {res.stderr.strip()}")
    rtt = _RTT.search(res.stdout)
    values = [float(v) for v in rtt.groups()[:3]] if rtt else [math.nan] * 3
    return Ping(int(sent.group(1)), int(sent.group(2)), *values)


def iperf_rate(lab: Lab, src: str, dst: str, addr: str,
               seconds: int, skip: int, udp_mbit: float = 0.0) -> float:
    """Mbit/s received by the iperf3 server in ``dst`` from a sender in ``src``, over the
    server's one-second intervals after the first ``skip`` (slow start excluded): TCP, or with
    ``udp_mbit`` UDP datagrams of 1400 bytes offered at that rate."""
    udp = ["-u", "-b", f"{udp_mbit:g}M", "-l", "1400"] if udp_mbit else []
    server = lab.spawn(dst, ["iperf3", "-s", "-1", "-J", "-p", str(IPERF_PORT)])
    try:
        time.sleep(0.3)
        res = lab.exec(src, ["iperf3", "-c", addr, "-p", str(IPERF_PORT), "-t",
                                      str(seconds), "-J", "--get-server-output", *udp],
                           check=False, timeout=seconds + 30)
    finally:
        if server.poll() is None:
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:  # not finished: stop it by pid
                stop([server.pid])
    try:
        doc: dict[str, Any] = json.loads(res.stdout)
        intervals = doc["server_output_json"]["intervals"]
    except (ValueError, KeyError):
        raise LabError(f"iperf3 from {src} to {dst} failed: {res.stdout[-500:]}"
                       f"{res.stderr[-500:]}") from None
    kept = [i["sum"] for i in intervals[skip:]] or [i["sum"] for i in intervals]
    secs = sum(float(s["seconds"]) for s in kept)
    return sum(float(s["bytes"]) for s in kept) * 8 / secs / 1e6 if secs else 0.0


def fidelity(lab: Lab, wan: Wan, *, pings: int = 20, rate: bool = True) -> dict[str, Any]:
    """Configured and measured RTT, loss and rate (forward direction) of the running WAN."""
    src, dst, addr = endpoints(lab.topology)
    rtt_conf = wan.forward.delay_ms + wan.reverse.delay_ms
    p = ping(lab, src, dst, pings, 0.05, timeout=30 + rtt_conf / 100)
    doc: dict[str, Any] = {
        "between": f"{src} -> {dst} ({addr})",
        "rtt_configured_ms": rtt_conf,
        "rtt_measured_ms": round(p.rtt_avg_ms, 3),
        "rtt_min_ms": round(p.rtt_min_ms, 3),
        "ping_loss_pct": round(p.loss_pct, 2),
        "pings": p.sent,
        "rate_configured_mbit": wan.forward.rate_mbit,
        "measured_at": time.time(),
    }
    if rate:
        doc.update(rate_fidelity(lab, (src, dst, addr), wan, rtt_conf))
    return doc


def rate_fidelity(lab: Lab, ends: tuple[str, str, str], wan: Wan, rtt_ms: float) -> dict[str, Any]:
    """The bottleneck's rate: with a configured rate up to UDP_MAX_MBIT, UDP offered at 1.2
    times it (what arrives is the bottleneck's rate times 1 - loss, whatever TCP would make of
    the delay and loss); above (iperf3's UDP sender cannot keep up) or without one, TCP goodput
    (what the path carries at most)."""
    conf = wan.forward.rate_mbit
    if 0 < conf <= UDP_MAX_MBIT:
        skip = 1 + math.ceil(rtt_ms / 1000)
        measured = iperf_rate(lab, *ends, skip + 3, skip, udp_mbit=1.2 * conf)
        note = "UDP offered at 1.2 x the rate, payload received at the iperf3 server"
    else:
        skip = 1 + math.ceil(10 * rtt_ms / 1000)  # TCP needs round trips to fill the path
        measured = iperf_rate(lab, *ends, skip + 3, skip)
        note = "TCP goodput at the iperf3 server (payload only)"
    return {"rate_measured_mbit": round(measured, 2), "rate_note": note}
