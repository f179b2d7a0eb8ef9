"""The object-security node program of runs (lab.dicom.objsec): protect at the sender, check at
the receiver through a real archive store, the courier's export and import; tamper cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread

from lab.dicom import objsec
from lab.dicom.archive.store import Store
from lab.dicom.data.generate import generate_study
from lab.dicom.data.integrity import build_manifest, sign_manifest, write_signed
from lab.dicom.reports import parse_output
from lab.model.names import LabPaths
from lab.security.pki.lab_pki import LabPki, ensure_lab_pki
from lab.topology import load, resolve_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    root = tmp_path_factory.mktemp("pki")
    return ensure_lab_pki(LabPaths("i14b-objsec", root=root, data_root=root),
                          load(resolve_path("ipv4")))


def _send(pki: LabPki, tmp: Path, mode: str) -> tuple[dict[str, object], Path, Path]:
    """Generate 2 CT objects, their signed manifest, protect them, store them in an archive."""
    study = generate_study("CT", tmp / "orig", seed=3, objects=2)
    originals = tmp / "originals.json"
    write_signed(sign_manifest(build_manifest(study.files, sender="a"),
                               pki.signer("a").key_path, pki.signer("a").cert_path), originals)
    a, b = pki.objects("a"), pki.objects("b")
    doc = objsec.protect(study.files, tmp / "sent", mode, a.key_path, a.cert_path, b.cert_path)
    with Store.open(tmp / "store") as store:
        for name in doc["files"]:  # type: ignore[union-attr]
            ds = dcmread(name, stop_before_pixels=True)
            store.store_encoded(Path(name), ds.file_meta.TransferSyntaxUID, ds.SOPClassUID,
                                ds.SOPInstanceUID)
    return doc, originals, tmp / "store"


@pytest.mark.parametrize("mode", ["sign", "deid", "sign+deid"])
def test_protected_objects_verify_and_come_back_exactly(pki: LabPki, tmp_path: Path,
                                                        mode: str) -> None:
    doc, originals, store = _send(pki, tmp_path, mode)
    assert doc["objects"] == 2
    assert (float(doc["sign_seconds"]) > 0) == ("sign" in mode)  # type: ignore[arg-type]
    assert (float(doc["deid_seconds"]) > 0) == ("deid" in mode)  # type: ignore[arg-type]
    sent = dcmread(doc["files"][0])  # type: ignore[index]
    if "deid" in mode:
        assert "PatientName" not in sent or str(sent.PatientName) == ""
        assert sent.PatientIdentityRemoved == "YES"
    b = pki.objects("b")
    result = objsec.check(store, str(doc["study_uid"]), mode, pki.ca_cert, b.key_path,
                          b.cert_path, originals, tmp_path / "reid")
    assert result["ok"], result["problems"]
    assert result["reidentified"] == (2 if "deid" in mode else 0)
    assert (result["verify_seconds"] > 0) == ("sign" in mode)


def test_a_changed_signed_element_is_named_with_its_object(pki: LabPki, tmp_path: Path) -> None:
    doc, _, store = _send(pki, tmp_path, "sign")
    victim = next((store / "objects").rglob("*.dcm"))
    ds = dcmread(victim)
    ds.PatientName = "Mallory^Eve"
    ds.save_as(victim)
    result = objsec.check(store, str(doc["study_uid"]), "sign", pki.ca_cert)
    assert not result["ok"]
    [problem] = result["problems"]
    assert problem["sop_instance_uid"] == ds.SOPInstanceUID
    assert "FAILED" in problem["detail"] and ds.SOPInstanceUID in problem["detail"]


def test_an_unsigned_object_and_a_wrong_key_are_refused(pki: LabPki, tmp_path: Path) -> None:
    doc, originals, store = _send(pki, tmp_path, "deid")
    assert not objsec.check(store, str(doc["study_uid"]), "sign", pki.ca_cert)["ok"]
    a = pki.objects("a")  # the sender cannot read what it encrypted for b
    result = objsec.check(store, str(doc["study_uid"]), "deid", pki.ca_cert, a.key_path,
                          a.cert_path, originals, tmp_path / "reid")
    assert not result["ok"] and result["reidentified"] == 0
    assert any(p["status"] == "reid" for p in result["problems"])
    assert not (tmp_path / "reid").exists() or not any((tmp_path / "reid").iterdir())


def test_courier_export_then_import_checks_against_the_manifest(pki: LabPki,
                                                                tmp_path: Path) -> None:
    study = generate_study("MR", tmp_path / "orig", seed=4, objects=2)
    manifest = tmp_path / "m.json"
    write_signed(sign_manifest(build_manifest(study.files, sender="a"),
                               pki.signer("a").key_path, pki.signer("a").cert_path), manifest)
    a, b = pki.objects("a"), pki.objects("b")
    made = objsec.export(study.files, tmp_path / "medium", a.key_path, a.cert_path, b.cert_path)
    assert made["objects"] == 2 and made["export_seconds"] > 0
    got = objsec.import_(tmp_path / "medium", tmp_path / "in", b.key_path, b.cert_path,
                         pki.ca_cert, manifest)
    assert got["ok"], got["problems"]
    assert got["objects"] == 2 and got["import_seconds"] > 0
    # a changed byte in one secure file: refused, named, nothing imported
    victim = next(p for p in (tmp_path / "medium").rglob("*") if p.is_file()
                  and p.name != "DICOMDIR")
    data = bytearray(victim.read_bytes())
    data[-40] ^= 1
    victim.write_bytes(bytes(data))
    bad = objsec.import_(tmp_path / "medium", tmp_path / "in2", b.key_path, b.cert_path,
                         pki.ca_cert, manifest)
    assert not bad["ok"] and not (tmp_path / "in2").exists()
    assert any(victim.name in p["detail"] for p in bad["problems"])


def test_main_prints_one_json_document(pki: LabPki, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert objsec.main(["check", "--mode", "sign", "--store", str(tmp_path), "--study", "1.2",
                        "--ca", str(pki.ca_cert)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["problems"][0]["status"] == "missing"


def test_every_step_prints_its_checked_report(pki: LabPki, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    study = generate_study("CT", tmp_path / "orig", seed=5, objects=1)
    a, b = pki.objects("a"), pki.objects("b")
    keys = [f"--key={a.key_path}", f"--cert={a.cert_path}", f"--recipient={b.cert_path}"]
    assert objsec.main(["protect", "--mode=sign+deid", f"--out={tmp_path / 'sent'}", *keys,
                        str(study.files[0])]) == 0
    protect = parse_output("objsec-protect", capsys.readouterr().out)
    assert protect.ok and protect.objects == 1 and protect.study_uid
    assert objsec.main(["export", f"--out={tmp_path / 'disc'}", *keys,
                        *(protect.files or [])]) == 0
    export = parse_output("objsec-export", capsys.readouterr().out)
    assert export.ok and export.bytes and export.export_seconds
    # a refused file-set: ok false, the reason, every problem, still a valid report
    assert objsec.main(["import", f"--fileset={tmp_path / 'disc'}", f"--out={tmp_path / 'in'}",
                        f"--key={a.key_path}", f"--cert={a.cert_path}", f"--ca={pki.ca_cert}",
                        f"--manifest={tmp_path / 'none.json'}"]) == 1
    refused = parse_output("objsec-import", capsys.readouterr().out)
    assert not refused.ok and refused.error and refused.problems
