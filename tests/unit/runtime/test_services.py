"""Which DICOM programs a lab starts, where, and the C-MOVE destinations the PACS is given."""

from __future__ import annotations

from pathlib import Path

from fakes import fake_lab, shipped  # tests/unit/fakes.py: pytest puts tests/unit on sys.path

from lab.model.topology import Family
from lab.runtime.services import dicom_services, move_destinations, receivers, tls_arguments
from lab.study.run import routed_families
from lab.topology import load, shipped_dir


def _topo(name: str):  # type: ignore[no-untyped-def]
    return load(shipped_dir() / f"{name}.yaml")


def test_receivers_are_the_modality_and_workstations() -> None:
    assert receivers(_topo("ipv6")) == {"modality": "MODALITY", "workstation": "WORKSTATION"}
    assert receivers(_topo("ipv4")) == {"modality": "MODALITY"}


def test_move_destinations_per_family() -> None:
    plain = fake_lab(_topo("dualstack"), Path("/nonexistent")).plan
    dual = move_destinations(_topo("dualstack"), plain)
    assert dual["MODALITY-V4"] == "198.18.1.10:11113"
    assert dual["MODALITY-V6"] == "2001:db8:1::10:11113"
    assert dual["MODALITY"] == dual["MODALITY-V6"]  # IPv6 preferred when present
    v4 = move_destinations(_topo("ipv4"), plain)
    assert v4 == {"MODALITY-V4": "198.18.1.10:11113", "MODALITY": "198.18.1.10:11113"}
    tls = fake_lab(shipped("ipv4", "tls"), Path("/nonexistent")).plan
    assert move_destinations(_topo("ipv4"), tls)["MODALITY"] == "198.18.1.10:2762"


def test_services_run_in_their_nodes_with_their_stores(tmp_path: Path) -> None:
    services = {s.node: s for s in dicom_services(fake_lab(_topo("ipv6"), tmp_path))}
    assert set(services) == {"pacs", "modality", "workstation"}
    pacs = services["pacs"]
    assert pacs.port == 11112 and "--ae=PACS" in pacs.argv
    assert f"--root={tmp_path / 'data' / 't' / 'nodes' / 'pacs' / 'store'}" in pacs.argv
    assert "--destination=WORKSTATION=2001:db8:2::11:11113" in pacs.argv
    assert "--storage-only" in services["modality"].argv
    assert "--ae=MODALITY" in services["modality"].argv


def test_stores_flush_as_the_topology_says(tmp_path: Path) -> None:
    """No fsync by default (a lab's stores go with it); ``archive: {sync: object}`` makes the
    PACS and every receiver flush each object before answering."""
    text = (shipped_dir() / "ipv6.yaml").read_text()
    for extra, sync in (("", "none"), ("archive: {sync: object}\n", "object")):
        source = tmp_path / f"t{sync}.yaml"
        source.write_text(text + extra)
        services = dicom_services(fake_lab(load(source), tmp_path))
        assert len(services) == 3
        assert all(s.argv.count(f"--sync={sync}") == 1 for s in services), services


def test_routed_families() -> None:
    def families(name: str, mode: str = "none") -> list[Family]:
        return routed_families(fake_lab(shipped(name, mode), Path("/nonexistent")),
                               "modality", "pacs")

    assert families("dualstack") == [Family.IPV4, Family.IPV6]
    assert families("ipv6") == [Family.IPV6]
    assert families("mixed-4over6") == []
    # TLS on a mixed topology: the plan adds the transition tunnel, and the sites' family
    assert families("mixed-4over6", "tls") == [Family.IPV4]


def test_tls_services_listen_on_the_tls_port_with_the_lab_ca(tmp_path: Path) -> None:
    """With DICOM TLS in the plan every listener uses the TLS port and gets a certificate from
    the lab CA; only a client is given the suite the topology pins."""
    lab = fake_lab(load(shipped_dir() / "ipv4.yaml", {"security": {
        "mode": "tls", "tls": {"profile": "extended", "cipher": "ECDHE-RSA-AES128-GCM-SHA256"}}}),
        tmp_path)
    services = dicom_services(lab)
    assert {s.port for s in services} == {2762}
    pacs = next(s for s in services if s.name == "pacs")
    assert "--tls-profile=extended" in pacs.argv
    assert not any(a.startswith("--tls-cipher") for a in pacs.argv)
    ca = lab.paths.data_dir / "pki"
    assert any(a.startswith(f"--tls-ca={ca}") for a in pacs.argv)
    client = tls_arguments(lab, "modality", client=True)
    assert "--tls-cipher=ECDHE-RSA-AES128-GCM-SHA256" in client
    assert all(Path(a.split("=", 1)[1]).is_file() for a in client
               if a.split("=")[0] in ("--tls-cert", "--tls-key", "--tls-ca"))
