"""The userspace path: ``tl-wanemu`` (wanemu.c, built here with gcc) forwards between the WAN
router's two interfaces while the router's own kernel forwarding is off.

Design (measured on a 2-core VM, zero delay, TCP through the router, iperf3):

- a pure-Python AF_PACKET forwarder with no scheduling at all reached 431 Mbit/s with 23,700
  retransmissions in 4 s (its socket buffer overflowed); any delay line would only cost more;
- the C helper (recvmmsg straight into a FIFO ring, release times fixed on arrival, sendmmsg of
  every due packet) reached 680-780 Mbit/s with none at normal priority on the same busy VM, and
  1217 Mbit/s host to host at a real-time priority (plain veth: 2101 Mbit/s with the gateways'
  offloads off), above the 500 Mbit/s target. It is small, built by the project itself from one
  source file (cached by content hash), and needs only gcc.
- Timing: at normal priority, other work on a 2-core machine delayed releases by up to 60 ms
  (RTT avg 37.9 ms for 20 ms configured); at SCHED_FIFO priority 20 the RTT error is +0.6 to
  +0.8 ms at 20, 100 and 400 ms (the rest is two wake-ups per round trip).

Release times are computed on arrival — rate: serialised behind the previous packet; then delay
plus uniform jitter, never earlier than the previous packet's — so they never decrease and a FIFO
per direction is the whole timer. With kernel forwarding off, a crashed emulator stops the WAN
instead of leaving it unimpaired. Packets for the router itself (ARP, neighbour discovery, pings
to its addresses) stay with the kernel.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.backends.base import Lab
from lab.errors import LabError, WaitTimeout
from lab.host import files, programs, shell
from lab.host.processes import describe, pids_in_netns, stop
from lab.host.wait import until
from lab.model.topology import WanProfile
from lab.model.wan import queue_limit

SOURCE = Path(__file__).with_name("wanemu.c")
CACHE = Path("/var/cache/teleradlab")
READY_TIMEOUT = 5.0
#: Highest rate the emulator sustained at zero delay on the 2-core development VM, shared with
#: other work, at its real-time priority: 1217-1354 Mbit/s of TCP (680-780 at normal priority);
#: scripts/bench --only wan measures it again. A profile asking more (or no rate at all) may be
#: limited by the emulator, and run says so.
CAPACITY_MBIT = 1200.0


def built_path(cache: Path = CACHE) -> Path:
    """Where the helper built from this version of SOURCE is (or will be) cached."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return cache / f"tl-wanemu-{digest}"


def binary(cache: Path = CACHE) -> Path:
    """The helper built from SOURCE (compiled once per source version, atomically)."""
    out = built_path(cache)
    if out.is_file():
        return out
    gcc = programs.locate(programs.BY_NAME["gcc"])
    if gcc is None:
        raise LabError("the userspace WAN emulator is built with gcc, which is missing: "
                       f"{programs.install_command([programs.BY_NAME['gcc']])} "
                       "(or use a kernel with sch_netem)")
    cache.mkdir(parents=True, exist_ok=True)
    with files.replacing(out) as tmp:
        shell.run([gcc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE)], timeout=120)
    return out


def staged(helper: Path, lab_dir: Path) -> Path:
    """A copy of ``helper`` in the lab's data directory, which every node sees at the same path
    (a container sees its own file system, not the host's build cache)."""
    target = lab_dir / helper.name
    if not target.is_file():
        lab_dir.mkdir(parents=True, exist_ok=True)
        with files.replacing(target) as tmp:
            shutil.copy2(helper, tmp)
    return target


def params(p: WanProfile) -> str:
    """The helper's per-direction argument: ns, ns, fractions, bit/s, packets, fractions."""
    values = [int(p.delay_ms * 1e6), int(p.jitter_ms * 1e6), p.loss_pct / 100,
              p.loss_corr_pct / 100, p.rate_mbit * 1e6, queue_limit(p), p.reorder_pct / 100,
              p.duplicate_pct / 100, p.corrupt_pct / 100]
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


@dataclass(frozen=True)
class Link:
    """One side of the router: its interface, the gateway's MAC behind it."""

    ifname: str
    peer_mac: str


def argv(helper: Path, stats: Path, links: tuple[Link, Link], local: list[str],
         forward: WanProfile, reverse: WanProfile, seed: int = 0,
         mtu: int = 1500) -> list[str]:
    """Direction 0 (forward) enters on ``links[0]`` and leaves on ``links[1]``. The same seed
    gives the same pattern of losses (and of jitter, duplicates...) for the same traffic."""
    args = [str(helper), "run", "--stats", str(stats), "--mtu", str(mtu), "--if0", links[0].ifname,
            "--mac0", links[0].peer_mac, "--if1", links[1].ifname, "--mac1", links[1].peer_mac,
            "--seed", str(seed), "--p01", params(forward), "--p10", params(reverse)]
    for addr in local:
        args += ["--local", addr]
    return args


def start(lab: Lab, node: str, args: list[str], stats: Path, log: Path) -> int:
    """Spawn the emulator in ``node``; return its pid once it has its sockets (stats written)."""
    stats.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = lab.spawn(node, args, log_path=log)

    def ready() -> bool:
        if stats.exists():
            return True
        if proc.poll() is not None:
            raise LabError(f"the WAN emulator did not start in {node}:\n{tail(log)}")
        return False

    try:
        until(ready, READY_TIMEOUT, 0.02, what=f"the WAN emulator's sockets in {node}",
              detail=lambda: tail(log))
    except WaitTimeout:
        stop([proc.pid])
        raise
    return proc.pid


def running(lab: Lab, node: str, pid: int) -> bool:
    """Is ``pid`` still the emulator inside ``node`` (not a reused pid elsewhere)?"""
    if pid not in pids_in_netns(lab.netns_path(node)):
        return False
    info = describe(pid)
    return info is not None and "tl-wanemu" in info.command


def tail(log: Path, lines: int = 10) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
