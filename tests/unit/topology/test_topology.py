"""Topology files: every refusal names the file, the field path and the bad value, and creates
nothing; every shipped topology loads into the design picture."""

from __future__ import annotations

from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DELETE,
    SOURCE,
    baseline,
    dump,
    invalid,
    problem,
    side_effects,
    topology,
)

from lab.errors import TopologyError
from lab.model.routing import probes
from lab.model.topology import Family, Role, SecurityMode, Topology
from lab.topology import load, parse, shipped, shipped_dir

# --- bad input: one case per test -----------------------------------------------------------

# (changes to the baseline, field path of the problem, fragments its message must contain)
CASES: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    # unknown keys, at every level
    "unknown-key-top": ({"colour": "blue"}, "colour", ("unknown key", "'blue'")),
    "unknown-key-site": ({"sites.a.colour": "blue"}, "sites.a.colour", ("unknown key", "'blue'")),
    "unknown-key-lan": (
        {"sites.a.lan.prefix": "198.18.1.0/24"},
        "sites.a.lan.prefix",
        ("unknown key", "'198.18.1.0/24'"),
    ),
    "unknown-key-host": (
        {"sites.b.hosts[0].address": "198.18.2.5"},
        "sites.b.hosts[0].address",
        ("unknown key", "'198.18.2.5'"),
    ),
    "unknown-key-wan": ({"wan.delay": "10ms"}, "wan.delay", ("unknown key", "'10ms'")),
    # duplicate node names
    "duplicate-host-across-sites": (
        {"sites.b.hosts[0].name": "modality"},
        "sites.b.hosts[0].name",
        ("duplicate node name", "'modality'", "sites.a.hosts[0].name"),
    ),
    "host-named-like-gateway": (
        {"sites.a.hosts[0].name": "gw-a"},
        "sites.a.hosts[0].name",
        ("duplicate node name", "'gw-a'", "sites.a.gateway.name"),
    ),
    "host-named-wan": (
        {"sites.b.hosts[0].name": "wan"},
        "sites.b.hosts[0].name",
        ("duplicate node name", "'wan'", "wan.router"),
    ),
    # overlapping prefixes
    "overlapping-lans": (
        {"sites.b.lan.ipv4": "198.18.1.128/25"},
        "sites.b.lan.ipv4",
        ("'198.18.1.128/25'", "overlaps", "sites.a.lan.ipv4", "198.18.1.0/24"),
    ),
    "lan-overlaps-wan-link": (
        {"wan.links.a.ipv6": "2001:db8::/32"},
        "wan.links.a.ipv6",
        ("'2001:db8::/32'", "overlaps", "sites.a.lan.ipv6", "2001:db8:1::/64"),
    ),
    "default-prefix-overlaps": (
        {"sites.a.lan.ipv4": "198.19.0.0/16"},
        "wan.links.a.ipv4",
        ("default prefix 198.19.1.0/24", "overlaps", "sites.a.lan.ipv4", "198.19.0.0/16"),
    ),
    # a family a segment does not carry
    "ipv6-prefix-on-ipv4-wan": (
        {"wan.family": "ipv4", "wan.links.a.ipv6": "2001:db8:ff01::/64"},
        "wan.links.a.ipv6",
        ("'2001:db8:ff01::/64'", "IPv6 prefix", "IPv4-only"),
    ),
    "ipv6-address-on-ipv4-lan": (
        {"sites.a.lan.family": "ipv4", "sites.a.hosts[0].ipv6": "2001:db8:1::5"},
        "sites.a.hosts[0].ipv6",
        ("'2001:db8:1::5'", "no IPv6"),
    ),
    # node names
    "name-too-long": (
        {"sites.a.hosts[0].name": "modality-room-12"},
        "sites.a.hosts[0].name",
        ("'modality-room-12'", "16 characters", "15"),
    ),
    "gateway-name-too-long": (
        {"sites.b.gateway.name": "gateway-of-site-b"},
        "sites.b.gateway.name",
        ("'gateway-of-site-b'", "17 characters", "interface names"),
    ),
    "name-uppercase": (
        {"sites.a.hosts[0].name": "Modality"},
        "sites.a.hosts[0].name",
        ("'Modality'", "not a valid node name"),
    ),
    "name-underscore": (
        {"sites.b.hosts[0].name": "pacs_1"},
        "sites.b.hosts[0].name",
        ("'pacs_1'", "not a valid node name"),
    ),
    "name-reserved-lan": (
        {"sites.a.hosts[0].name": "lan"},
        "sites.a.hosts[0].name",
        ("'lan'", "reserved"),
    ),
    "name-reserved-lo": ({"wan.router": "lo"}, "wan.router", ("'lo'", "reserved")),
    # sites
    "one-site": ({"sites.b": DELETE}, "sites", ("exactly two sites", "got 1", "(a)")),
    "three-sites": (
        {"sites.c": baseline()["sites"]["b"] | {"hosts": [{"name": "viewer"}]}},
        "sites",
        ("exactly two sites", "got 3", "(a, b, c)"),
    ),
    "wan-link-not-a-site": (
        {"wan.links.c.ipv4": "198.19.3.0/24"},
        "wan.links.c",
        ("no site named 'c'", "sites: a, b"),
    ),
    "site-name-too-long": (
        {"sites.radiologywing": baseline()["sites"]["b"], "sites.b": DELETE},
        "sites.radiologywing",
        ("'radiologywing'", "site names"),
    ),
    # prefixes
    "prefix-not-a-prefix": (
        {"sites.a.lan.ipv4": "198.18.1.0/33"},
        "sites.a.lan.ipv4",
        ("'198.18.1.0/33'", "not a valid IPv4 prefix"),
    ),
    "prefix-host-bits-set": (
        {"sites.a.lan.ipv4": "198.18.1.1/24"},
        "sites.a.lan.ipv4",
        ("'198.18.1.1/24'", "host bits set"),
    ),
    "prefix-wrong-family": (
        {"sites.b.lan.ipv4": "2001:db8:2::/64"},
        "sites.b.lan.ipv4",
        ("'2001:db8:2::/64'", "not an IPv4 prefix"),
    ),
    "prefix-too-small": (
        {"wan.links.b.ipv6": "2001:db8:ff02::/127"},
        "wan.links.b.ipv6",
        ("'2001:db8:ff02::/127'", "too small"),
    ),
    "prefix-no-room-for-default-host": (
        {"sites.a.lan.ipv4": "198.18.1.0/30"},
        "sites.a.hosts[0].ipv4",
        ("198.18.1.0/30", "no room for a default address"),
    ),
    # explicit addresses
    "address-outside-lan": (
        {"sites.a.hosts[0].ipv4": "198.18.2.10"},
        "sites.a.hosts[0].ipv4",
        ("'198.18.2.10'", "outside", "198.18.1.0/24"),
    ),
    "address-is-network": (
        {"sites.b.hosts[0].ipv6": "2001:db8:2::"},
        "sites.b.hosts[0].ipv6",
        ("'2001:db8:2::'", "network", "2001:db8:2::/64"),
    ),
    "address-is-broadcast": (
        {"sites.b.gateway.ipv4": "198.18.2.255"},
        "sites.b.gateway.ipv4",
        ("'198.18.2.255'", "broadcast", "198.18.2.0/24"),
    ),
    "address-not-an-address": (
        {"sites.a.hosts[0].ipv4": "198.18.1.10/24"},
        "sites.a.hosts[0].ipv4",
        ("'198.18.1.10/24'", "not a valid IPv4 address"),
    ),
    "address-duplicated-explicitly": (
        {
            "sites.a.hosts[0].ipv4": "198.18.1.50",
            "sites.a.hosts[1]": {"name": "viewer", "ipv4": "198.18.1.50"},
        },
        "sites.a.hosts[1].ipv4",
        ("198.18.1.50", "already used by sites.a.hosts[0].ipv4"),
    ),
    "address-duplicates-a-default": (
        {"sites.a.hosts[1]": {"name": "viewer", "ipv6": "2001:db8:1::10"}},
        "sites.a.hosts[1].ipv6",
        ("2001:db8:1::10", "already used by sites.a.hosts[0].ipv6 (default)"),
    ),
    "default-duplicates-an-address": (
        {"sites.a.hosts[0].ipv4": "198.18.1.11", "sites.a.hosts[1]": {"name": "viewer"}},
        "sites.a.hosts[1].ipv4",
        ("default address 198.18.1.11", "already used by sites.a.hosts[0].ipv4"),
    ),
    "address-is-the-gateway-default": (
        {"sites.b.hosts[0].ipv4": "198.18.2.1"},
        "sites.b.hosts[0].ipv4",
        ("198.18.2.1", "already used by sites.b.gateway.ipv4 (default)"),
    ),
    # MTU
    "lan-mtu-below-ipv6-minimum": (
        {"sites.a.lan.mtu": 1200},
        "sites.a.lan.mtu",
        ("1200", "IPv6 minimum", "1280"),
    ),
    "wan-mtu-below-ipv6-minimum": ({"wan.mtu": 1000}, "wan.mtu", ("1000", "IPv6 minimum", "1280")),
    "mtu-too-large": ({"wan.mtu": 70000}, "wan.mtu", ("70000", "65535")),
    "mtu-too-small": (
        {"sites.a.lan.family": "ipv4", "sites.a.lan.mtu": 60},
        "sites.a.lan.mtu",
        ("60", "68"),
    ),
    # types and required keys
    "mtu-not-an-integer": ({"sites.a.lan.mtu": "big"}, "sites.a.lan.mtu", ("'big'", "integer")),
    "hosts-not-a-list": ({"sites.a.hosts": "modality"}, "sites.a.hosts", ("'modality'", "list")),
    "hosts-empty": ({"sites.b.hosts": []}, "sites.b.hosts", ("at least 1 item",)),
    "family-unknown": (
        {"sites.a.lan.family": "ip6"},
        "sites.a.lan.family",
        ("'ip6'", "'ipv4', 'ipv6' or 'dual'"),
    ),
    "role-unknown": (
        {"sites.a.hosts[0].role": "scanner"},
        "sites.a.hosts[0].role",
        ("'scanner'", "'modality', 'pacs' or 'workstation'"),
    ),
    "lan-family-missing": (
        {"sites.a.lan.family": DELETE},
        "sites.a.lan.family",
        ("required key is missing",),
    ),
    "host-name-missing": (
        {"sites.b.hosts[0].name": DELETE},
        "sites.b.hosts[0].name",
        ("required key is missing",),
    ),
    "wan-missing": ({"wan": DELETE}, "wan", ("required key is missing",)),
    "sites-missing": ({"sites": DELETE}, "sites", ("required key is missing",)),
    # security
    "security-esp-malformed": (
        {"security.ipsec.esp": "aes128"},
        "security.ipsec.esp",
        ("'aes128'", "needs an integrity algorithm"),
    ),
    "security-ike-unknown": (
        {"security.ipsec.ike": "rot13-sha256-modp2048"},
        "security.ipsec.ike",
        ("unknown algorithm 'rot13'",),
    ),
    "security-scope-unknown": ({"security.ipsec.scope": "galaxy"}, "security.ipsec.scope",
                               ("'galaxy'",)),
    "security-tls-profile-unknown": ({"security.tls.profile": "ssl3"}, "security.tls.profile",
                                     ("unknown profile 'ssl3'", "bcp195-rfc8996")),
    "security-tls-cipher-not-in-profile": (
        {"security.mode": "tls", "security.tls.cipher": "AES128-SHA"},
        "security.tls.cipher",
        ("'AES128-SHA'", "profile 'bcp195-rfc8996'", "ECDHE-RSA-AES128-GCM-SHA256"),
    ),
    "security-mode-unknown": ({"security.mode": "vpn"}, "security.mode", ("'vpn'",)),
    "archive-sync-unknown": ({"archive.sync": "always"}, "archive.sync", ("'always'",)),
    "archive-unknown-key": ({"archive.fsync": "none"}, "archive.fsync", ("unknown key",)),
}


