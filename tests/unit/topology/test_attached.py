"""A site attached to a real network: the uplink and remote-peer checks (every problem by its
field path, nothing built), the model they make, and the IPsec plan, VICI connection and guard
towards the remote gateway."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import topology as topology_file
from lab.errors import IpsecError, TopologyError
from lab.model.plan import IpsecPlan
from lab.model.topology import SegmentKind, Topology, UplinkMode
from lab.security import plan as security_plan
from lab.security.ipsec import plan as ipsec_plan
from lab.security.ipsec.tunnel import Credentials, conn_config, remote_credentials, tunnel_probes


def _doc() -> dict[str, Any]:
    return {
        "sites": {"a": {
            "lan": {"family": "ipv4", "ipv4": "198.18.10.0/24"},
            "gateway": {"uplink": {"interface": "eth1", "mode": "macvlan",
                                   "address": "198.18.200.2/24", "gateway": "198.18.200.1"}},
            "hosts": [{"name": "modality", "role": "modality"}],
        }},
        "security": {"mode": "ipsec", "ipsec": {"remote": {
            "address": "198.18.200.1", "identity": "remote-gw", "auth": "psk",
            "psk": "a-shared-key", "remote_ts": ["198.18.20.0/24"]}}},
    }


def _parse(doc: dict[str, Any], source: str = "<string>") -> Topology:
    return topology_file.parse(yaml.safe_dump(doc), source)


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as err:
        _parse(doc)
    return err.value.problems


def _plan(topology: Topology) -> IpsecPlan:
    plan = security_plan.resolve(topology, security_plan.FixedMachine()).ipsec
    assert plan is not None
    return plan


def test_one_site_and_a_remote_peer_make_a_gateway_with_an_uplink() -> None:
    topo = _parse(_doc())
    assert [n.name for n in topo.nodes] == ["modality", "gw-a"]  # no far site, no WAN router
    gw = topo.node("gw-a")
    uplink = gw.interface("uplink")
    assert uplink.addresses == (ip_interface("198.18.200.2/24"),)
    assert uplink.uplink is not None and uplink.uplink.host_interface == "eth1"
    assert uplink.uplink.mode is UplinkMode.MACVLAN
    assert topo.segment("uplink-a").kind is SegmentKind.UPLINK
    routes = {(str(r.destination), str(r.gateway), r.interface) for r in gw.routes}
    assert ("198.18.20.0/24", "198.18.200.1", "uplink") in routes
    assert topo.wires and all(w.segment == "lan-a" for w in topo.wires)
    assert topo.remote is not None and topo.remote.selectors == (ip_network("198.18.20.0/24"),)
    assert "remote-gw@198.18.200.1" in topo.security.label


def test_the_remote_gateway_is_the_responder_and_runs_no_lab_charon() -> None:
    plan = _plan(_parse(_doc()))
    me, peer = plan.endpoints
    assert (me.node, me.address, me.identity, me.local) == ("gw-a", ip_address("198.18.200.2"),
                                                            "gw-a", True)
    assert (peer.address, peer.identity, peer.local) == (ip_address("198.18.200.1"),
                                                         "remote-gw", False)
    assert plan.local_endpoints == (me,) and plan.remote == peer
    assert me.selectors == (ip_network("198.18.10.0/24"),)
    assert peer.selectors == (ip_network("198.18.20.0/24"),)
    conn = conn_config(plan, me, Credentials(psk={"gw-a": "a-shared-key"}))["teleradlab"]
    assert conn["remote_addrs"] == ["198.18.200.1"] and conn["local_addrs"] == ["198.18.200.2"]
    assert conn["remote"]["id"] == "remote-gw" and conn["local"]["auth"] == "psk"
    child = conn["children"]["teleradlab"]
    assert child["local_ts"] == ["198.18.10.0/24"] and child["remote_ts"] == ["198.18.20.0/24"]
    assert tunnel_probes(_parse(_doc()), plan) == []


def test_the_guard_drops_cleartext_to_the_remote_prefixes() -> None:
    plan = _plan(_parse(_doc()))
    rules = ipsec_plan.guard_ruleset(plan, "gw-a")
    assert 'ip daddr 198.18.20.0/24 meta mark != 0x42 oifname != "ipsec0"' in rules
    assert "drop" in rules and "chain forward" in rules and "chain output" in rules


def test_local_identity_and_psk_come_from_the_remote_section() -> None:
    doc = _doc()
    doc["security"]["ipsec"]["remote"]["local_identity"] = "lab.example"
    topo = _parse(doc)
    plan = _plan(topo)
    assert plan.initiator.identity == "lab.example"
    assert topo.remote is not None
    assert remote_credentials(topo.remote, plan).psk == {"gw-a": "a-shared-key"}


def test_cert_files_are_relative_to_the_topology_and_must_be_pem(tmp_path: Path) -> None:
    doc = _doc()
    remote = doc["security"]["ipsec"]["remote"]
    del remote["psk"]
    remote.update(auth="cert", ca="ca.pem", cert="gw.pem", key="gw.key")
    topo = _parse(doc, str(tmp_path / "attached.yaml"))  # security.ipsec.auth follows remote
    assert topo.remote is not None and topo.remote.ca == str(tmp_path / "ca.pem")
    with pytest.raises(IpsecError, match=r"security.ipsec.remote.ca: cannot read .*ca.pem"):
        security_plan.resolve(topo, security_plan.FixedMachine())
    for name in ("ca.pem", "gw.pem", "gw.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    plan = _plan(topo)
    creds = remote_credentials(topo.remote, plan)
    assert creds.trusted == tmp_path / "ca.pem"
    assert creds.certs["gw-a"].cert_path == tmp_path / "gw.pem"
    (tmp_path / "ca.pem").write_text("not pem")
    with pytest.raises(IpsecError, match=r"security.ipsec.remote.ca: .* is not a PEM file"):
        security_plan.resolve(topo, security_plan.FixedMachine())


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["sites"]["a"]["gateway"]["uplink"].update(address="198.18.200.2"),
     "sites.a.gateway.uplink.address: '198.18.200.2' needs its prefix length"),
    (lambda d: d["sites"]["a"]["gateway"]["uplink"].update(gateway="198.18.201.1"),
     "sites.a.gateway.uplink.gateway: '198.18.201.1' is not another address of the uplink's "
     "network 198.18.200.0/24"),
    (lambda d: d["sites"]["a"]["gateway"]["uplink"].update(interface="a-very-long-ifname0"),
     "sites.a.gateway.uplink.interface: 'a-very-long-ifname0' is not a Linux interface name"),
    (lambda d: d["sites"]["a"]["gateway"]["uplink"].update(mode="bridge"),
     "sites.a.gateway.uplink.mode: Input should be 'macvlan' or 'move'"),
    (lambda d: d["sites"]["a"]["gateway"].pop("uplink"),
     "sites.a.gateway.uplink: required with a remote peer"),
    (lambda d: d["security"]["ipsec"]["remote"].update(address="remote.example"),
     "security.ipsec.remote.address: 'remote.example' is not an IP address"),
    (lambda d: d["security"]["ipsec"]["remote"].update(address="2001:db8::1"),
     "security.ipsec.remote.address: 2001:db8::1 is not of the uplink's address family"),
    (lambda d: d["security"]["ipsec"]["remote"].update(remote_ts=["198.18.20.1/24"]),
     "security.ipsec.remote.remote_ts[0]: '198.18.20.1/24' is not a network prefix"),
    (lambda d: d["security"]["ipsec"]["remote"].update(remote_ts=["198.18.0.0/16"]),
     "security.ipsec.remote.remote_ts[0]: 198.18.0.0/16 overlaps the site LAN 198.18.10.0/24"),
    (lambda d: d["security"]["ipsec"]["remote"].update(remote_ts=[]),
     "security.ipsec.remote.remote_ts: List should have at least 1 item"),
    (lambda d: d["security"]["ipsec"]["remote"].pop("psk"),
     "security.ipsec.remote.psk: required with auth psk"),
    (lambda d: d["security"]["ipsec"]["remote"].update(ca="ca.pem"),
     "security.ipsec.remote.ca: only with auth cert"),
    (lambda d: d["security"]["ipsec"]["remote"].update(auth="cert", psk=None),
     "security.ipsec.remote.ca: required with auth cert"),
    (lambda d: d["security"]["ipsec"].update(psk="another-key"),
     "security.ipsec.psk: with a remote peer the key goes in security.ipsec.remote.psk"),
    (lambda d: d["security"]["ipsec"].update(auth="cert"),
     "security.ipsec.auth: 'cert' differs from security.ipsec.remote.auth 'psk'"),
    (lambda d: d["security"].update(mode="tls"),
     "security.mode: a remote peer (security.ipsec.remote) needs mode ipsec, got 'tls'"),
    (lambda d: d["security"]["ipsec"].update(scope="host-to-host"),
     "security.ipsec.scope: a remote peer is a site-to-site tunnel"),
    (lambda d: d.update(wan={"family": "ipv4"}),
     "wan: a site attached to a remote peer has no lab WAN"),
    (lambda d: d["sites"].update(b=d["sites"]["a"]),
     "sites: a topology with a remote peer has exactly one site"),
    (lambda d: d["security"]["ipsec"].pop("remote"),
     "sites.a.gateway.uplink: an uplink needs a remote peer"),
])
def test_every_problem_names_its_field(change: Any, expected: str) -> None:
    doc = _doc()
    change(doc)
    problems = _problems(doc)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_lab_wan_is_still_required_without_a_remote_peer() -> None:
    doc = _doc()
    del doc["security"]
    del doc["sites"]["a"]["gateway"]["uplink"]
    problems = _problems(doc)
    assert any(p.startswith("sites: exactly two sites are needed") for p in problems)
    assert any(p.startswith("wan: required key is missing") for p in problems)


def test_uplink_is_a_reserved_node_name() -> None:
    doc = _doc()
    doc["sites"]["a"]["hosts"][0]["name"] = "uplink"
    assert any("reserved" in p for p in _problems(doc))
