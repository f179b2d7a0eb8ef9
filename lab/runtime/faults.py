"""Faults injected into a running lab, each returning what was seen until the lab recovered.

Five kinds, the breakdowns a teleradiology link meets (issue 17):

- ``archive-restart``: the PACS process is killed (SIGKILL, a crash) and, ``seconds`` later (0
  by default: a supervisor's restart), started again; recovered when it answers a C-ECHO
  (PS3.7 9.1.5) from the modality again.
- ``ike-restart``: a gateway's IKE daemon (charon) is stopped and, ``seconds`` later (0 by
  default), a new one started; the peer's stale SAs are deleted and the SAs initiated again
  (IKEv2, RFC 7296); recovered when both peers list an established IKE SA with an installed
  CHILD_SA (VICI ``list-sas``). The firewall guards stay throughout, so traffic is dropped,
  never sent in clear, while the SAs are missing.
- ``rekey``: the IKE SA and the CHILD_SA are rekeyed (VICI ``rekey``, RFC 7296 2.8); recovered
  when the initiator lists new SPIs for both.
- ``link-down``: a gateway's WAN interface is set down (netlink, pyroute2) for ``seconds``, then
  up; the kernel flushes the interface's routes (and IPv6 addresses) when it goes down, so the
  topology's addresses and routes of that interface are put back, as a router's configuration
  would; recovered when the gateway pings the far gateway across the WAN.
- ``loss-burst``: ``loss`` percent random loss added to both directions of the WAN for
  ``seconds`` (through :mod:`lab.wan.apply`, the path the machine has), then the WAN profile as
  it was.

Every action takes the Lab handle; those on IPsec read the lab's SecurityPlan (``lab.plan``) and
refuse a lab without IPsec. Each returns a :class:`FaultRecord`.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from lab.backends.base import Lab
from lab.dicom.reports import ReportError, parse_output
from lab.errors import LabError
from lab.host import processes
from lab.host.wait import until
from lab.model.routing import probes
from lab.model.topology import Family, Role, SegmentKind, Wan
from lab.runtime import services
from lab.security.ipsec import tunnel
from lab.security.ipsec.charon import charon_binary
from lab.wan import apply as wan_apply

#: How long a recovery may take before the fault is reported as not recovered (an error).
RECOVERY_TIMEOUT_S = 60.0
IFA_F_NODAD = 0x02


class FaultKind(StrEnum):
    """The faults; for each, ``seconds`` is how long it lasts: the archive or the IKE daemon
    stays down that long before it is started again, the link stays down, the loss lasts."""

    ARCHIVE_RESTART = "archive-restart"
    IKE_RESTART = "ike-restart"
    REKEY = "rekey"
    LINK_DOWN = "link-down"
    LOSS_BURST = "loss-burst"

    @property
    def needs_ipsec(self) -> bool:
        return self in (FaultKind.IKE_RESTART, FaultKind.REKEY)


#: How long each fault lasts unless told (seconds): the daemons come back at once, as a
#: supervisor would restart them; the link and the loss last long enough to stall TCP.
DEFAULT_SECONDS = {FaultKind.ARCHIVE_RESTART: 0.0, FaultKind.IKE_RESTART: 0.0,
                   FaultKind.REKEY: 0.0, FaultKind.LINK_DOWN: 5.0, FaultKind.LOSS_BURST: 5.0}


@dataclass(frozen=True)
class FaultRecord:
    """One injected fault: its kind, the node it hit, when it started and when the lab was seen
    recovered (``time.time()``), and what was observed."""

    fault: str
    node: str
    started: float
    ended: float
    observed: str

    @property
    def seconds(self) -> float:
        """From the fault's start to the recovery observed."""
        return round(self.ended - self.started, 6)

    def document(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}


@dataclass(frozen=True)
class FaultSpec:
    """What to inject: the kind, the node (None: the kind's default), and its parameters."""

    kind: FaultKind
    node: str | None = None
    seconds: float | None = None  # how long the fault lasts (None: the kind's DEFAULT_SECONDS)
    loss_pct: float = 30.0  # loss-burst

    @property
    def duration(self) -> float:
        return DEFAULT_SECONDS[self.kind] if self.seconds is None else self.seconds


def parse_kind(text: str) -> FaultKind:
    try:
        return FaultKind(text)
    except ValueError:
        raise LabError(f"unknown fault {text!r} (faults: {', '.join(FaultKind)})") from None


