"""The kernel path: netem on the egress of the WAN router's interfaces, with tbf above it for the
rate (``tc qdisc add dev X root handle 1: tbf ...; tc qdisc add dev X parent 1:1 handle 10: netem
...``), sent as rtnetlink RTM_NEWQDISC messages built here and sent through pyroute2.

The forward direction (first site to second) leaves the router on its interface towards the second
site's gateway, the reverse direction on the one towards the first. The messages are plain data
(:func:`requests`, :func:`message`), so unit tests check exactly what would be sent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import plugins, tcmsg

from lab.errors import LabError
from lab.model.topology import WanProfile
from lab.model.wan import queue_limit

TBF_HANDLE = 0x10000  # 1:
TBF_CLASS = 0x10001  # 1:1, tbf's only class, where netem hangs
NETEM_HANDLE = 0x100000  # 10:
#: tbf bucket: at least two full-size packets, or 4 ms of the rate (a 250 Hz timer's tick).
MIN_BURST = 2 * 1514
TBF_LATENCY_US = 50_000  # tbf's own queue matters little: netem below it holds the packets


@dataclass(frozen=True)
class QdiscRequest:
    """One qdisc to add: ``kind`` with ``options`` (pyroute2 plugin keywords) at ``parent``."""

    kind: str
    handle: int
    parent: int
    options: dict[str, Any] = field(default_factory=dict)


def netem_options(p: WanProfile) -> dict[str, Any]:
    """netem's keywords: times in microseconds, probabilities in percent (sch_netem.c)."""
    opts: dict[str, Any] = {
        "delay": round(p.delay_ms * 1000),
        "jitter": round(p.jitter_ms * 1000),
        "limit": queue_limit(p),
        "loss": p.loss_pct,
        "duplicate": p.duplicate_pct,
    }
    if p.loss_pct and p.loss_corr_pct:
        opts["loss_corr"] = p.loss_corr_pct
    if p.reorder_pct:
        opts["prob_reorder"] = p.reorder_pct
    if p.corrupt_pct:
        opts["prob_corrupt"] = p.corrupt_pct
    return opts


def requests(p: WanProfile) -> list[QdiscRequest]:
    """The qdiscs for one direction: netem at the root, or tbf at the root and netem below."""
    if not p.rate_mbit:
        return [QdiscRequest("netem", NETEM_HANDLE, TC_H_ROOT, netem_options(p))]
    rate_bytes = p.rate_mbit * 1e6 / 8
    burst = max(MIN_BURST, int(rate_bytes * 0.004))
    tbf = {"rate": f"{int(p.rate_mbit * 1000)}kbit", "burst": burst, "latency": TBF_LATENCY_US}
    return [
        QdiscRequest("tbf", TBF_HANDLE, TC_H_ROOT, tbf),
        QdiscRequest("netem", NETEM_HANDLE, TBF_CLASS, netem_options(p)),
    ]


def message(req: QdiscRequest, index: int) -> tcmsg:
    """The RTM_NEWQDISC message for ``req`` on interface ``index``, encoded."""
    msg = tcmsg()
    msg["index"] = index
    msg["handle"] = req.handle
    msg["parent"] = req.parent
    msg["attrs"] = [
        ["TCA_KIND", req.kind],
        ["TCA_OPTIONS", plugins[req.kind].get_parameters(dict(req.options))],
    ]
    msg.encode()
    return msg


def send(ipr: IPRoute, req: QdiscRequest, index: int) -> None:
    """Send ``req`` as RTM_NEWQDISC (create, exclusive): pyroute2's tc() encodes the options with
    the same plugin as :func:`message`."""
    ipr.tc("add", req.kind, index=index, handle=req.handle, parent=req.parent, **req.options)


def apply(netns: Path, plan: dict[str, WanProfile]) -> None:
    """Replace the root qdisc of each interface in ``plan`` (ifname -> profile) in ``netns``."""
    with IPRoute(netns=str(netns)) as ipr:
        for ifname, profile in plan.items():
            index = _index(ipr, ifname)
            _delete_root(ipr, index)
            for req in requests(profile):
                try:
                    send(ipr, req, index)
                except NetlinkError as exc:
                    raise LabError(f"cannot add {req.kind} on {ifname}: {exc}") from None


def reset(netns: Path, ifnames: list[str]) -> None:
    """Remove the lab's qdiscs (back to the interface's default)."""
    with IPRoute(netns=str(netns)) as ipr:
        for ifname in ifnames:
            _delete_root(ipr, _index(ipr, ifname))


def _delete_root(ipr: IPRoute, index: int) -> None:
    with contextlib.suppress(NetlinkError):  # ENOENT: no root qdisc of ours to remove
        ipr.tc("del", index=index, parent=TC_H_ROOT)


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"the WAN router has no interface {ifname}")
    return int(found[0])


def available(netns: Path, ifname: str) -> tuple[bool, str]:
    """Whether this kernel has sch_netem: add a netem qdisc on ``ifname`` and remove it again.

    The probe needs no module list (none is readable inside a node); EOPNOTSUPP/ENOENT answers."""
    with IPRoute(netns=str(netns)) as ipr:
        index = _index(ipr, ifname)
        _delete_root(ipr, index)
        try:
            send(ipr, requests(WanProfile())[0], index)
        except NetlinkError as exc:
            reason = exc.args[1] if len(exc.args) > 1 else str(exc)
            return False, f"the kernel refused a netem qdisc: {reason}"
        _delete_root(ipr, index)
    return True, "netem qdisc available"
