"""TCP throughput bounds for the report's WAN figure, and what a WAN preset's name says.

- Window bound: a TCP connection moves at most one receive window per round trip,
  throughput <= W / RTT (RFC 7323 section 1.1 explains why windows limit long paths).
- Loss bound (Mathis, Semke, Mahdavi, Ott, "The macroscopic behavior of the TCP congestion
  avoidance algorithm", CCR 27(3), 1997): throughput <= MSS / (RTT * sqrt(p)) * C, with
  C = sqrt(3/2) for periodic loss and delayed ACKs off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.model.wan import ProfileError, parse_option

#: Mathis et al.'s constant for periodic loss without delayed ACKs.
MATHIS_C = math.sqrt(1.5)
#: Linux's default maximum receive buffer (net.ipv4.tcp_rmem max, 6 MiB), about what one
#: connection's window can grow to by autotuning on an unconfigured host.
DEFAULT_WINDOW_BYTES = 6 * 1024 * 1024
#: MSS on a 1500-byte MTU with TCP timestamps (RFC 7323): 1500 - 20 - 20 - 12 (IPv4), and
#: 1500 - 40 - 20 - 12 (IPv6).
MSS = {"ipv4": 1448, "ipv6": 1428}
#: Round trips a study costs besides its bytes: the TCP handshake, the A-ASSOCIATE exchange and
#: the last response's return (what no application can hide).
SETUP_RTTS = 3

_RATE = re.compile(r"^(\d+(?:\.\d+)?)([kmg])(?:bit)?$")
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)ms$")
_LOSS = re.compile(r"^(\d+(?:\.\d+)?)pct$")


@dataclass(frozen=True)
class WanShape:
    """Rate (bit/s, None = unlimited), round-trip time (s) and loss probability of a profile."""

    name: str
    rate: float | None
    rtt: float
    loss: float


def parse_preset(name: str) -> WanShape | None:
    """The shape of the WAN a row ran on, from its profile as ``--wan`` takes it (a preset such
    as ``dsl-20m-30ms``, or ``delay=40ms,rate=10mbit,...``), through the WAN layer's own
    definitions: RTT is the two one-way delays added, rate and loss those of the direction the
    data flows (first site to second). None when unimpaired, unknown, or without delay."""
    if name in ("", "none"):
        return None
    try:
        wan = parse_option(name)
    except ProfileError:
        return None
    rtt = (wan.forward.delay_ms + wan.reverse.delay_ms) / 1000
    if rtt <= 0:
        return None
    rate = wan.forward.rate_mbit * 1e6 or None
    return WanShape(name, rate, rtt, wan.forward.loss_pct / 100)


def row_shape(row: Mapping[str, Any]) -> WanShape | None:
    """The shape of the WAN a result row ran on, from the numbers the row carries
    (``wan_rtt_ms``, ``wan_rate_mbit``, ``wan_loss_pct``, as applied); rows written before those
    columns existed are read from their profile's name (:func:`parse_preset`)."""
    rtt_ms = _number(row.get("wan_rtt_ms"))
    name = str(row.get("wan_profile") or row.get("case_wan") or "")
    if rtt_ms is None:
        return parse_preset(name)
    if rtt_ms <= 0:
        return None
    rate = (_number(row.get("wan_rate_mbit")) or 0.0) * 1e6 or None
    return WanShape(name, rate, rtt_ms / 1000, (_number(row.get("wan_loss_pct")) or 0.0) / 100)


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def window_bound(rtt: float, window: int = DEFAULT_WINDOW_BYTES) -> float:
    """Upper bound in bit/s of one connection with receive window ``window`` bytes."""
    return window * 8 / rtt


def study_bound(size: int, rate: float, rtt: float) -> float:
    """Seconds a study of ``size`` bytes needs at least over a path of ``rate`` bit/s and round
    trip ``rtt``: its bytes at the rate plus :data:`SETUP_RTTS` round trips."""
    return size * 8 / rate + SETUP_RTTS * rtt


def mathis_bound(rtt: float, loss: float, mss: int = MSS["ipv4"]) -> float:
    """Mathis et al.'s loss bound in bit/s (infinite without loss)."""
    if loss <= 0:
        return math.inf
    return mss * 8 / (rtt * math.sqrt(loss)) * MATHIS_C