def target(lab: Lab, spec: FaultSpec) -> str:
    """The node ``spec`` hits, checked against the lab: LabError naming what is allowed."""
    if spec.kind.needs_ipsec and lab.plan.ipsec is None:
        raise LabError(f"fault {spec.kind} needs IPsec, and lab {lab.name} runs "
                       f"{lab.plan.label}")
    if spec.kind is FaultKind.ARCHIVE_RESTART:
        allowed = [n.name for n in lab.topology.nodes if n.role is Role.PACS]
    elif spec.kind.needs_ipsec:
        assert lab.plan.ipsec is not None
        allowed = [e.node for e in lab.plan.ipsec.endpoints]
    elif spec.kind is FaultKind.LINK_DOWN:
        allowed = [s.gateway for s in lab.topology.sites]
    else:
        allowed = [lab.topology.wan_router]
    if spec.node is None:
        return allowed[0]
    if spec.node not in allowed:
        raise LabError(f"fault {spec.kind} cannot hit node {spec.node!r} of lab {lab.name} "
                       f"(it can hit: {', '.join(allowed)})")
    return spec.node


def inject(lab: Lab, spec: FaultSpec) -> FaultRecord:
    """Inject ``spec`` into ``lab`` and return once the lab has recovered (LabError when it does
    not within RECOVERY_TIMEOUT_S)."""
    if not 0 <= spec.duration <= 600:
        raise LabError(f"a fault lasts 0 to 600 seconds (got {spec.duration:g})")
    if not 0 < spec.loss_pct <= 100:
        raise LabError(f"loss must be in (0, 100] percent (got {spec.loss_pct:g})")
    node = target(lab, spec)
    actions: dict[FaultKind, Callable[[Lab, str, FaultSpec], tuple[float, str]]] = {
        FaultKind.ARCHIVE_RESTART: _archive_restart, FaultKind.IKE_RESTART: _ike_restart,
        FaultKind.REKEY: _rekey, FaultKind.LINK_DOWN: _link_down,
        FaultKind.LOSS_BURST: _loss_burst}
    started = time.time()
    ended, observed = actions[spec.kind](lab, node, spec)
    return FaultRecord(str(spec.kind), node, started, ended, observed)


# --- the archive ------------------------------------------------------------------------------

def _archive_restart(lab: Lab, node: str, spec: FaultSpec) -> tuple[float, str]:
    svc = next(s for s in services.dicom_services(lab) if s.node == node and s.name == "pacs")
    pids = [pid for pid in processes.pids_in_netns(lab.netns_path(node))
            if _is_service(pid, svc)]
    if not pids:
        raise LabError(f"the archive of lab {lab.name} is not running in {node}")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    processes.stop(pids, grace=5.0)  # already dead: waits until they are gone
    time.sleep(spec.duration)
    services.start(lab, [svc])
    tries = until(partial(_echo, lab, node), RECOVERY_TIMEOUT_S, 0.2,
                  what=f"the archive in {node} answering C-ECHO again")
    return time.time(), (f"archive pid {', '.join(map(str, pids))} killed (SIGKILL), "
                         f"started again; C-ECHO answered after {tries} attempt(s)")


def _is_service(pid: int, svc: services.Service) -> bool:
    info = processes.describe(pid)
    return info is not None and "lab.dicom.pacs" in info.command and (
        f"--root={svc.store}" in info.command)


def _echo(lab: Lab, pacs: str) -> int:
    """1 when the modality's C-ECHO to ``pacs`` succeeds, else 0 (the caller polls)."""
    modality = next(n.name for n in lab.topology.nodes if n.role is Role.MODALITY)
    host = _address(lab, modality, pacs)
    argv = [sys.executable, "-m", "lab.dicom.scu", "echo", f"--host={host}",
            f"--port={lab.plan.pacs_port}", "--timeout=5",
            *services.tls_arguments(lab, modality, client=True)]
    res = lab.exec(modality, argv, check=False, timeout=30)
    try:
        return 1 if parse_output("echo", res.stdout).ok else 0
    except ReportError:
        return 0


def _address(lab: Lab, src: str, dst: str) -> str:
    """An address of ``dst`` that ``src`` reaches (directly or through the tunnel)."""
    found = [p for p in probes(lab.topology.nodes) if (p.source, p.destination) == (src, dst)]
    if lab.plan.ipsec is not None:
        found += [p for p in tunnel.tunnel_probes(lab.topology, lab.plan.ipsec)
                  if (p.source, p.destination) == (src, dst)]
    if not found:
        raise LabError(f"{src} reaches {dst} in no family in lab {lab.name}")
    return str(found[0].target)


# --- IPsec ------------------------------------------------------------------------------------

