"""The report's figures (matplotlib, Agg backend, no display needed), each returned as PNG bytes.

Every figure is always drawn: when the results hold nothing to plot, the figure says so in words
(and why), so a reader never mistakes a missing figure for a missing feature of the report.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.report import bounds
from lab.report.data import (
    by_repetition,
    config_label,
    family_label,
    group,
    measured,
    summarise,
    throughput_mbit,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Records = list[dict[str, Any]]
COLORS = {"ipv4": "#1f77b4", "ipv6": "#d62728"}


@dataclass(frozen=True)
class Chart:
    """A figure: file stem, title, caption, PNG bytes, and whether it shows any data."""

    name: str
    title: str
    caption: str
    png: bytes
    has_data: bool


def new_figure(width: float, height: float) -> Figure:
    """A figure of its own, outside pyplot's global state (no backend, no display: saving it
    uses Agg). matplotlib is imported here, at the first drawing, so that commands which draw
    nothing (``teleradlab --help``, ``up``, ``run``) do not spend a quarter second loading it."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _no_data(ax: Axes, why: str) -> None:
    ax.set_axis_off()
    text = "\n".join(textwrap.fill(line, 48) for line in why.splitlines())
    ax.text(0.5, 0.5, f"no data\n{text}", ha="center", va="center", fontsize=11,
            color="#555555", transform=ax.transAxes)


