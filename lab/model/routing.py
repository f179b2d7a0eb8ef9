"""Static routing and expected reachability, derived from the model alone (pure functions).

Per address family the nodes form a graph whose edges are the segments carrying that family.
Routers get a static route to every prefix they can reach (next hop = first hop of a shortest
path); hosts get a default route via their site's gateway. Two nodes should reach each other in a
family exactly when they are connected in that family's graph — for a mixed topology (IPv4 sites
over an IPv6 WAN) the site LANs are separate islands until a tunnel joins them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import ip_network

from lab.model.topology import Family, IPAddress, IPNetwork, Node, Probe, Route, Segment


@dataclass(frozen=True)
class _Edge:
    neighbour: str
    via: IPAddress  # the neighbour's address on the shared segment
    interface: str  # our interface towards it


def _graph(nodes: Sequence[Node], family: Family) -> dict[str, list[_Edge]]:
    """Adjacency of nodes sharing a segment on which both have an address of ``family``."""
    on_segment: dict[str, list[tuple[Node, str, IPAddress]]] = {}
    for node in nodes:
        for iface in node.interfaces:
            addr = iface.address(family)
            if addr is not None:
                on_segment.setdefault(iface.segment, []).append((node, iface.name, addr.ip))
    graph: dict[str, list[_Edge]] = {n.name: [] for n in nodes}
    for members in on_segment.values():
        for node, ifname, _ in members:
            for other, _, other_addr in members:
                if other.name != node.name:
                    graph[node.name].append(_Edge(other.name, other_addr, ifname))
    return graph


def _first_hops(graph: dict[str, list[_Edge]], start: str) -> dict[str, tuple[_Edge, int]]:
    """Breadth-first search: for every reachable node, the first edge of a shortest path to it
    and the path's length in hops."""
    first: dict[str, tuple[_Edge, int]] = {}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for edge in graph[here]:
            if edge.neighbour == start or edge.neighbour in first:
                continue
            first[edge.neighbour] = (
                (first[here][0], first[here][1] + 1) if here != start else (edge, 1)
            )
            queue.append(edge.neighbour)
    return first


def components(nodes: Sequence[Node], family: Family) -> list[frozenset[str]]:
    """Groups of nodes that can reach each other in ``family`` (only nodes with such addresses)."""
    graph = _graph(nodes, family)
    groups: list[frozenset[str]] = []
    placed: set[str] = set()
    for node in nodes:
        if node.name in placed or not node.addresses(family):
            continue
        group = frozenset({node.name, *_first_hops(graph, node.name)})
        placed |= group
        groups.append(group)
    return groups


def _router_routes(node: Node, nodes: Sequence[Node], segments: Sequence[Segment]) -> list[Route]:
    routes: list[Route] = []
    attached = {i.segment for i in node.interfaces}
    for family in Family:
        hops = _first_hops(_graph(nodes, family), node.name)
        for segment in segments:
            prefix = segment.prefix(family)
            if prefix is None or segment.name in attached:
                continue
            members = [
                n.name
                for n in nodes
                if n.role.is_router
                and n.name in hops
                and any(i.segment == segment.name and i.address(family) for i in n.interfaces)
            ]
            if members:
                # Deterministic: the nearest member, ties broken by name.
                edge = hops[min(members, key=lambda m: (hops[m][1], m))][0]
                routes.append(Route(prefix, edge.via, edge.interface))
    return routes


def _host_routes(node: Node, nodes: Sequence[Node], gateway: str) -> list[Route]:
    gw = next(n for n in nodes if n.name == gateway)
    routes: list[Route] = []
    for iface in node.interfaces:
        for addr in iface.addresses:
            family = Family.of(addr)
            gw_addr = next(
                (
                    a
                    for i in gw.interfaces
                    if i.segment == iface.segment
                    for a in i.addresses
                    if Family.of(a) is family
                ),
                None,
            )
            if gw_addr is not None:
                default: IPNetwork = ip_network("0.0.0.0/0" if family is Family.IPV4 else "::/0")
                routes.append(Route(default, gw_addr.ip, iface.name))
    return routes


def with_routes(
    nodes: Sequence[Node], segments: Sequence[Segment], gateways: dict[str, str]
) -> tuple[Node, ...]:
    """Return ``nodes`` with static routes filled in. ``gateways`` maps host -> its gateway."""
    out: list[Node] = []
    for node in nodes:
        if node.role.is_router:
            routes = _router_routes(node, nodes, segments)
        else:
            routes = _host_routes(node, nodes, gateways[node.name])
        out.append(replace(node, routes=tuple(routes)))
    return tuple(out)


def probes(nodes: Sequence[Node], families: Iterable[Family] = tuple(Family)) -> list[Probe]:
    """Every (source, target address) pair that must answer a ping, per family.

    Each unordered pair of nodes in one component is probed once, from the node listed first, to
    every address the other has in that family; an echo reply proves the path both ways.
    """
    out: list[Probe] = []
    order = {n.name: i for i, n in enumerate(nodes)}
    by_name = {n.name: n for n in nodes}
    for family in families:
        for group in components(nodes, family):
            members = sorted(group, key=order.__getitem__)
            for i, src in enumerate(members):
                for dst in members[i + 1 :]:
                    for addr in by_name[dst].addresses(family):
                        out.append(Probe(src, dst, addr.ip))
    return out
