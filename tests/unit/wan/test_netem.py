"""The kernel path's rtnetlink requests: which qdiscs, where, and the bytes of their options
(decoded back from the encoded RTM_NEWQDISC message, as the kernel would read them)."""

from __future__ import annotations

from typing import Any

from pyroute2.netlink.rtnl import TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import time2tick

from lab.model.topology import WanProfile
from lab.wan.netem import NETEM_HANDLE, TBF_CLASS, TBF_HANDLE, message, requests

U32 = 2**32 - 1


def _decoded(p: WanProfile, index: int = 7) -> list[tuple[str, int, int, int, Any]]:
    out = []
    for req in requests(p):
        raw = message(req, index).data
        msg = tcmsg(raw)
        msg.decode()
        out.append((msg.get_attr("TCA_KIND"), msg["index"], msg["handle"], msg["parent"],
                    msg.get_attr("TCA_OPTIONS")))
    return out


def test_without_rate_netem_is_the_root() -> None:
    p = WanProfile(delay_ms=30, jitter_ms=2, loss_pct=1, loss_corr_pct=25, duplicate_pct=0.5)
    ((kind, index, handle, parent, opts),) = _decoded(p)
    assert (kind, index, handle, parent) == ("netem", 7, NETEM_HANDLE, TC_H_ROOT)
    assert opts["delay"] == time2tick(30_000)  # microseconds -> kernel ticks
    assert opts["jitter"] == time2tick(2_000)
    # no rate: sized for 1 Gbit/s x (30 + 2) ms = 2667 packets, twice
    assert opts["limit"] == 5334
    assert opts["loss"] == int(0.01 * U32)  # netem's probabilities scale 0..2^32-1
    assert opts["duplicate"] == int(0.005 * U32)
    assert opts.get_attr("TCA_NETEM_CORR")["loss_corr"] == int(0.25 * U32)
    assert opts.get_attr("TCA_NETEM_RATE") is None  # the rate is tbf's job


def test_reorder_and_corrupt() -> None:
    ((_, _, _, _, opts),) = _decoded(WanProfile(delay_ms=10, reorder_pct=5, corrupt_pct=0.1))
    assert opts.get_attr("TCA_NETEM_REORDER")["prob_reorder"] == int(0.05 * U32)
    assert opts["gap"] == 1  # netem reorders only with a gap (tc sets 1 too)
    assert opts.get_attr("TCA_NETEM_CORRUPT")["prob_corrupt"] == int(0.001 * U32)


def test_rate_is_tbf_above_netem() -> None:
    p = WanProfile(delay_ms=80, rate_mbit=100)
    (tbf, netem) = _decoded(p)
    kind, _, handle, parent, opts = tbf
    assert (kind, handle, parent) == ("tbf", TBF_HANDLE, TC_H_ROOT)
    parms = opts.get_attr("TCA_TBF_PARMS")
    assert parms["rate"] == 100_000_000 // 8  # bytes per second
    assert parms["buffer"] > 0
    kind, _, handle, parent, opts = netem
    assert (kind, handle, parent) == ("netem", NETEM_HANDLE, TBF_CLASS)
    assert opts["delay"] == time2tick(80_000)
    # limit from rate x delay: 100 Mbit/s x 80 ms = 667 packets, twice
    assert opts["limit"] == 1334


def test_loss_correlation_only_with_loss() -> None:
    ((_, _, _, _, opts),) = _decoded(WanProfile(delay_ms=1, loss_corr_pct=50))
    assert opts.get_attr("TCA_NETEM_CORR") is None
