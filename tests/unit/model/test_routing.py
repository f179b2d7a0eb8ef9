"""Static routes and expected reachability, derived from the model alone."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network
from itertools import combinations
from pathlib import Path

import pytest
from conftest import side_effects, topology

from lab.model.routing import components, probes, with_routes
from lab.model.topology import Family, Interface, Node, Role, Route, Segment, SegmentKind, Topology
from lab.topology import load, shipped_dir

V4, V6 = Family.IPV4, Family.IPV6


def shipped(name: str) -> Topology:
    return load(shipped_dir() / f"{name}.yaml")


def routes(topo: Topology, node: str) -> set[tuple[str, str, str]]:
    return {(str(r.destination), str(r.gateway), r.interface) for r in topo.node(node).routes}


def test_the_purity_check_sees_writes(tmp_path: Path) -> None:
    """The recorder behind every refusal test must not be vacuous."""
    with side_effects() as seen:
        (tmp_path / "x").write_text("x")
        (tmp_path / "d").mkdir()
    assert len(seen) == 2


# --- routes in the resolved model -----------------------------------------------------------


def test_gateways_route_remote_prefixes_via_the_wan_router() -> None:
    topo = shipped("dualstack")
    assert routes(topo, "gw-a") == {
        ("198.18.2.0/24", "198.19.1.1", "wan"),
        ("198.19.2.0/24", "198.19.1.1", "wan"),
        ("2001:db8:2::/64", "2001:db8:ff01::1", "wan"),
        ("2001:db8:ff02::/64", "2001:db8:ff01::1", "wan"),
    }
    assert routes(topo, "gw-b") == {
        ("198.18.1.0/24", "198.19.2.1", "wan"),
        ("198.19.1.0/24", "198.19.2.1", "wan"),
        ("2001:db8:1::/64", "2001:db8:ff02::1", "wan"),
        ("2001:db8:ff01::/64", "2001:db8:ff02::1", "wan"),
    }


def test_wan_router_routes_each_lan_via_its_gateway() -> None:
    topo = shipped("dualstack")
    assert routes(topo, "wan") == {
        ("198.18.1.0/24", "198.19.1.2", "gw-a"),
        ("198.18.2.0/24", "198.19.2.2", "gw-b"),
        ("2001:db8:1::/64", "2001:db8:ff01::2", "gw-a"),
        ("2001:db8:2::/64", "2001:db8:ff02::2", "gw-b"),
    }


def test_routes_follow_renamed_nodes() -> None:
    topo = topology({"sites.a.gateway.name": "edge-a", "wan.router": "carrier"})
    assert ("198.18.2.0/24", "198.19.1.1", "carrier") in routes(topo, "edge-a")
    assert ("198.18.1.0/24", "198.19.1.2", "edge-a") in routes(topo, "carrier")
    assert routes(topo, "modality") == {
        ("0.0.0.0/0", "198.18.1.1", "edge-a"),
        ("::/0", "2001:db8:1::1", "edge-a"),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ipv4", {("0.0.0.0/0", "198.18.1.1", "gw-a")}),
        ("ipv6", {("::/0", "2001:db8:1::1", "gw-a")}),
        ("dualstack", {("0.0.0.0/0", "198.18.1.1", "gw-a"), ("::/0", "2001:db8:1::1", "gw-a")}),
        ("mixed-4over6", {("0.0.0.0/0", "198.18.1.1", "gw-a")}),
        ("mixed-6over4", {("::/0", "2001:db8:1::1", "gw-a")}),
    ],
)
def test_hosts_default_route_via_their_gateway_per_family(
    name: str, expected: set[tuple[str, str, str]]
) -> None:
    assert routes(shipped(name), "modality") == expected


def test_every_host_of_a_site_routes_via_its_own_gateway() -> None:
    topo = shipped("ipv6")
    assert routes(topo, "pacs") == {("::/0", "2001:db8:2::1", "gw-b")}
    assert routes(topo, "workstation") == {("::/0", "2001:db8:2::1", "gw-b")}


def test_mixed_has_no_route_between_the_site_lans() -> None:
    topo = shipped("mixed-4over6")
    # Only the far WAN link is routed, in IPv6; nothing leads to the other IPv4 LAN.
    assert routes(topo, "gw-a") == {("2001:db8:ff02::/64", "2001:db8:ff01::1", "wan")}
    assert routes(topo, "gw-b") == {("2001:db8:ff01::/64", "2001:db8:ff02::1", "wan")}
    assert routes(topo, "wan") == set()


# --- components and probes ------------------------------------------------------------------


def test_components_dualstack_is_one_island_per_family() -> None:
    topo = shipped("dualstack")
    everyone = frozenset(topo.node_names)
    assert components(topo.nodes, V4) == [everyone]
    assert components(topo.nodes, V6) == [everyone]


def test_components_mixed_splits_the_lan_family_at_the_wan() -> None:
    topo = shipped("mixed-4over6")
    assert components(topo.nodes, V4) == [
        frozenset({"modality", "gw-a"}),
        frozenset({"gw-b", "pacs"}),
    ]
    assert components(topo.nodes, V6) == [frozenset({"gw-a", "wan", "gw-b"})]


def test_components_leave_out_nodes_without_the_family() -> None:
    topo = shipped("ipv4")
    assert components(topo.nodes, V6) == []
    assert probes(topo.nodes, [V6]) == []


def test_dualstack_probes_cover_both_families() -> None:
    topo = shipped("dualstack")
    found = probes(topo.nodes)
    order = topo.node_names
    for family in Family:
        pairs = {(p.source, p.destination) for p in found if p.family is family}
        assert pairs == set(combinations(order, 2))
        targets = {p.target for p in found if p.family is family and p.destination == "gw-b"}
        assert targets == {a.ip for a in topo.node("gw-b").addresses(family)}
    assert {(p.source, p.destination, str(p.target)) for p in found} >= {
        ("modality", "pacs", "198.18.2.10"),
        ("modality", "pacs", "2001:db8:2::10"),
    }
    # Each pair is probed once, from the node listed first.
    assert all(order.index(p.source) < order.index(p.destination) for p in found)
    assert len(found) == len(set(found))


def test_probes_can_be_limited_to_one_family() -> None:
    topo = shipped("dualstack")
    found = probes(topo.nodes, [V6])
    assert found
    assert {p.family for p in found} == {V6}


@pytest.mark.parametrize(("name", "lan"), [("mixed-4over6", V4), ("mixed-6over4", V6)])
def test_mixed_probes_never_cross_sites_in_the_lan_family(name: str, lan: Family) -> None:
    topo = shipped(name)
    site = {n.name: n.site for n in topo.nodes}
    lan_probes = [p for p in probes(topo.nodes) if p.family is lan]
    assert {(p.source, p.destination) for p in lan_probes} == {
        ("modality", "gw-a"),
        ("gw-b", "pacs"),
    }
    assert all(site[p.source] == site[p.destination] for p in lan_probes)
    wan_probes = [p for p in probes(topo.nodes) if p.family is not lan]
    assert {p.source for p in wan_probes} | {p.destination for p in wan_probes} == {
        "gw-a",
        "wan",
        "gw-b",
    }


@pytest.mark.parametrize("name", ["ipv4", "ipv6", "dualstack"])
def test_uniform_topologies_probe_modality_to_pacs(name: str) -> None:
    topo = shipped(name)
    found = probes(topo.nodes)
    for family in topo.families:
        assert any(
            (p.source, p.destination, p.family) == ("modality", "pacs", family) for p in found
        )


# --- with_routes on a hand-built chain (more hops than the two-site picture) ----------------


def _node(name: str, role: Role, *ifaces: tuple[str, str, str]) -> Node:
    return Node(
        name,
        role,
        None,
        tuple(Interface(i, seg, (ip_interface(addr),), 1500) for i, seg, addr in ifaces),
    )


def test_with_routes_uses_the_first_hop_of_a_shortest_path() -> None:
    #   h0 -lan0- r1 -s1- r2 -s2- r3 -lan3- h3
    nodes = [
        _node("h0", Role.WORKSTATION, ("r1", "lan0", "10.0.0.10/24")),
        _node("r1", Role.GATEWAY, ("lan", "lan0", "10.0.0.1/24"), ("r2", "s1", "10.0.1.1/24")),
        _node("r2", Role.WAN, ("r1", "s1", "10.0.1.2/24"), ("r3", "s2", "10.0.2.2/24")),
        _node("r3", Role.GATEWAY, ("r2", "s2", "10.0.2.3/24"), ("lan", "lan3", "10.0.3.1/24")),
        _node("h3", Role.WORKSTATION, ("r3", "lan3", "10.0.3.10/24")),
    ]
    segments = [
        Segment(s, SegmentKind.LAN, "x", (ip_network(p),), 1500)
        for s, p in [
            ("lan0", "10.0.0.0/24"),
            ("s1", "10.0.1.0/24"),
            ("s2", "10.0.2.0/24"),
            ("lan3", "10.0.3.0/24"),
        ]
    ]
    routed = {n.name: n for n in with_routes(nodes, segments, {"h0": "r1", "h3": "r3"})}

    def r(dest: str, via: str, ifname: str) -> Route:
        return Route(ip_network(dest), ip_address(via), ifname)

    assert set(routed["r1"].routes) == {
        r("10.0.2.0/24", "10.0.1.2", "r2"),
        r("10.0.3.0/24", "10.0.1.2", "r2"),
    }
    assert set(routed["r2"].routes) == {
        r("10.0.0.0/24", "10.0.1.1", "r1"),
        r("10.0.3.0/24", "10.0.2.3", "r3"),
    }
    assert set(routed["r3"].routes) == {
        r("10.0.0.0/24", "10.0.2.2", "r2"),
        r("10.0.1.0/24", "10.0.2.2", "r2"),
    }
    assert routed["h0"].routes == (r("0.0.0.0/0", "10.0.0.1", "r1"),)
    assert routed["h3"].routes == (r("0.0.0.0/0", "10.0.3.1", "r3"),)
    assert components(list(routed.values()), V4) == [frozenset(routed)]
    # The input is left alone (frozen dataclasses, new nodes returned).
    assert all(n.routes == () for n in nodes)
