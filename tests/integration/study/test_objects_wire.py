"""Attribute confidentiality on the wire (PS3.15 Annex E, issue 14 deliverable 2): a run with
de-identification and NO transport security sends nothing of the patient's identity across the
WAN, while the PACS's site restores every object exactly. The same lab run without object
security shows the same capture would have caught the values (the test can fail)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from lab.dicom import MODALITY_AE
from lab.dicom.archive.schema import study_paths
from lab.model.names import LabPaths

from ..capture import capture, contains
from ..conftest import teleradlab

LAB = "i14b-wire"
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
               "InstitutionName", "ReferringPhysicianName")


def _run(out: Path, object_security: str) -> list[dict[str, str]]:
    teleradlab("run", "--lab", LAB, "--objects", "2", "--out", str(out),
               "--object-security", object_security, timeout=600)
    with (out / "results.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _identities(data: Path) -> dict[str, bytes]:
    """Each identifying value of the generated originals, as its bytes on the wire."""
    values: dict[str, bytes] = {}
    for path in sorted(data.rglob("*.dcm")):
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in IDENTIFYING:
            value = str(ds.get(keyword, "") or "").encode("ascii")
            assert value, f"{path}: the generator left {keyword} empty"
            values[f"{keyword}={value.decode()}"] = value
    return values


@pytest.fixture(scope="module")
def lab() -> Iterator[str]:
    teleradlab("down", LAB, check=False)
    teleradlab("up", "ipv4", "--name", LAB, "--security", "none", timeout=300)
    yield LAB
    teleradlab("down", LAB)


def test_deid_without_transport_security_leaves_no_identity_on_the_wan(
        lab: str, tmp_path: Path) -> None:
    # control: the same capture, without object security, holds the identities in clear
    with capture(LAB, "wan", tmp_path / "plain.pcap") as pcap:
        rows = _run(tmp_path / "plain", "none")
    assert all(r["ok"] == "True" for r in rows), rows
    plain = _identities(tmp_path / "plain" / "data")
    assert all(contains(pcap, value) for value in plain.values()), plain
    with capture(LAB, "wan", tmp_path / "deid.pcap") as pcap:
        rows = _run(tmp_path / "deid", "deid")
    store = next(r for r in rows if r["operation"] == "store")
    assert store["ok"] == "True" and store["verified"] == "yes", store["detail"]
    assert store["object_security"] == "deid" and float(store["deid_seconds"]) > 0
    assert float(store["reid_seconds"]) > 0
    originals = _identities(tmp_path / "deid" / "data")
    leaked = [name for name, value in originals.items() if contains(pcap, value)]
    assert not leaked, f"on the WAN despite de-identification: {leaked}"
    assert pcap.stat().st_size > 2 * 500_000  # the two CT objects did cross this capture
    # the PACS's site restored them exactly: the check compared the re-identified objects'
    # digests with the sender's signed manifest of the originals (a mismatch fails the row);
    # and here, value by value
    run = json.loads((tmp_path / "deid" / "run.json").read_text())
    assert run["all_ok"], run.get("error")
    restored = LabPaths(LAB).node_data("pacs") / "reidentified"
    assert _identities(restored) == originals


def test_sign_deid_and_courier_in_a_run_verify_at_both_sites(lab: str, tmp_path: Path) -> None:
    """The whole path: signed and de-identified at the modality's site, verified and
    re-identified at the PACS's after C-STORE, verified again at the modality's after C-MOVE,
    carried on secure media by the courier; every step timed in its row."""
    teleradlab("run", "--lab", LAB, "--objects", "3", "--repeat", "2", "--out",
               str(tmp_path / "sd"), "--object-security", "sign+deid", "--courier",
               timeout=600)
    with (tmp_path / "sd" / "results.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["operation"] for r in rows if r["repetition"] == "1"] == [
        "echo", "store", "find", "move", "courier"]
    for r in rows:
        assert r["ok"] == "True", r
        if r["operation"] in ("store", "move", "courier"):
            assert r["verified"] == "yes" and r["object_security"] == "sign+deid"
    store = [r for r in rows if r["operation"] == "store"]
    assert all(float(r[c]) > 0 for r in store for c in ("sign_seconds", "deid_seconds",
                                                         "verify_seconds", "reid_seconds"))
    assert all(float(r["verify_seconds"]) > 0 for r in rows if r["operation"] == "move")
    courier = [r for r in rows if r["operation"] == "courier"]
    assert len(courier) == 2 and all(r["family"] == "" and int(r["objects"]) == 3
                                     for r in courier)
    assert all(float(r["export_seconds"]) > 0 and float(r["import_seconds"]) > 0
               for r in courier)
    text = teleradlab("report", str(tmp_path / "sd")).stdout
    report = (tmp_path / "sd" / "report.html").read_text(encoding="utf-8")
    assert "what object security costs per study" in report, text
    assert "none + sign+deid" in report


def test_tampering_in_the_archive_is_named_after_c_move(lab: str, tmp_path: Path) -> None:
    """A signed study changed at rest in the PACS's archive (a patient name rewritten): the
    modality's site names the object and the failed signature after C-MOVE, inside its node."""
    out = tmp_path / "signed"
    teleradlab("run", "--lab", LAB, "--objects", "2", "--out", str(out), "--object-security",
               "sign", timeout=600)
    paths = LabPaths(LAB)
    sent = sorted((paths.node_data("modality") / "sent").rglob("*.dcm"),
                  key=lambda p: p.stat().st_mtime)
    study = str(dcmread(sent[-1], stop_before_pixels=True).StudyInstanceUID)
    victim = study_paths(paths.node_data("pacs") / "store", study)[0]
    ds = dcmread(victim)
    ds.PatientName = "MALLORY^EVE"
    ds.save_as(victim)
    received = paths.node_data("modality") / "received"
    teleradlab("exec", "--lab", LAB, "modality", "--", sys.executable, "-m", "lab.dicom.scu",
               "move", "--host=198.18.2.10", "--level=STUDY",
               f"--key=StudyInstanceUID={study}", f"--dest={MODALITY_AE}-V4")
    res = teleradlab("exec", "--lab", LAB, "modality", "--", sys.executable, "-m",
                     "lab.dicom.objsec", "check", "--mode=sign", f"--store={received}",
                     f"--study={study}", f"--ca={paths.data_dir / 'pki' / 'ca.crt'}",
                     check=False)
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.returncode == 1 and not doc["ok"] and doc["objects"] == 2
    [problem] = doc["problems"]
    assert problem["sop_instance_uid"] == ds.SOPInstanceUID
    assert "FAILED" in problem["detail"] and ds.SOPInstanceUID in problem["detail"]
