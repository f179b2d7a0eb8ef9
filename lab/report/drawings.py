"""``teleradlab graph``: a drawing of a topology for teaching material (SVG and PNG).

Left to right: site A's hosts, its gateway, the WAN router, site B's gateway and hosts; every
link labelled with its segment's prefixes, every node with its interfaces' addresses, the
security mode drawn where it acts (an ESP tunnel between the gateways for IPsec, end to end
between the DICOM nodes for TLS) and the WAN profile on the WAN router. Reads only the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lab.model.topology import Node, Role, SecurityMode, Site, Topology
from lab.report.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLORS = {Role.MODALITY: "#cfe2ff", Role.PACS: "#d1e7dd", Role.WORKSTATION: "#e2e3e5",
          Role.GATEWAY: "#fff3cd", Role.WAN: "#f8d7da"}
XS = (0.0, 4.2, 8.4, 12.6, 16.8)  # hosts A, gateway A, WAN, gateway B, hosts B


def _positions(topology: Topology) -> dict[str, tuple[float, float]]:
    pos: dict[str, tuple[float, float]] = {topology.wan_router: (XS[2], 0.0)}
    for site, (x_host, x_gw) in zip(topology.sites, ((XS[0], XS[1]), (XS[4], XS[3])),
                                    strict=False):
        pos[site.gateway] = (x_gw, 0.0)
        n = len(site.hosts)
        for i, host in enumerate(site.hosts):
            pos[host] = (x_host, (n - 1) * 1.6 - i * 3.2)
    return pos


def _label(node: Node) -> str:
    lines = [f"{node.name} ({node.role.value})"]
    for iface in node.interfaces:
        for addr in iface.addresses:
            lines.append(f"{iface.name}: {addr}")
    return "\n".join(lines)


def _draw_node(ax: Axes, node: Node, xy: tuple[float, float]) -> None:
    ax.text(xy[0], xy[1], _label(node), ha="center", va="center", fontsize=7, zorder=3,
            family="monospace",
            bbox={"boxstyle": "round,pad=0.4", "fc": COLORS[node.role], "ec": "#333333"})


def _link(ax: Axes, a: tuple[float, float], b: tuple[float, float], text: str) -> None:
    ax.plot([a[0], b[0]], [a[1], b[1]], color="#444444", lw=2, zorder=1)
    ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 - 0.95, text, ha="center", fontsize=6.5,
            color="#0b5394", zorder=2, bbox={"fc": "white", "ec": "none", "pad": 1})


def _site_box(ax: Axes, site: Site, pos: dict[str, tuple[float, float]], text: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    xs = [pos[n][0] for n in (site.gateway, *site.hosts)]
    ys = [pos[n][1] for n in (site.gateway, *site.hosts)]
    x0, y0 = min(xs) - 1.4, min(ys) - 1.5
    ax.add_patch(FancyBboxPatch((x0, y0), max(xs) - min(xs) + 2.8, max(ys) - min(ys) + 3.2,
                                boxstyle="round,pad=0.1", fc="none", ec="#888888", ls="--"))
    ax.text(x0 + 0.1, max(ys) + 1.85, text, fontsize=8, va="bottom", color="#555555")


def _security(ax: Axes, topology: Topology, pos: dict[str, tuple[float, float]]) -> str:
    mode = topology.security.mode
    if mode is SecurityMode.IPSEC:
        (xa, ya), (xb, yb) = (pos[s.gateway] for s in topology.sites)
        ax.annotate("", (xb, yb - 1.3), (xa, ya - 1.3),
                    arrowprops={"arrowstyle": "<->", "color": "#b45f06", "lw": 2, "ls": "--"})
        ax.text((xa + xb) / 2, ya - 1.7, "IPsec ESP tunnel (gateway to gateway)",
                ha="center", fontsize=8, color="#b45f06")
    elif mode is SecurityMode.TLS:
        ends = [n for n in topology.nodes if n.role in (Role.MODALITY, Role.PACS)]
        if len(ends) == 2:
            (xa, ya), (xb, yb) = pos[ends[0].name], pos[ends[1].name]
            ax.annotate("", (xb, yb - 1.3), (xa, ya - 1.3),
                        arrowprops={"arrowstyle": "<->", "color": "#38761d", "lw": 2, "ls": ":"})
            ax.text((xa + xb) / 2, min(ya, yb) - 1.7, "DICOM TLS (PS3.15 Annex B), end to end",
                    ha="center", fontsize=8, color="#38761d")
    return mode.value


def _prefixes(topology: Topology, segment: str) -> str:
    return ", ".join(str(p) for p in topology.segment(segment).prefixes)


def draw(topology: Topology, out: Path, wan: str | None = None) -> tuple[Path, Path]:
    """Write ``out/NAME.svg`` and ``out/NAME.png``; return their paths."""
    pos = _positions(topology)
    height = max(4.0, max(abs(y) for _, y in pos.values()) * 2 + 4)
    from matplotlib import rc_context

    fig = new_figure(15, height * 0.55)
    ax = fig.subplots()
    for site in topology.sites:
        gw = topology.node(site.gateway)
        for host in site.hosts:
            _link(ax, pos[host], pos[site.gateway], _prefixes(topology, site.lan))
        wan_iface = next(i for i in gw.interfaces if i.segment != site.lan)
        _link(ax, pos[site.gateway], pos[topology.wan_router],
              _prefixes(topology, wan_iface.segment))
        _site_box(ax, site, pos, f"site {site.name}: {site.description}"[:70])
    for node in topology.nodes:
        _draw_node(ax, node, pos[node.name])
    mode = _security(ax, topology, pos)
    wx, wy = pos[topology.wan_router]
    ax.text(wx, wy + 1.6, f"WAN profile: {wan or 'unimpaired'}", ha="center", fontsize=8,
            color="#990000")
    ax.set_title(f"{topology.name}: {topology.description}\nsecurity: {mode}; "
                 f"WAN: {wan or 'unimpaired'}", fontsize=9)
    ax.set_xlim(XS[0] - 2.2, XS[4] + 2.2)
    ax.set_ylim(-height / 2, height / 2 + 0.6)
    ax.set_axis_off()
    out.mkdir(parents=True, exist_ok=True)
    svg, png = out / f"{topology.name}.svg", out / f"{topology.name}.png"
    with rc_context({"svg.fonttype": "none"}):  # text stays text (editable)
        fig.savefig(svg, format="svg", bbox_inches="tight")
    fig.savefig(png, format="png", dpi=120, bbox_inches="tight")
    return svg, png
