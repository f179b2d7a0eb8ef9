"""Which DICOM programs a lab starts, where, and the C-MOVE destinations the PACS is given."""

from __future__ import annotations

from pathlib import Path

from lab.model.names import LabPaths
from lab.model.topology import Family
from lab.runtime.services import dicom_services, move_destinations, receivers
from lab.study.run import routed_families
from lab.topology import load, shipped_dir


def _topo(name: str):  # type: ignore[no-untyped-def]
    return load(shipped_dir() / f"{name}.yaml")


def test_receivers_are_the_modality_and_workstations() -> None:
    assert receivers(_topo("ipv6")) == {"modality": "MODALITY", "workstation": "WORKSTATION"}
    assert receivers(_topo("ipv4")) == {"modality": "MODALITY"}


def test_move_destinations_per_family() -> None:
    dual = move_destinations(_topo("dualstack"))
    assert dual["MODALITY-V4"] == "198.18.1.10:11113"
    assert dual["MODALITY-V6"] == "2001:db8:1::10:11113"
    assert dual["MODALITY"] == dual["MODALITY-V6"]  # IPv6 preferred when present
    v4 = move_destinations(_topo("ipv4"))
    assert v4 == {"MODALITY-V4": "198.18.1.10:11113", "MODALITY": "198.18.1.10:11113"}


def test_services_run_in_their_nodes_with_their_stores(tmp_path: Path) -> None:
    paths = LabPaths("t", tmp_path / "run", tmp_path / "data")
    services = {s.node: s for s in dicom_services(_topo("ipv6"), paths)}
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
    paths = LabPaths("t", tmp_path / "run", tmp_path / "data")
    text = (shipped_dir() / "ipv6.yaml").read_text()
    for extra, sync in (("", "none"), ("archive: {sync: object}\n", "object")):
        source = tmp_path / f"t{sync}.yaml"
        source.write_text(text + extra)
        services = dicom_services(load(source), paths)
        assert len(services) == 3
        assert all(s.argv.count(f"--sync={sync}") == 1 for s in services), services


def test_routed_families() -> None:
    assert routed_families(_topo("dualstack"), "modality", "pacs") == [Family.IPV4, Family.IPV6]
    assert routed_families(_topo("ipv6"), "modality", "pacs") == [Family.IPV6]
    assert routed_families(_topo("mixed-4over6"), "modality", "pacs") == []