@pytest.mark.parametrize(("changes", "path", "fragments"), CASES.values(), ids=CASES.keys())
def test_refused(changes: dict[str, Any], path: str, fragments: tuple[str, ...]) -> None:
    err = invalid(changes)
    problem(err, path, *fragments)


def test_a_wan_mtu_problem_is_reported_once_not_per_link() -> None:
    err = invalid({"wan.mtu": 1000})
    assert err.problems == ("wan.mtu: 1000 is below the IPv6 minimum link MTU of 1280 (RFC 8200)",)


def test_an_invalid_prefix_does_not_also_blame_the_addresses_in_it() -> None:
    err = invalid({"sites.a.lan.ipv4": "198.18.1.0/33", "sites.a.hosts[0].ipv4": "198.18.1.5"})
    assert len(err.problems) == 1
    problem(err, "sites.a.lan.ipv4", "'198.18.1.0/33'")


def test_every_problem_is_reported_at_once() -> None:
    err = invalid(
        {
            "sites.a.hosts[0].ipv4": "198.18.9.9",
            "sites.b.hosts[0].ipv6": "2001:db8:2::1",
            "wan.links.a.ipv4": "198.19.1.0/31",
        }
    )
    problem(err, "sites.a.hosts[0].ipv4", "'198.18.9.9'")
    problem(err, "sites.b.hosts[0].ipv6", "2001:db8:2::1")
    problem(err, "wan.links.a.ipv4", "'198.19.1.0/31'")


