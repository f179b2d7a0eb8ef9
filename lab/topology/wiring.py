"""Turn a validated spec and its address allocation into the resolved model.

Wiring (the picture in shared/design.md)::

    modality ── gw-a ══ wan ══ gw-b ── pacs

- A host's single interface is named after its gateway (``gw-a``) and carries a default route.
- A gateway has a bridge ``lan`` whose ports are named after its hosts, so a site may have any
  number of hosts, and an interface named after the WAN router towards the WAN.
- The WAN router has one interface per gateway, named after it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lab.model.routing import components, with_routes
from lab.model.topology import (
    Family,
    Interface,
    IpsecAuth,
    IpsecScope,
    IpsecSettings,
    Node,
    Port,
    RemotePeer,
    Role,
    Security,
    SecurityMode,
    Segment,
    SegmentKind,
    Site,
    TlsSettings,
    Topology,
    Wire,
)
from lab.topology import attached
from lab.topology.addressing import Allocation
from lab.topology.schema import TopologySpec

LAN_BRIDGE = "lan"


def _iface(
    alloc: Allocation, node: str, segment: str, name: str, *, bridge: bool = False
) -> Interface:
    return Interface(
        name=name,
        segment=segment,
        addresses=alloc.addresses[(node, segment)],
        mtu=alloc.mtu[segment],
        bridge=bridge,
    )


def build_topology(spec: TopologySpec, alloc: Allocation, *, name: str, source: str,
                   base: Path = Path()) -> Topology:
    """The model of a checked spec; ``base``: the folder relative file names start from."""
    router = spec.wan.router if spec.wan is not None else ""
    remote = (attached.remote_peer(spec.security.ipsec.remote, base)
              if spec.security.ipsec.remote is not None else None)
    segments: list[Segment] = []
    nodes: list[Node] = []
    wires: list[Wire] = []
    sites: list[Site] = []
    gateway_of: dict[str, str] = {}
    router_ifaces: list[Interface] = []
    for site, s in spec.sites.items():
        gw = s.gateway.name or f"gw-{site}"
        lan, wan = f"lan-{site}", f"wan-{site}"
        segments.append(Segment(lan, SegmentKind.LAN, site, alloc.prefixes[lan], alloc.mtu[lan]))
        for host in s.hosts:
            gateway_of[host.name] = gw
            nodes.append(
                Node(host.name, Role(host.role), site, (_iface(alloc, host.name, lan, gw),))
            )
            wires.append(Wire(lan, Port(host.name, gw), Port(gw, host.name, LAN_BRIDGE)))
        lan_iface = _iface(alloc, gw, lan, LAN_BRIDGE, bridge=True)
        up = s.gateway.uplink
        if up is not None:
            uplink = attached.uplink_interface(up, site)
            segments.append(Segment(uplink.segment, SegmentKind.UPLINK, site,
                                    tuple(a.network for a in uplink.addresses), uplink.mtu))
            nodes.append(Node(gw, Role.GATEWAY, site, (lan_iface, uplink)))
        else:
            segments.append(Segment(wan, SegmentKind.WAN, site, alloc.prefixes[wan],
                                    alloc.mtu[wan]))
            nodes.append(Node(gw, Role.GATEWAY, site, (lan_iface, _iface(alloc, gw, wan, router))))
            wires.append(Wire(wan, Port(gw, router), Port(router, gw)))
            router_ifaces.append(_iface(alloc, router, wan, gw))
        sites.append(Site(site, s.description, lan, gw, tuple(h.name for h in s.hosts)))
    if router:
        nodes.append(Node(router, Role.WAN, None, tuple(router_ifaces)))
    routed = _with_uplink_routes(spec, with_routes(nodes, segments, gateway_of), remote)
    return Topology(
        name=name,
        source=source,
        description=spec.description.strip(),
        sites=tuple(sites),
        wan_router=router,
        segments=tuple(segments),
        nodes=_ordered(routed, sites, router),
        wires=tuple(wires),
        security=_security(spec, remote),
        notes=tuple(_notes(routed, sites)) if len(sites) == 2 else (),
        archive_sync=spec.archive.sync,
    )


def _with_uplink_routes(spec: TopologySpec, nodes: tuple[Node, ...],
                        remote: RemotePeer | None) -> tuple[Node, ...]:
    """Gateways with an uplink route the remote LAN prefixes over it."""
    if remote is None:
        return nodes
    gateways = {s.gateway.name or f"gw-{site}": s.gateway.uplink
                for site, s in spec.sites.items() if s.gateway.uplink is not None}
    return tuple(replace(n, routes=n.routes + attached.uplink_routes(gateways[n.name], remote))
                 if n.name in gateways else n for n in nodes)


def _ordered(nodes: tuple[Node, ...], sites: list[Site], router: str) -> tuple[Node, ...]:
    """The picture's order: site A hosts, gw-a, wan, gw-b, site B hosts (one site attached to
    a real network: its hosts and its gateway)."""
    by_name = {n.name: n for n in nodes}
    first, *rest = sites
    names = [*first.hosts, first.gateway]
    if rest:
        names += [router, rest[0].gateway, *rest[0].hosts]
    return tuple(by_name[n] for n in names)


def _notes(nodes: tuple[Node, ...], sites: list[Site]) -> list[str]:
    """Plain statements about what cannot reach what, e.g. for a mixed topology."""
    notes = []
    first, second = sites
    for family in Family:
        groups = components(nodes, family)
        a_hosts = [h for h in first.hosts if any(h in g for g in groups)]
        b_hosts = [h for h in second.hosts if any(h in g for g in groups)]
        if not a_hosts or not b_hosts:
            continue
        if not any(a_hosts[0] in g and b_hosts[0] in g for g in groups):
            notes.append(
                f"The {family.label} site LANs are not routed across the WAN, which does not carry "
                f"{family.label}: hosts at site {first.name} ({', '.join(a_hosts)}) cannot reach "
                f"hosts at site {second.name} ({', '.join(b_hosts)}). The sites need the IPsec "
                f"tunnel between {first.gateway} and {second.gateway} to reach each other."
            )
    return notes


def _security(spec: TopologySpec, remote: RemotePeer | None) -> Security:
    sec = spec.security
    auth = remote.auth if remote is not None else IpsecAuth(sec.ipsec.auth)
    ipsec = IpsecSettings(IpsecScope(sec.ipsec.scope), auth,
                          sec.ipsec.ike.lower(), sec.ipsec.esp.lower(), sec.ipsec.psk, remote)
    return Security(SecurityMode(sec.mode), ipsec, TlsSettings(sec.tls.profile, sec.tls.port,
                                                                   sec.tls.cipher))
