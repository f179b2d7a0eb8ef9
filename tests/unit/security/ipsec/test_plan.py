"""The IPsec plan (peers, addresses, selectors), the VICI connection and the cleartext guard,
worked out from shipped topologies without building anything."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from lab import topology as topology_file
from lab.errors import IpsecError, TopologyError
from lab.model.plan import EspPath, IpsecPlan
from lab.model.topology import IpsecScope, Probe, SecurityMode, Topology
from lab.security import plan as security_plan
from lab.security.ipsec import plan as ipsec_plan
from lab.security.ipsec.charon import config_text
from lab.security.ipsec.tunnel import Credentials, conn_config, hidden_by_tunnel, tunnel_probes


def _load(name: str, spec: str = "ipsec") -> Topology:
    return topology_file.load(topology_file.resolve_path(name),
                              {"security": topology_file.security_override(spec)})


def make_plan(topology: Topology, esp: EspPath = EspPath.LIBIPSEC) -> IpsecPlan:
    """The IPsec part of the security plan, on a machine that can do every algorithm."""
    plan = security_plan.resolve(topology, security_plan.FixedMachine(esp=esp)).ipsec
    assert plan is not None
    return plan


def test_site_to_site_over_ipv4() -> None:
    plan = make_plan(_load("ipv4"))
    a, b = plan.endpoints
    assert (a.node, b.node) == ("gw-a", "gw-b")
    assert a.address == ip_address("198.19.1.2") and b.address == ip_address("198.19.2.2")
    assert a.selectors == (ip_network("198.18.1.0/24"),)
    assert b.selectors == (ip_network("198.18.2.0/24"),)


def test_mixed_topologies_tunnel_the_site_family_over_the_other() -> None:
    p46 = make_plan(_load("mixed-4over6"))
    assert p46.initiator.address.version == 6
    assert all(n.version == 4 for n in p46.initiator.selectors)
    p64 = make_plan(_load("mixed-6over4"))
    assert p64.initiator.address.version == 4
    assert all(n.version == 6 for n in p64.initiator.selectors)


def test_dual_stack_protects_both_families_over_ipv6() -> None:
    plan = make_plan(_load("dualstack"))
    assert plan.initiator.address.version == 6
    assert {n.version for n in plan.initiator.selectors} == {4, 6}
    assert [f.value for f in plan.inner_families] == ["ipv4", "ipv6"]


def test_host_to_host_uses_single_host_selectors() -> None:
    plan = make_plan(_load("ipv6", "ipsec,scope=host-to-host"))
    assert plan.scope is IpsecScope.HOST_TO_HOST
    assert (plan.initiator.node, plan.responder.node) == ("modality", "pacs")
    assert plan.initiator.selectors == (ip_network(f"{plan.initiator.address}/128"),)


def test_host_to_host_is_refused_where_the_hosts_need_a_tunnel() -> None:
    with pytest.raises(IpsecError, match="use scope: site-to-site"):
        make_plan(_load("mixed-4over6", "ipsec,scope=host-to-host"))


def test_security_override_syntax() -> None:
    assert topology_file.security_override("ipsec") == {"mode": "ipsec"}
    assert topology_file.security_override("tls,profile=extended,port=3000") == {
        "mode": "tls", "tls": {"profile": "extended", "port": 3000}}
    for bad, why in (("wireguard", "expected none, ipsec or tls"),
                     ("ipsec,esp", "expected KEY=VALUE"), ("none,x=1", "takes no settings")):
        with pytest.raises(TopologyError, match=why):
            topology_file.security_override(bad)


def test_override_is_validated_like_the_file() -> None:
    with pytest.raises(TopologyError) as err:
        _load("ipv4", "ipsec,esp=aes128,auth=token")
    text = str(err.value)
    assert "(with --security)" in text and "security.ipsec.auth" in text
    assert _load("ipv4", "none").security.mode is SecurityMode.NONE


def test_conn_config_psk_and_cert(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = make_plan(_load("ipv4"))
    conn = conn_config(plan, plan.initiator, Credentials(psk={"gw-a": "k" * 20}))
    c = conn[ipsec_plan.CONNECTION]
    assert c["local_addrs"] == ["198.19.1.2"] and c["remote_addrs"] == ["198.19.2.2"]
    assert c["proposals"] == ["aes256-sha256-modp2048"] and c["local"]["auth"] == "psk"
    child = c["children"][ipsec_plan.CONNECTION]
    assert child["local_ts"] == ["198.18.1.0/24"] and child["remote_ts"] == ["198.18.2.0/24"]
    assert child["esp_proposals"] == ["aes256gcm16"] and child["mode"] == "tunnel"


def test_host_to_host_is_transport_mode_only_with_kernel_esp() -> None:
    creds = Credentials(psk={"modality": "k" * 20, "pacs": "k" * 20})

    def mode(path: EspPath) -> str:
        plan = make_plan(_load("ipv6", "ipsec,scope=host-to-host"), path)
        conn = conn_config(plan, plan.initiator, creds)[ipsec_plan.CONNECTION]
        return str(conn["children"][ipsec_plan.CONNECTION]["mode"])

    assert (mode(EspPath.KERNEL), mode(EspPath.LIBIPSEC)) == ("transport", "tunnel")
    site = make_plan(_load("ipv6"), EspPath.KERNEL)
    conn = conn_config(site, site.initiator, Credentials(psk={"gw-a": "k" * 20}))
    assert conn[ipsec_plan.CONNECTION]["children"][ipsec_plan.CONNECTION]["mode"] == "tunnel"


def test_guard_drops_cleartext_to_the_far_side() -> None:
    plan = make_plan(_load("dualstack"))
    rules = ipsec_plan.guard_ruleset(plan, "gw-a")
    assert "hook forward" in rules and "hook output" in rules
    for net in plan.responder.selectors:
        assert str(net) in rules
    for net in plan.initiator.selectors:
        assert str(net) not in rules
    assert 'oifname != "ipsec0"' in rules and "meta mark != 0x42" in rules
    kernel = ipsec_plan.guard_ruleset(make_plan(_load("dualstack"), EspPath.KERNEL), "gw-a")
    assert "rt ipsec missing" in kernel


def test_tunnel_probes_and_hidden_ones() -> None:
    topo = _load("ipv6")
    plan = make_plan(topo)
    pairs = {(p.source, p.destination) for p in tunnel_probes(topo, plan)}
    assert pairs == {("modality", "pacs"), ("modality", "workstation")}
    gw_b_wan = plan.responder.address
    assert hidden_by_tunnel(topo, plan, Probe("modality", "gw-b", gw_b_wan))
    lan = topo.node("gw-b").addresses()[0].ip
    assert not hidden_by_tunnel(topo, plan, Probe("modality", "gw-b", lan))


def test_charon_config_loads_the_userspace_esp_plugin_only_when_needed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lib = config_text(EspPath.LIBIPSEC, tmp_path / "log")
    kern = config_text(EspPath.KERNEL, tmp_path / "log")
    assert "kernel-libipsec kernel-netlink" in lib and "kernel-libipsec kernel" not in kern
    assert "vici" in lib and str(tmp_path / "log") in lib