# --- bad input that is not a mutation of a valid document -----------------------------------


def test_duplicate_site() -> None:
    text = dump(baseline()).replace("  b:\n", "  a:\n", 1)
    err = invalid(text=text)
    problem(err, "sites.a", "duplicate key 'a'", "first at line 3")


def test_duplicate_lan_key() -> None:
    text = dump(baseline()).replace("    lan:\n", "    lan:\n      family: ipv4\n    lan:\n", 1)
    err = invalid(text=text)
    problem(err, "sites.a.lan", "duplicate key 'lan'")


def test_duplicate_key_inside_a_host() -> None:
    text = dump(baseline()).replace("    - name: pacs\n", "    - name: pacs\n      name: pacs2\n")
    err = invalid(text=text)
    problem(err, "sites.b.hosts[0].name", "duplicate key 'name'")


@pytest.mark.parametrize("text", ["", "\n# nothing but a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    err = invalid(text=text)
    problem(err, "(top level)", "empty")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just words\n", "str")])
def test_top_level_not_a_mapping(text: str, kind: str) -> None:
    err = invalid(text=text)
    problem(err, "(top level)", "expected a mapping", kind)


def test_invalid_yaml_syntax_names_the_file_and_line() -> None:
    err = invalid(text="sites: {a: [1, 2}\n")
    assert len(err.problems) == 1
    assert err.problems[0].startswith("not valid YAML")
    assert f'"{SOURCE}", line 1' in err.problems[0]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_load_unreadable_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope.yaml" if kind == "missing" else tmp_path
    with pytest.raises(TopologyError) as info:
        load(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert info.value.problems[0].startswith("cannot read the file: ")
    assert list(tmp_path.iterdir()) == []


# --- valid input ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", shipped())
def test_every_shipped_topology_loads(name: str) -> None:
    path = shipped_dir() / f"{name}.yaml"
    topo = load(path)
    assert topo.name == name
    assert topo.source == str(path)
    assert topo.description
    assert topo.security.mode is SecurityMode.NONE
    assert [s.name for s in topo.sites] == ["a", "b"]
    assert topo.node_names[1:4] == ("gw-a", "wan", "gw-b")
    assert {"modality", "pacs"} <= set(topo.node_names)
    # The gateways and the WAN router share the WAN family, so they always reach each other.
    pairs = {(p.source, p.destination) for p in probes(topo.nodes)}
    assert {("gw-a", "wan"), ("gw-a", "gw-b"), ("wan", "gw-b")} <= pairs


def test_shipped_list_matches_the_folder() -> None:
    assert shipped() == sorted(p.stem for p in Path(shipped_dir()).glob("*.yaml"))
    assert {"ipv4", "ipv6", "dualstack", "mixed-4over6", "mixed-6over4"} <= set(shipped())


def test_parse_of_a_valid_file_creates_nothing() -> None:
    with side_effects() as seen:
        parse(dump(baseline()), SOURCE)
    assert seen == []


def test_parse_names_the_topology_after_the_file() -> None:
    assert parse(dump(baseline()), "/somewhere/else/my-lab.yaml").name == "my-lab"
    assert parse(dump(baseline())).source == "<string>"


def test_node_order_is_the_design_picture() -> None:
    topo = topology(
        {
            "sites.a.hosts[1]": {"name": "ct", "role": "modality"},
            "sites.b.hosts[1]": {"name": "reading", "role": "workstation"},
            "sites.b.gateway.name": "edge-b",
            "wan.router": "carrier",
        }
    )
    assert topo.node_names == ("modality", "ct", "gw-a", "carrier", "edge-b", "pacs", "reading")
    roles = [n.role for n in topo.nodes]
    assert roles == [
        Role.MODALITY,
        Role.MODALITY,
        Role.GATEWAY,
        Role.WAN,
        Role.GATEWAY,
        Role.PACS,
        Role.WORKSTATION,
    ]
    assert topo.wan_router == "carrier"
    assert [(s.name, s.gateway, s.hosts) for s in topo.sites] == [
        ("a", "gw-a", ("modality", "ct")),
        ("b", "edge-b", ("pacs", "reading")),
    ]


def _addr(topo: Topology, node: str, ifname: str, family: Family) -> str:
    found = topo.node(node).interface(ifname).address(family)
    return str(found) if found else "-"


def test_default_prefixes_and_addresses() -> None:
    topo = topology({"sites.a.hosts[1]": {"name": "ct"}})
    prefixes = {s.name: tuple(str(p) for p in s.prefixes) for s in topo.segments}
    assert prefixes == {
        "lan-a": ("198.18.1.0/24", "2001:db8:1::/64"),
        "wan-a": ("198.19.1.0/24", "2001:db8:ff01::/64"),
        "lan-b": ("198.18.2.0/24", "2001:db8:2::/64"),
        "wan-b": ("198.19.2.0/24", "2001:db8:ff02::/64"),
    }
    v4, v6 = Family.IPV4, Family.IPV6
    expected = {
        ("gw-a", "lan"): ("198.18.1.1/24", "2001:db8:1::1/64"),
        ("modality", "gw-a"): ("198.18.1.10/24", "2001:db8:1::10/64"),
        ("ct", "gw-a"): ("198.18.1.11/24", "2001:db8:1::11/64"),
        ("wan", "gw-a"): ("198.19.1.1/24", "2001:db8:ff01::1/64"),
        ("gw-a", "wan"): ("198.19.1.2/24", "2001:db8:ff01::2/64"),
        ("wan", "gw-b"): ("198.19.2.1/24", "2001:db8:ff02::1/64"),
        ("gw-b", "wan"): ("198.19.2.2/24", "2001:db8:ff02::2/64"),
        ("gw-b", "lan"): ("198.18.2.1/24", "2001:db8:2::1/64"),
        ("pacs", "gw-b"): ("198.18.2.10/24", "2001:db8:2::10/64"),
    }
    for (node, ifname), addrs in expected.items():
        assert (_addr(topo, node, ifname, v4), _addr(topo, node, ifname, v6)) == addrs
    assert all(i.mtu == 1500 for n in topo.nodes for i in n.interfaces)


def test_explicit_prefixes_and_addresses_are_honoured() -> None:
    topo = topology(
        {
            "sites.a.lan.ipv4": "192.0.2.0/24",
            "sites.a.lan.ipv6": "2001:db8:aa::/64",
            "sites.a.lan.mtu": 9000,
            "sites.a.gateway.ipv4": "192.0.2.254",
            "sites.a.hosts[0].ipv4": "192.0.2.7",
            "sites.a.hosts[0].ipv6": "2001:db8:aa::7",
            "wan.links.b.ipv4": "203.0.113.0/30",
            "wan.mtu": 1400,
        }
    )
    assert _addr(topo, "gw-a", "lan", Family.IPV4) == "192.0.2.254/24"
    assert _addr(topo, "gw-a", "lan", Family.IPV6) == "2001:db8:aa::1/64"
    assert topo.node("modality").addresses() == (
        ip_interface("192.0.2.7/24"),
        ip_interface("2001:db8:aa::7/64"),
    )
    assert _addr(topo, "wan", "gw-b", Family.IPV4) == "203.0.113.1/30"
    assert _addr(topo, "gw-b", "wan", Family.IPV4) == "203.0.113.2/30"
    assert topo.segment("lan-a").mtu == 9000
    assert topo.node("modality").interface("gw-a").mtu == 9000
    assert topo.node("wan").interface("gw-b").mtu == 1400
    # Routes follow the explicit values.
    assert [str(r.gateway) for r in topo.node("modality").routes] == [
        "192.0.2.254",
        "2001:db8:aa::1",
    ]
    gw_b_v4 = {str(r.destination) for r in topo.node("gw-b").routes if r.destination.version == 4}
    assert "192.0.2.0/24" in gw_b_v4


def test_ipv4_only_segment_may_have_a_small_mtu() -> None:
    topo = topology({"sites.a.lan.family": "ipv4", "sites.a.lan.mtu": 576})
    assert topo.segment("lan-a").mtu == 576
    assert topo.segment("lan-a").families == {Family.IPV4}


def test_interface_naming_and_wires() -> None:
    topo = topology({"sites.b.gateway.name": "edge-b", "wan.router": "carrier"})
    names = {n.name: [(i.name, i.segment, i.bridge) for i in n.interfaces] for n in topo.nodes}
    assert names == {
        "modality": [("gw-a", "lan-a", False)],
        "gw-a": [("lan", "lan-a", True), ("carrier", "wan-a", False)],
        "carrier": [("gw-a", "wan-a", False), ("edge-b", "wan-b", False)],
        "edge-b": [("lan", "lan-b", True), ("carrier", "wan-b", False)],
        "pacs": [("edge-b", "lan-b", False)],
    }
    wires = {
        (w.segment, w.a.node, w.a.ifname, w.b.node, w.b.ifname, w.b.bridge) for w in topo.wires
    }
    assert wires == {
        ("lan-a", "modality", "gw-a", "gw-a", "modality", "lan"),
        ("wan-a", "gw-a", "carrier", "carrier", "gw-a", None),
        ("lan-b", "pacs", "edge-b", "edge-b", "pacs", "lan"),
        ("wan-b", "edge-b", "carrier", "carrier", "edge-b", None),
    }
    assert all(w.a.bridge is None for w in topo.wires)


def test_a_three_host_site() -> None:
    topo = topology(
        {
            "sites.b.hosts[1]": {"name": "reading", "role": "workstation"},
            "sites.b.hosts[2]": {"name": "archive", "role": "pacs"},
        }
    )
    lan_b = [w for w in topo.wires if w.segment == "lan-b"]
    assert [(w.a.node, w.a.ifname) for w in lan_b] == [
        ("pacs", "gw-b"),
        ("reading", "gw-b"),
        ("archive", "gw-b"),
    ]
    assert [(w.b.node, w.b.ifname, w.b.bridge) for w in lan_b] == [
        ("gw-b", "pacs", "lan"),
        ("gw-b", "reading", "lan"),
        ("gw-b", "archive", "lan"),
    ]
    assert _addr(topo, "archive", "gw-b", Family.IPV4) == "198.18.2.12/24"
    assert _addr(topo, "archive", "gw-b", Family.IPV6) == "2001:db8:2::12/64"
    # Every host of the site reaches the other site in both families.
    pairs = {(p.source, p.destination, p.family) for p in probes(topo.nodes)}
    for host in ("pacs", "reading", "archive"):
        for family in Family:
            assert ("modality", host, family) in pairs


@pytest.mark.parametrize(
    ("name", "lan", "wan"),
    [("mixed-4over6", Family.IPV4, Family.IPV6), ("mixed-6over4", Family.IPV6, Family.IPV4)],
)
def test_mixed_topologies_note_the_missing_route(name: str, lan: Family, wan: Family) -> None:
    topo = load(shipped_dir() / f"{name}.yaml")
    assert topo.families == {lan, wan}
    assert len(topo.notes) == 1
    note = topo.notes[0]
    assert f"The {lan.label} site LANs are not routed across the WAN" in note
    assert f"does not carry {lan.label}" in note
    assert "modality" in note and "pacs" in note
    assert "need the IPsec tunnel between gw-a and gw-b" in note


@pytest.mark.parametrize("name", ["ipv4", "ipv6", "dualstack"])
def test_uniform_topologies_have_no_notes(name: str) -> None:
    assert load(shipped_dir() / f"{name}.yaml").notes == ()


def test_ipv4_hosts_over_a_dual_wan_have_no_note() -> None:
    topo = topology({"sites.a.lan.family": "ipv4", "sites.b.lan.family": "ipv4"})
    assert topo.notes == ()


def test_sites_sharing_no_family_are_refused() -> None:
    err = invalid({"sites.a.lan": {"family": "ipv4"}, "sites.b.lan": {"family": "ipv6"}})
    problem(err, "sites.b.lan.family", "'ipv6'", "shares no address family", "'ipv4'")