def _bars(ax: Axes, records: Records, value: str, ylabel: str, why: str) -> bool:
    """Grouped bars: x = configuration, one bar per family, mean with 95% interval."""
    if not records:
        _no_data(ax, why)
        return False
    configs = sorted({config_label(r) for r in records})
    families = sorted({r["family"] for r in records})
    width = 0.8 / len(families)
    for j, fam in enumerate(families):
        xs, means, errs = [], [], []
        for i, cfg in enumerate(configs):
            sel = [r for r in records if r["family"] == fam and config_label(r) == cfg]
            s = (by_repetition(sel) if value == "mbit"
                 else summarise(float(r[value]) for r in sel))
            if s:
                xs.append(i + (j - (len(families) - 1) / 2) * width)
                means.append(s.mean)
                errs.append(s.half or 0.0)
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=family_label(fam),
               color=COLORS.get(fam, "#7f7f7f"))
    ax.set_xticks(range(len(configs)), configs, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return True


def throughput_by_config(records: Records) -> Chart:
    fig = new_figure(11, 4.2)
    axes = fig.subplots(1, 2)
    ok = False
    for ax, op in zip(axes, ("store", "move"), strict=True):
        ok |= _bars(ax, measured(records, op), "mbit", "throughput (Mbit/s)",
                    f"no successful C-{op.upper()} in these results")
        ax.set_title(f"C-{op.upper()}")
    return Chart("throughput", "Throughput by security configuration and family",
                 "Per repetition, all bytes over all seconds (every modality and PDU size "
                 "together); mean over repetitions with its 95% interval (Student's t).",
                 _png(fig), ok)


def _pdu_name(pdu: int) -> str:
    return "unlimited" if pdu == 0 else f"{pdu // 1024} KiB"


def pdu_effect(records: Records) -> Chart:
    rows = measured(records, "store")
    pdus = sorted({int(r["pdu"]) for r in rows}, key=lambda p: p or math.inf)
    fig = new_figure(8, 4.2)
    ax = fig.subplots()
    if len(pdus) < 2:
        _no_data(ax, "the results hold fewer than two PDU sizes" if rows
                 else "no successful C-STORE in these results")
    else:
        for (fam, cfg), rs in sorted(group(rows, lambda r: (r["family"], config_label(r))).items()):
            pts = [(i, by_repetition(r for r in rs if int(r["pdu"]) == p))
                   for i, p in enumerate(pdus)]
            xs = [i for i, s in pts if s]
            ys = [s.mean for _, s in pts if s]
            es = [s.half or 0.0 for _, s in pts if s]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{family_label(fam)} {cfg}")
        ax.set_xticks(range(len(pdus)), [_pdu_name(p) for p in pdus])
        ax.set_xlabel("maximum PDU length (PS3.8 9.3.1)")
        ax.set_ylabel("C-STORE throughput (Mbit/s)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return Chart("pdu", "Effect of the PDU size", "C-STORE throughput by maximum PDU length, "
                 "mean and 95% interval.", _png(fig), len(pdus) >= 2)


def setup_times(records: Records) -> Chart:
    fig = new_figure(11, 4.2)
    axes = fig.subplots(1, 2)
    assoc = [r for r in measured(records, "store") if float(r["setup_seconds"]) > 0]
    hand = [r for r in measured(records, "store") if float(r["handshake_seconds"]) > 0]
    a = _bars(axes[0], assoc, "setup_seconds", "seconds",
              "no association setup time was recorded")
    axes[0].set_title("DICOM association setup (A-ASSOCIATE)")
    h = _bars(axes[1], hand, "handshake_seconds", "seconds",
              "no TLS handshake or IKE setup was measured\n(no case ran with TLS or IPsec)")
    axes[1].set_title("TLS handshake / IKE_SA + CHILD_SA setup")
    return Chart("setup", "Handshake and IKE setup times", "Association setup per C-STORE, and "
                 "the security layer's own setup where one ran; mean and 95% interval.",
                 _png(fig), a or h)


def _wan_rows(records: Records) -> list[tuple[dict[str, Any], bounds.WanShape]]:
    out = []
    for r in measured(records, "store"):
        shape = bounds.row_shape(r)
        if shape:
            out.append((r, shape))
    return out


def _draw_wan(axes: Sequence[Axes], rows: list[tuple[dict[str, Any], bounds.WanShape]]) -> None:
    rtts = sorted({s.rtt for _, s in rows})
    grid = [max(rtts) * 1.3 * i / 60 + 1e-3 for i in range(1, 61)]
    axes[0].plot([g * 1000 for g in grid], [bounds.window_bound(g) / 1e6 for g in grid], "k--",
                 label=f"window/RTT, W = {bounds.DEFAULT_WINDOW_BYTES >> 20} MiB")
    for rate in sorted({s.rate for _, s in rows if s.rate}):
        axes[0].axhline(rate / 1e6, color="grey", lw=0.8, ls=":")
    losses = sorted({s.loss for _, s in rows if s.loss > 0}) or [0.01]
    pgrid = [min(losses) / 10 * (max(losses) * 30 / min(losses)) ** (i / 60) for i in range(61)]
    for i, rtt in enumerate(rtts):
        axes[1].plot([p * 100 for p in pgrid],
                     [bounds.mathis_bound(rtt, p) / 1e6 for p in pgrid], color="black",
                     ls=("--", ":", "-.")[i % 3], label=f"Mathis bound, RTT {rtt * 1000:.0f} ms")
    series = sorted(group(rows, lambda x: (x[0]["family"], config_label(x[0], wan=False))).items())
    for n, ((fam, cfg), pts) in enumerate(series):
        # C0..C9: matplotlib's default cycle (the tab10 palette)
        style: dict[str, Any] = {"color": f"C{n % 10}", "marker": "o", "ls": "none",
                                 "label": f"{family_label(fam)} {cfg}"}
        axes[0].plot([s.rtt * 1000 for _, s in pts], [throughput_mbit(r) for r, _ in pts],
                     **style)
        lossy = [(r, s) for r, s in pts if s.loss > 0]  # no point on a log axis at loss 0
        axes[1].plot([s.loss * 100 for _, s in lossy], [throughput_mbit(r) for r, _ in lossy],
                     **style)
    if not any(s.loss > 0 for _, s in rows):
        axes[1].text(0.5, 0.9, "no WAN profile with loss in these results", ha="center",
                     transform=axes[1].transAxes, color="#555555")
    axes[0].set_xlabel("round-trip time (ms)")
    axes[1].set_xlabel("loss (%)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("C-STORE throughput (Mbit/s)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")


def wan_bounds(records: Records) -> Chart:
    rows = _wan_rows(records)
    fig = new_figure(11, 4.4)
    axes = fig.subplots(1, 2)
    if rows:
        _draw_wan(axes, rows)
    else:
        asked = sorted({r["case_wan"] for r in records if r["case_wan"] not in ("", "none")})
        why = (f"WAN profiles were asked for ({', '.join(asked)}) but no case with one succeeded"
               if asked else "no case ran over a WAN profile with delay")
        for ax in axes:
            _no_data(ax, why)
    return Chart("wan", "Throughput against RTT and loss, with the TCP bounds",
                 "Each C-STORE over a WAN profile (RTT and loss as the profile states them); "
                 "dashed: the window bound W/RTT and Mathis et al.'s MSS/(RTT·√p)·C, "
                 "dotted: the profile's rate.", _png(fig), bool(rows))


def _study_seconds(r: dict[str, Any]) -> float:
    """A C-STORE's time from the association request to the last response."""
    return float(r["seconds"]) + float(r["setup_seconds"])


def _draw_against(ax: Axes, rows: Records, x: str, series: Any) -> int:
    """Time of the study against column ``x``, one line per ``series(row)``; the link's bound
    (bytes at the WAN's rate, lab.report.bounds) dotted in the line's colour. Returns how many
    lines had two points or more."""
    lines = 0
    ticks: set[int] = set()
    for n, (label, rs) in enumerate(sorted(group(rows, series).items())):
        xs = sorted({int(r[x]) for r in rs})
        if len(xs) < 2:
            continue
        lines += 1
        pts = [(v, summarise(_study_seconds(r) for r in rs if int(r[x]) == v)) for v in xs]
        ax.errorbar([v for v, s in pts if s], [s.mean for _, s in pts if s],
                    yerr=[s.half or 0.0 for _, s in pts if s], capsize=3,
                    marker="osD^v<>"[n // 10 % 7], color=f"C{n % 10}", label=label)
        ticks.update(xs)
        shape = bounds.row_shape(rs[0])
        if shape and shape.rate:
            ax.axhline(bounds.study_bound(int(rs[0]["bytes"]), shape.rate, shape.rtt),
                       color=f"C{n % 10}", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    ax.set_ylabel("C-STORE of the study (s, log scale)")
    ax.grid(alpha=0.3, which="both")
    if lines:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    return lines


def concurrency(records: Records) -> Chart:
    """Time of a study against the asynchronous operations window (one association) and
    against the number of parallel associations (Maani et al. 2012), per WAN and security."""
    rows = measured(records, "store")
    fig = new_figure(12, 5.5)
    axes = fig.subplots(1, 2)

    def key(r: dict[str, Any]) -> str:
        return f"{family_label(r['family'])} {config_label(r)} {r['modality']}"

    left = _draw_against(axes[0], [r for r in rows if int(r["associations"]) == 1], "window",
                         key)
    right = _draw_against(axes[1], rows, "associations",
                          lambda r: f"{key(r)}, window {int(r['window'])}")
    axes[0].set_xlabel("asynchronous operations window granted (PS3.7 D.3.3.3)")
    axes[1].set_xlabel("parallel associations")
    for ax, drawn, what in ((axes[0], left, "window sizes (one association)"),
                            (axes[1], right, "association counts")):
        if not drawn:
            _no_data(ax, f"no configuration was run with two or more {what}"
                     if rows else "no successful C-STORE in these results")
    return Chart("concurrency", "Time of a study against the window and parallel associations",
                 "Each C-STORE of a study, association setup included; mean and 95% interval "
                 "over repetitions; dotted: the study's bytes at the WAN's rate plus the setup "
                 "round trips (the bound the benchmark compares against).",
                 _png(fig), bool(left or right))


def all_charts(records: Records) -> list[Chart]:
    return [throughput_by_config(records), pdu_effect(records), setup_times(records),
            wan_bounds(records), concurrency(records)]
