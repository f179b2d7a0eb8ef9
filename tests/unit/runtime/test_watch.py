"""lab.runtime.watch and the view of ``teleradlab watch`` without root: the kernel and VICI
readers are injected (the fake backend has no namespaces); what is tested is what the watch
makes of them — rates over the real interval, the services' logs counted, what could not be
read named — and the document it makes."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import fake_lab, shipped

from lab.backends.base import Lab
from lab.runtime import watch
from lab.runtime.services import dicom_services


def _link(node: str, iface: str, rx: int, tx: int, queue: int = 0) -> watch.LinkSample:
    return watch.LinkSample(node, iface, rx, tx, rx // 1000, tx // 1000, 0, queue, queue * 1500,
                            0)


def _sa(node: str, bytes_in: int, bytes_out: int) -> watch.SaSample:
    return watch.SaSample(node, "teleradlab", "INSTALLED", "c1", "c2", bytes_in, bytes_out,
                          1, 1, "AES_GCM_16")


def _snap(t: float, rx: int, tx: int, sa_in: int = 0) -> watch.Snapshot:
    return watch.Snapshot("t", t, "none", {}, links=[_link("wan", "gw-a", rx, tx, 3)],
                          sas=[_sa("gw-a", sa_in, 0)])


def test_rates_are_bits_over_the_time_between_samples() -> None:
    before, after = _snap(100.0, 0, 1_000_000), _snap(102.0, 2_500_000, 1_000_000, 500_000)
    assert watch.rates(before, after) == {
        "wan:gw-a": {"rx_mbit_s": 10.0, "tx_mbit_s": 0.0},
        "gw-a:teleradlab:c1": {"in_mbit_s": 2.0, "out_mbit_s": 0.0}}
    doc = watch.document(before, after)
    assert doc["interval_seconds"] == 2.0
    assert doc["links"][0] | {} == {
        "node": "wan", "interface": "gw-a", "rx_bytes": 2_500_000, "tx_bytes": 1_000_000,
        "rx_packets": 2500, "tx_packets": 1000, "dropped": 0, "queue_packets": 3,
        "queue_bytes": 4500, "queue_drops": 0, "rx_mbit_s": 10.0, "tx_mbit_s": 0.0}
    json.dumps(doc)  # JSON as it is


def test_counters_that_went_back_give_no_negative_rate() -> None:
    assert watch.rates(_snap(0, 500, 0), _snap(1, 100, 0))["wan:gw-a"]["rx_mbit_s"] == 0.0


def _services_logged(lab: Lab) -> None:
    for svc in dicom_services(lab):
        svc.log.parent.mkdir(parents=True, exist_ok=True)
        lines = ["PACS listening on [::]:11112"]
        if svc.name == "pacs":
            lines += ["2026-12-03 22:53:33,855 lab.dicom.pacs INFO association from MODALITY: "
                      "1 of 1 contexts accepted",
                      "2026-12-03 22:53:34,073 lab.dicom.pacs INFO stored 2.25.9 (525638 bytes)",
                      "2026-12-03 22:53:34,112 lab.dicom.pacs INFO stored 2.25.8 (1000 bytes)"]
        svc.log.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_sample_reads_every_node_sa_and_service(tmp_path: Path) -> None:
    topo = shipped("ipv4", "ipsec")
    lab = fake_lab(topo, tmp_path)
    _services_logged(lab)
    asked: list[str] = []

    def links(lab: Lab, node: str) -> list[watch.LinkSample]:
        asked.append(node)
        if node == "pacs":
            raise OSError("namespace gone")
        return [_link(node, "eth", 10, 20)]

    snap = watch.sample(lab, links=links, sas=lambda _lab, node: [_sa(node, 1, 2)],
                        clients=lambda _lab, node: [])
    assert asked == [n.name for n in topo.nodes]
    assert {x.node for x in snap.links} == {n.name for n in topo.nodes} - {"pacs"}
    assert snap.problems == ["pacs: namespace gone"]
    assert [s.node for s in snap.sas] == ["gw-a", "gw-b"]  # the charon nodes of the plan
    pacs = next(s for s in snap.services if s.service == "pacs")
    assert (pacs.associations_total, pacs.objects_stored, pacs.bytes_stored) == (1, 2, 526638)
    assert pacs.associations_open == 0  # no process in a fake node
    receiver = next(s for s in snap.services if s.service == "receiver")
    assert receiver.objects_stored == 0
    assert snap.wan["path"] == "unimpaired" and snap.security.startswith("ipsec")


def test_a_charon_that_does_not_answer_is_named(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "ipsec"), tmp_path)

    def sas(_lab: Lab, node: str) -> list[watch.SaSample]:
        raise ConnectionRefusedError(f"no vici socket in {node}")

    snap = watch.sample(lab, links=lambda _l, _n: [], sas=sas, clients=lambda _l, _n: [])
    assert [p.split(":")[0] for p in snap.problems] == ["charon on gw-a", "charon on gw-b"]


def test_proc_net_tcp_endpoints_decoded() -> None:
    assert watch._endpoint("0A0112C6:DE54") == "198.18.1.10 56916"
    assert watch._endpoint("0000000000000000FFFF00000A0112C6:2B68") == "198.18.1.10 11112"
    assert watch._endpoint("B80D0120000000000000000002000000:0050") == "2001:db8::2 80"


def test_objects_of_the_open_associations_counted_from_the_log() -> None:
    log = "\n".join(["x association from MODALITY: 1 of 1 contexts accepted",
                     "x stored 2.25.1 (10 bytes)",
                     "x association from MODALITY: 1 of 1 contexts accepted",
                     "x stored 2.25.2 (20 bytes)",
                     "x association from MODALITY: 1 of 1 contexts accepted",
                     "x stored 2.25.3 (30 bytes)", "x stored 2.25.4 (40 bytes)"])
    assert watch.log_counts(log, 0) == (3, 4, 100, 0)
    assert watch.log_counts(log, 1) == (3, 4, 100, 2)  # since the last association
    assert watch.log_counts(log, 2) == (3, 4, 100, 3)
    assert watch.log_counts(log, 5) == (3, 4, 100, 0)  # more open than the log knows: none
    assert watch.log_counts("", 0) == (0, 0, 0, 0)
