"""The docker plan and the compose files made from it: the shipped files in compose/ match what
``teleradlab compose`` writes today, and the plan keeps lab networks internal, labelled and on
the topology's own addresses."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import topology

from lab.backends.docker import compose
from lab.backends.docker import plan as dockerplan
from lab.errors import LabError
from lab.model.topology import Family, Role, Topology
from lab.topology import load, shipped, shipped_dir

REPO = Path(__file__).resolve().parents[4]
LAB_RANGES = (ip_network("198.18.0.0/15"), ip_network("2001:db8::/32"))


def _topo(name: str) -> Topology:
    return load(shipped_dir() / f"{name}.yaml")


def _doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(compose.text(_topo(name)))
    return doc


@pytest.mark.parametrize("name", shipped())
def test_shipped_compose_file_is_in_sync(name: str) -> None:
    path = REPO / "compose" / f"{name}.yaml"
    assert path.exists(), f"missing {path}: teleradlab compose {name} -o compose/{name}.yaml"
    assert path.read_text(encoding="utf-8") == compose.text(_topo(name)), (
        f"{path} is stale: regenerate it with 'teleradlab compose {name} -o compose/{name}.yaml'"
    )


def test_no_compose_file_without_a_topology() -> None:
    assert {p.stem for p in (REPO / "compose").glob("*.yaml")} == set(shipped())


@pytest.mark.parametrize("name", shipped())
def test_networks_are_internal_labelled_and_on_lab_addresses(name: str) -> None:
    topo = _topo(name)
    networks = _doc(name)["networks"]
    assert set(networks) == {s.name for s in topo.segments}
    for seg in topo.segments:
        net = networks[seg.name]
        assert net["internal"] is True
        assert net["labels"] == {"teleradlab.lab": name}
        assert net["enable_ipv6"] is (Family.IPV6 in seg.families)
        subnets = [ip_network(c["subnet"]) for c in net["ipam"]["config"]]
        assert set(seg.prefixes) <= set(subnets)
        for subnet in subnets:
            assert any(subnet.subnet_of(r) for r in LAB_RANGES if r.version == subnet.version)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", shipped())
def test_every_node_gets_its_addresses_and_capabilities(name: str) -> None:
    topo = _topo(name)
    services = _doc(name)["services"]
    assert set(services) == set(topo.node_names)
    for node in topo.nodes:
        svc = services[node.name]
        given = {v for net in svc["networks"].values() for v in net.values()}
        assert given == {str(a.ip) for a in node.addresses()}
        assert svc["labels"]["teleradlab.lab"] == name and "NET_ADMIN" in svc["cap_add"]
        assert "/run" in svc["tmpfs"]
        if node.role is Role.GATEWAY:
            assert svc["devices"] == ["/dev/net/tun:/dev/net/tun"]
            assert svc["sysctls"]["net.ipv4.ip_forward"] == "1"
        # End hosts may grow a send buffer to fill the longest WAN preset, as on netns.
        wmem = svc["sysctls"].get("net.ipv4.tcp_wmem")
        assert wmem == (None if node.forwarding else "4096 16384 16777216")
        # The script puts exactly the model's addresses and routes in place.
        script = svc["command"][2].replace("$$", "$")
        assert script == dockerplan.node_script(topo, node)
        for addr in node.addresses():
            assert f"ip addr add {addr.with_prefixlen} dev " in script
        for route in node.routes:
            assert f"route replace {route.destination} via {route.gateway} " in script


def test_ipv6_only_segments_get_a_placeholder_ipv4_subnet_the_nodes_drop() -> None:
    topo = _topo("ipv6")
    plan = dockerplan.plan(topo)
    for net in plan.networks:
        v4 = [s for s, _ in net.subnets if s.version == 4]
        assert len(v4) == 1 and v4[0].subnet_of(dockerplan.PLACEHOLDER_POOL)
    script = dockerplan.node_script(topo, topo.node("modality"))
    assert "ip addr flush dev gw-a scope global" in script
    assert "ip addr add 2001:db8:1::10/64 dev gw-a nodad" in script


def test_ipv4_only_interfaces_get_no_ipv6_at_all() -> None:
    topo = _topo("mixed-4over6")
    script = dockerplan.node_script(topo, topo.node("gw-a"))
    assert "ip link set dev lan addrgenmode none" in script
    assert "ip addr flush dev lan\n" in script


def test_bridge_addresses_are_free_and_placeholders_avoid_taken_subnets() -> None:
    topo = _topo("ipv6")
    taken = [ip_network("198.19.240.0/26"), ip_network("198.19.240.64/26")]
    plan = dockerplan.plan(topo, taken)
    used = {a.ip for n in topo.nodes for a in n.addresses()}
    for net in plan.networks:
        for subnet, bridge in net.subnets:
            assert bridge in subnet and bridge not in used
            assert not any(subnet.overlaps(t) for t in taken)


def test_a_full_prefix_leaves_no_bridge_address() -> None:
    with pytest.raises(LabError, match=r"wan-x: .* free address in 198\.18\.0\.0/30"):
        dockerplan._bridge_address(
            ip_network("198.18.0.0/30"),
            {ip_network("198.18.0.1/32")[0], ip_network("198.18.0.2/32")[0]},
            "wan-x",
        )


def test_compose_lab_name_labels_everything() -> None:
    doc = yaml.safe_load(compose.text(topology(), "my-lab"))
    labels = [s["labels"]["teleradlab.lab"] for s in doc["services"].values()]
    labels += [n["labels"]["teleradlab.lab"] for n in doc["networks"].values()]
    assert set(labels) == {"my-lab"}
