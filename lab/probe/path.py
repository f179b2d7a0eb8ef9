"""The path to the peer, measured without ICMP (often blocked at a hospital's edge): TCP
connect times and the path MTU the kernel holds for the peer's address.

A TCP connect returns when the SYN-ACK arrives (RFC 9293 3.5), so its time is one round trip
plus the peer's accept; the median of a few is the RTT, and their spread the jitter. Each
connection is used for a short association (``sample``), or closed at once where the port
does not take one.

The path MTU is ``IP_MTU`` / ``IPV6_MTU`` of a connected socket (Linux ip(7), ipv6(7)): the
route's MTU, lowered by any ICMP "fragmentation needed" / "packet too big" the kernel has
learned for that destination (RFC 1191, RFC 8201).
"""

from __future__ import annotations

import functools
import socket
import statistics
import time
from collections.abc import Callable

from lab.probe.findings import PathFindings

#: Linux socket options (ip(7), ipv6(7)); Python's socket module does not name them all.
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_MTU = 23, 2, 24


def family(host: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 literal, AF_INET otherwise (names are resolved by connect)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def connect_once(host: str, port: int, timeout: float) -> float:
    """Seconds one TCP connect took; OSError (refused, unreachable) or TimeoutError."""
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout):
        return time.perf_counter() - start


def path_mtu(host: str, port: int, timeout: float) -> int | None:
    """The path MTU towards ``host`` on a connected socket, or None if it cannot connect."""
    fam = family(host)
    with socket.socket(fam, socket.SOCK_STREAM) as sock:
        if fam == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            return None
        if fam == socket.AF_INET6:
            return sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU)
        return sock.getsockopt(socket.IPPROTO_IP, IP_MTU)


def jitter(rtts_ms: list[float]) -> float:
    """One-way jitter, as the lab's WAN takes it (uniform +- j on each direction), from round
    trips: two directions of +- j make round trips spread over 4 j, so j = (max - min) / 4."""
    return (max(rtts_ms) - min(rtts_ms)) / 4 if len(rtts_ms) > 1 else 0.0


def measure(host: str, port: int, *, count: int = 5, timeout: float = 3.0,
            sample: Callable[[], float] | None = None) -> PathFindings:
    """``count`` connects (each bounded by ``timeout``), their median and spread, and the MTU,
    after one connect that is not counted (it pays for the neighbour lookup and cold caches,
    which would pass for jitter). ``sample`` makes one connect and returns its seconds (bare
    TCP connects by default; the probe greets the peer on each, see
    :func:`lab.probe.association.greet`). A failure is recorded as text, never raised: an
    unreachable peer is a finding."""
    sample = sample or functools.partial(connect_once, host, port, timeout)
    times: list[float] = []
    failures: list[str] = []
    warm: list[float] = []
    for attempt in range(count + 1):
        try:
            took = 1000 * sample()
            (times if attempt else warm).append(took)
        except TimeoutError:
            failures.append(f"no answer within {timeout:g} s")
        except OSError as exc:
            failures.append(exc.strerror or str(exc))
        if len(failures) >= 2 and not times:
            break  # a dead peer: two tries tell as much as five, in less time
    times = times or warm  # only the first connect succeeded: still a connection
    found = PathFindings(connect_ms=[round(t, 3) for t in times], failures=failures)
    if times:
        found.rtt_ms = round(statistics.median(times), 3)
        found.jitter_ms = round(jitter(times), 3)
        found.mtu = path_mtu(host, port, timeout)
        found.mtu_source = "IP_MTU of a connected socket" if found.mtu else None
    return found