def _ike_restart(lab: Lab, node: str, spec: FaultSpec) -> tuple[float, str]:
    binary = str(charon_binary())
    pids = [pid for pid in processes.pids_in_netns(lab.netns_path(node))
            if (info := processes.describe(pid)) is not None and binary in info.command
            and "STRONGSWAN_CONF" not in info.command]
    if not pids:
        raise LabError(f"no charon runs in {node} of lab {lab.name}")
    processes.stop(pids)
    down = time.time()
    time.sleep(spec.duration)
    tunnel.restart_daemon(lab, node)
    assert lab.plan.ipsec is not None
    ids = {e.node: until(partial(tunnel.sa_ids, lab, e.node), RECOVERY_TIMEOUT_S, 0.1,
                         what=f"SAs established again on {e.node}")
           for e in lab.plan.ipsec.endpoints}
    ended = time.time()
    return ended, (f"charon pid {', '.join(map(str, pids))} stopped for {spec.duration:g} s; "
                   f"SAs back after "
                   f"{ended - down:.3f} s (CHILD_SA SPI in "
                   + ", ".join(f"{n}: {i[1] if i else '?'}" for n, i in ids.items()) + ")")


def _rekey(lab: Lab, node: str, spec: FaultSpec) -> tuple[float, str]:
    """The IKE SA first, then (once the new one is established) the CHILD_SA: two exchanges
    one after the other, as a peer's lifetimes would trigger them."""
    before = tunnel.sa_ids(lab, node)
    if before is None:
        raise LabError(f"{node} has no established SAs to rekey in lab {lab.name}")
    old: tuple[str, str] = before
    tunnel.rekey(lab, node, "ike")
    ike = _renewed(lab, node, 0, old, "a new IKE SA")
    tunnel.rekey(lab, node, "child")
    after = _renewed(lab, node, 1, ike, "a new CHILD_SA")
    return time.time(), (f"IKE SA {old[0]} -> {after[0]}, CHILD_SA SPI in {old[1]} -> "
                         f"{after[1]}")


def _renewed(lab: Lab, node: str, which: int, old: tuple[str, str],
             what: str) -> tuple[str, str]:
    """Once ``node`` lists SAs whose ``which`` id (0: IKE SPIs, 1: CHILD_SA SPI) differs."""
    def changed() -> tuple[str, str] | None:
        now = tunnel.sa_ids(lab, node)
        return now if now and now[which] != old[which] else None

    found: tuple[str, str] | None = until(changed, RECOVERY_TIMEOUT_S, 0.05,
                                          what=f"{what} on {node}")
    assert found is not None  # until returns a true value
    return found


# --- the WAN ----------------------------------------------------------------------------------

def _link_down(lab: Lab, node: str, spec: FaultSpec) -> tuple[float, str]:
    gateway = lab.topology.node(node)
    router = lab.topology.wan_router
    iface = next(i for i in gateway.interfaces
                 if any(w.name == i.segment for w in lab.topology.segments
                        if w.kind is SegmentKind.WAN))
    routes = [r for r in gateway.routes if r.interface == iface.name]
    with IPRoute(netns=str(lab.netns_path(node)), flags=0) as ipr:
        index = ipr.link_lookup(ifname=iface.name)[0]
        ipr.link("set", index=index, state="down")
        time.sleep(spec.duration)
        ipr.link("set", index=index, state="up")
        for addr in iface.addresses:
            _quiet(ipr.addr, "add", index=index, address=str(addr.ip),
                   prefixlen=addr.network.prefixlen, flags=IFA_F_NODAD)
        for route in routes:
            _quiet(ipr.route, "add", dst=str(route.destination), gateway=str(route.gateway),
                   oif=index, family=10 if Family.of(route.destination) is Family.IPV6 else 2)
    far = next(str(a.ip) for i in lab.topology.node(router).interfaces
               if i.segment == iface.segment for a in i.addresses)
    until(partial(_pings, lab, node, far), RECOVERY_TIMEOUT_S, 0.1,
          what=f"{node} reaching {router} ({far}) after its link came back")
    return time.time(), (f"{node}:{iface.name} down {spec.duration:g} s, up; "
                         f"{len(iface.addresses)} address(es) and {len(routes)} route(s) put "
                         f"back; {router} answers ping")


def _quiet(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A netlink add that may find the thing already there (the kernel kept it)."""
    try:
        call(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def _pings(lab: Lab, node: str, address: str) -> bool:
    return lab.exec(node, ["ping", "-c1", "-W1", address], check=False, timeout=5).ok


def _loss_burst(lab: Lab, node: str, spec: FaultSpec) -> tuple[float, str]:
    before = wan_apply.check(lab)
    wan = before.wan
    lossy = Wan(name=f"{wan.name or 'unimpaired'}+loss-burst",
                forward=replace(wan.forward, loss_pct=spec.loss_pct),
                reverse=replace(wan.reverse, loss_pct=spec.loss_pct))
    burst = wan_apply.apply(lab, lossy)
    try:
        time.sleep(spec.duration)
    finally:
        after = wan_apply.apply(lab, wan)
    return time.time(), (f"{spec.loss_pct:g}% loss for {spec.duration:g} s by the {burst.path} "
                         f"path, then {wan.name or 'unimpaired'} again "
                         f"({after.path or 'no impairment'})")
