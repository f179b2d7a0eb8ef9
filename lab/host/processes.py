"""Processes inside a node, found by the kernel's own record (``/proc/PID/ns/net``), and stopped
by process id. Nothing is ever killed by name: only processes whose network namespace is one the
lab created."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.host.wait import Deadline

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    command: str


def _ns_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_netns(netns: Path) -> list[int]:
    """Every process whose network namespace is the one bound at ``netns``."""
    target = _ns_id(netns)
    if target is None:
        return []
    me = os.getpid()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if _ns_id(entry / "ns" / "net") == target:
            found.append(int(entry.name))
    return sorted(found)


def describe(pid: int) -> ProcessInfo | None:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    command = " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)
    return ProcessInfo(pid, command or f"[{pid}]")


def _alive(pid: int) -> bool:
    try:
        # A zombie still answers kill(0); treat it as gone (its parent will reap it).
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop(pids: list[int], grace: float = 3.0) -> list[int]:
    """SIGTERM the given processes, then SIGKILL those still alive after ``grace`` seconds.
    Returns the pids that had to be killed."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    remaining = _wait_gone(pids, grace)
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
    _wait_gone(remaining, 2.0)
    return remaining


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    """Those of ``pids`` still alive after at most ``seconds`` (sooner once all are gone)."""
    deadline = Deadline(seconds)
    remaining = [p for p in pids if _alive(p)]
    while remaining and not deadline.expired:
        time.sleep(min(0.02, deadline.remaining()))
        remaining = [p for p in remaining if _alive(p)]
    return remaining


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def tcp_sockets(pid: int) -> Iterator[tuple[str, int, str]]:
    """The TCP sockets of the network namespace of process ``pid``, IPv4 then IPv6, as (state,
    local port, remote end as the kernel writes it), read from ``/proc/PID/net/tcp`` and
    ``tcp6`` (states: 01 established, 0A listening; a table that cannot be read is skipped)."""
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            yield fields[3], int(fields[1].rsplit(":", 1)[1], 16), fields[2]
