"""IPsec through VICI in real labs: every shipped topology runs DICOM through the tunnel; what
crosses the WAN is only IKE and ESP (the patient's name never); wrong credentials fail closed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import topology as topology_file
from lab.backends.base import Lab
from lab.dicom.data.generate import generate_study
from lab.errors import IpsecError
from lab.model.names import LabPaths
from lab.model.plan import IpsecPlan
from lab.model.topology import Role
from lab.runtime import lifecycle
from lab.security import plan as security_plan
from lab.security.ipsec import tunnel
from lab.security.pki.authority import create_ca
from lab.security.pki.lab_pki import ensure_lab_pki
from lab.study.results import read_csv

from ..capture import PATIENT, capture, contains, frames
from ..conftest import teleradlab


@pytest.mark.parametrize("topology", topology_file.shipped())
def test_run_through_the_tunnel_on_every_shipped_topology(topology: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    teleradlab("run", topology, "--security", "ipsec", "--objects", "3", "--out", str(out),
               timeout=300)
    rows = read_csv(out / "results.csv")
    assert rows and all(r["ok"] == "True" for r in rows)
    stores = [r for r in rows if r["operation"] == "store"]
    assert stores and all(r["verified"] == "yes" for r in stores)
    for r in rows:
        assert r["security"] == "ipsec" and r["esp_path"] in ("kernel", "libipsec")
        assert r["cipher"] == "AES_GCM_16-256" and float(r["handshake_seconds"]) > 0
    # ESP carried at least the DICOM bytes of every C-STORE (plus headers and padding).
    for r in stores:
        assert int(r["sa_bytes"]) > int(r["bytes"])


@pytest.fixture
def plain_lab() -> Iterator[str]:
    name = "ipsec-neg"
    teleradlab("down", name, check=False)
    teleradlab("up", "ipv4", "--name", name, "--no-services")
    yield name
    teleradlab("down", name)


def _ping(lab: str, src: str, dst: str) -> bool:
    res = teleradlab("exec", "--lab", lab, src, "--", "ping", "-c", "2", "-W", "1", "-i", "0.2",
                     dst, check=False)
    return res.returncode == 0


def _secure(lab: str, spec: str) -> tuple[Lab, IpsecPlan]:
    """The running plain lab seen as if its topology asked for ``spec`` (its plan resolved on
    this machine, as ``up`` would)."""
    base = lifecycle.attach(lab)
    topo = topology_file.load(lifecycle.record(base).topology,
                              {"security": topology_file.security_override(spec)})
    plan = security_plan.resolve(topo, security_plan.HostMachine())
    assert plan.ipsec is not None
    return Lab(base.backend, lab, topo, plan, base.paths), plan.ipsec


def _fails_closed(lab: str, tmp_path: Path, creds: tunnel.Credentials, spec: str) -> str:
    secured, _ = _secure(lab, spec)
    assert _ping(lab, "modality", "198.18.2.10")  # plain: the sites reach each other
    with capture(lab, "wan", tmp_path / "neg.pcap"):
        with pytest.raises(IpsecError) as err:
            tunnel.establish(secured, credentials=creds)
        assert not _ping(lab, "modality", "198.18.2.10")
        assert not _ping(lab, "pacs", "198.18.1.10")
    # Only IKE crossed: no ICMP, no TCP, nothing in clear between the site LANs.
    seen = frames(tmp_path / "neg.pcap", "frame.protocols", display="ip")
    assert seen and all("isakmp" in f[0] for f in seen), seen
    return str(err.value)


def test_wrong_psk_fails_with_a_clear_error_and_nothing_passes(plain_lab: str,
                                                               tmp_path: Path) -> None:
    creds = tunnel.Credentials(psk={"gw-a": "the-right-key-123", "gw-b": "a-wrong-key-456"})
    message = _fails_closed(plain_lab, tmp_path, creds, "ipsec")
    assert "did not come up between gw-a and gw-b" in message
    assert "AUTHENTICATION_FAILED" in message or "authentication" in message.lower()


def test_certificate_from_untrusted_ca_fails(plain_lab: str, tmp_path: Path) -> None:
    lab, plan = _secure(plain_lab, "ipsec,auth=cert")
    good = tunnel.lab_credentials(lab, plan)
    rogue = create_ca(tmp_path / "rogue", "untrusted CA")
    gw_b = next(e for e in plan.endpoints if e.node == "gw-b")
    forged = rogue.issue("ike-gw-b", dns=[gw_b.identity], ips=[str(gw_b.address)],
                         usages={"ipsec"})
    creds = tunnel.Credentials(certs={**good.certs, "gw-b": forged}, trusted=good.trusted)
    message = _fails_closed(plain_lab, tmp_path, creds, "ipsec,auth=cert")
    assert "did not come up" in message
    assert ensure_lab_pki(LabPaths(plain_lab), lab.topology).ca_cert.exists()


def test_unsupported_algorithm_is_refused_before_anything_starts() -> None:
    res = teleradlab("up", "ipv4", "--name", "ipsec-nope", "--security",
                     "ipsec,esp=serpent256-sha256", "--no-services",
                     check=False)
    assert res.returncode != 0
    assert "security.ipsec.esp" in res.stderr and "cannot do serpent256" in res.stderr
    assert "aes256gcm16" in res.stderr  # the supported list
    assert not LabPaths("ipsec-nope").state_dir.exists()


@pytest.mark.parametrize("security", ["none", "ipsec"])
def test_only_ike_and_esp_cross_the_wan(security: str, tmp_path: Path) -> None:
    lab = f"wire-{security}"
    teleradlab("down", lab, check=False)
    teleradlab("up", "ipv4", "--name", lab, "--security", security)
    try:
        study = generate_study("CT", tmp_path / "study", objects=2)
        pcap = tmp_path / "wan.pcap"
        with capture(lab, "wan", pcap):
            teleradlab("exec", "--lab", lab, "modality", "--", sys.executable, "-m",
                       "lab.dicom.scu", "store", "--host=198.18.2.10",
                       *map(str, study.files))
        protocols = [f[0] for f in frames(pcap, "frame.protocols", display="ip")]
        assert protocols
        if security == "none":
            assert contains(pcap, PATIENT)
            assert any(":tcp" in p for p in protocols)
        else:
            assert not contains(pcap, PATIENT)
            assert all(p.endswith(":esp") or ":isakmp" in p for p in protocols), set(protocols)
            assert any(p.endswith(":esp") for p in protocols)
    finally:
        teleradlab("down", lab)


def test_lab_record_keeps_security_for_later_commands() -> None:
    lab = "ipsec-rec"
    teleradlab("down", lab, check=False)
    teleradlab("up", "mixed-6over4", "--name", lab, "--security", "ipsec,esp=aes128-sha256",
               "--no-services")
    try:
        attached = lifecycle.attach(lab)
        assert attached.topology.security.ipsec.esp == "aes128-sha256"
        state = tunnel.read_state(attached.paths)
        assert attached.plan.ipsec is not None and attached.plan.ipsec.esp.text == "aes128-sha256"
        assert state is not None and state.esp_algorithms.startswith("AES_CBC-128")
        shown = " ".join(teleradlab("status", lab).stdout.split())
        assert "security: ipsec site-to-site psk" in shown and "IPsec up (" in shown
        assert _ping(lab, "modality", str(attached.topology.node(
            next(n.name for n in attached.topology.nodes if n.role is Role.PACS)
        ).addresses()[0].ip))
    finally:
        teleradlab("down", lab)
