"""Turn a validated spec and its address allocation into the resolved model.

Wiring (the picture in shared/design.md)::

    modality ── gw-a ══ wan ══ gw-b ── pacs

- A host's single interface is named after its gateway (``gw-a``) and carries a default route.
- A gateway has a bridge ``lan`` whose ports are named after its hosts, so a site may have any
  number of hosts, and an interface named after the WAN router towards the WAN.
- The WAN router has one interface per gateway, named after it.
"""

from __future__ import annotations

from lab.model.routing import components, with_routes
from lab.model.topology import (
    Family,
    Interface,
    IpsecAuth,
    IpsecScope,
    IpsecSettings,
    Node,
    Port,
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


def build_topology(spec: TopologySpec, alloc: Allocation, *, name: str, source: str) -> Topology:
    router = spec.wan.router
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
        segments.append(Segment(wan, SegmentKind.WAN, site, alloc.prefixes[wan], alloc.mtu[wan]))
        for host in s.hosts:
            gateway_of[host.name] = gw
            nodes.append(
                Node(host.name, Role(host.role), site, (_iface(alloc, host.name, lan, gw),))
            )
            wires.append(Wire(lan, Port(host.name, gw), Port(gw, host.name, LAN_BRIDGE)))
        nodes.append(
            Node(
                gw,
                Role.GATEWAY,
                site,
                (
                    _iface(alloc, gw, lan, LAN_BRIDGE, bridge=True),
                    _iface(alloc, gw, wan, router),
                ),
            )
        )
        wires.append(Wire(wan, Port(gw, router), Port(router, gw)))
        router_ifaces.append(_iface(alloc, router, wan, gw))
        sites.append(Site(site, s.description, lan, gw, tuple(h.name for h in s.hosts)))
    nodes.append(Node(router, Role.WAN, None, tuple(router_ifaces)))
    routed = with_routes(nodes, segments, gateway_of)
    return Topology(
        name=name,
        source=source,
        description=spec.description.strip(),
        sites=tuple(sites),
        wan_router=router,
        segments=tuple(segments),
        nodes=_ordered(routed, sites, router),
        wires=tuple(wires),
        security=_security(spec),
        notes=tuple(_notes(routed, sites)),
        archive_sync=spec.archive.sync,
    )


def _ordered(nodes: tuple[Node, ...], sites: list[Site], router: str) -> tuple[Node, ...]:
    """The picture's order: site A hosts, gw-a, wan, gw-b, site B hosts."""
    by_name = {n.name: n for n in nodes}
    first, second = sites
    names = [*first.hosts, first.gateway, router, second.gateway, *second.hosts]
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


def _security(spec: TopologySpec) -> Security:
    sec = spec.security
    ipsec = IpsecSettings(IpsecScope(sec.ipsec.scope), IpsecAuth(sec.ipsec.auth),
                          sec.ipsec.ike.lower(), sec.ipsec.esp.lower(), sec.ipsec.psk)
    return Security(SecurityMode(sec.mode), ipsec, TlsSettings(sec.tls.profile, sec.tls.port,
                                                                   sec.tls.cipher))
