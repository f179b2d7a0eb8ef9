"""Digests, signed manifests and per-object checks on real Part-10 files written with pydicom and
real keys from the lab PKI (nothing under test is mocked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from lab.dicom.data import integrity
from lab.dicom.data.integrity import IntegrityError, Manifest, Status
from lab.security.pki import authority

STUDY = "1.2.826.0.1.3680043.8.498.1"
ROWS = COLS = 16


def make_dataset(sop_uid: str, *, study: str = STUDY, seed: int = 0) -> Dataset:
    """A small CT image: SOP Common, study/series identity and 16x16 16-bit pixels."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = study + ".1"
    ds.PatientName = "Lab^Phantom"
    ds.PatientID = "TLAB-0001"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((seed + i) % 256 for i in range(ROWS * COLS * 2))
    return ds


def write_part10(
    path: Path,
    ds: Dataset,
    *,
    syntax: str = ExplicitVRLittleEndian,
    version: str = "TLAB_SENDER",
    source_ae: str | None = None,
) -> Path:
    """Write ``ds`` as a Part-10 file with a file meta of our choosing (PS3.10 7.1)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.99")
    meta.ImplementationVersionName = version
    if source_ae is not None:
        meta.SourceApplicationEntityTitle = source_ae
    ds = ds.copy()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def encoded(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The dataset encoded on its own, as it travels in a C-STORE (pydicom, independently)."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = syntax == ImplicitVRLittleEndian
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.fixture
def ca(tmp_path: Path) -> authority.CA:
    return authority.create_ca(tmp_path / "pki")


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    (tmp_path / "sent").mkdir()
    return [
        write_part10(tmp_path / "sent" / f"ct{i}.dcm", make_dataset(f"{STUDY}.1.{i}", seed=i))
        for i in range(1, 4)
    ]


# --- digests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_digest_covers_the_dataset_not_the_file_meta(tmp_path: Path, syntax: str) -> None:
    ds = make_dataset(f"{STUDY}.1.1")
    sent = write_part10(tmp_path / "sent.dcm", ds, syntax=syntax)
    stored = write_part10(
        tmp_path / "stored.dcm", ds, syntax=syntax, version="TLAB_PACS_9", source_ae="MODALITY"
    )
    assert sent.read_bytes() != stored.read_bytes()
    assert sent.stat().st_size != stored.stat().st_size
    digest = integrity.dataset_digest(sent)
    assert digest == integrity.dataset_digest(stored)
    assert digest == integrity.digest_bytes(encoded(ds, syntax))
    with stored.open("rb") as fp:
        offset = integrity.dataset_offset(fp)
    assert stored.read_bytes()[offset:] == encoded(ds, syntax)


def test_one_changed_pixel_byte_changes_the_digest(tmp_path: Path) -> None:
    path = write_part10(tmp_path / "a.dcm", make_dataset(f"{STUDY}.1.1"))
    before = integrity.dataset_digest(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert integrity.dataset_digest(path) != before
    assert len(before) == 64 and int(before, 16) >= 0


def test_non_part10_and_damaged_meta_are_errors(tmp_path: Path) -> None:
    good = write_part10(tmp_path / "good.dcm", make_dataset(f"{STUDY}.1.1")).read_bytes()
    raw = tmp_path / "raw.dcm"
    raw.write_bytes(encoded(make_dataset(f"{STUDY}.1.1")))
    with pytest.raises(IntegrityError, match="not a DICOM Part-10 file"):
        integrity.dataset_digest(raw)
    # (0002,0000) UL value sits at bytes 140..144: claim one byte more than the group holds
    wrong = bytearray(good)
    wrong[140] += 1
    raw.write_bytes(bytes(wrong))
    with pytest.raises(IntegrityError, match="group length says the dataset starts at byte"):
        integrity.dataset_digest(raw)
    raw.write_bytes(good[:150])
    with pytest.raises(IntegrityError, match="truncated"):
        integrity.dataset_digest(raw)
    with pytest.raises(IntegrityError, match="cannot read"):
        integrity.dataset_digest(tmp_path / "absent.dcm")


# --- the manifest -----------------------------------------------------------------------------


def test_manifest_lists_every_object_and_round_trips(files: list[Path]) -> None:
    manifest = integrity.build_manifest(reversed(files), sender="MODALITY", study_uid=STUDY)
    assert [o.sop_instance_uid for o in manifest.objects] == [f"{STUDY}.1.{i}" for i in (1, 2, 3)]
    first = manifest.objects[0]
    assert first.sop_class_uid == CTImageStorage
    assert first.sha256 == integrity.dataset_digest(files[0])
    assert first.size == len(encoded(dcmread(files[0])))
    assert manifest.created.endswith("Z") and manifest.digest_algorithm == "sha-256"
    text = manifest.to_json()
    assert Manifest.from_json(text) == manifest
    assert Manifest.from_json(text).to_json() == text
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert " " not in text and "\n" not in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), "unknown field extra"),
        (lambda d: d.pop("sender"), "missing sender"),
        (lambda d: d["objects"][0].update(size="12"), "size has the wrong type"),
        (lambda d: d["objects"][0].update(size=True), "size has the wrong type"),
        (lambda d: d["objects"][0].update(sha256="00"), "bad sha256"),
        (lambda d: d.update(digest_algorithm="md5"), "digest_algorithm 'md5'"),
        (lambda d: d["objects"].append(dict(d["objects"][0])), "listed more than once"),
        (lambda d: d["objects"].clear(), "at least one object"),
    ],
)
def test_malformed_manifest_is_refused(files: list[Path], change: object, message: str) -> None:
    doc = json.loads(integrity.build_manifest(files, sender="MODALITY").to_json())
    change(doc)  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=message):
        Manifest.from_json(json.dumps(doc))


def test_manifest_refuses_foreign_study_and_unidentified_objects(
    files: list[Path], tmp_path: Path
) -> None:
    other = write_part10(tmp_path / "o.dcm", make_dataset("1.2.3.4", study="1.2.3"))
    with pytest.raises(IntegrityError, match=r"belongs to study '1\.2\.3'"):
        integrity.build_manifest([*files, other], sender="MODALITY", study_uid=STUDY)
    anonymous = dcmread(write_part10(tmp_path / "anon.dcm", make_dataset("1.2.3.5")))
    del anonymous.SOPInstanceUID
    anonymous.save_as(tmp_path / "anon.dcm", enforce_file_format=True)
    with pytest.raises(IntegrityError, match="at least one object"):
        integrity.build_manifest([], sender="MODALITY")
    with pytest.raises(IntegrityError, match=r"no SOPInstanceUID \(0008,0018\)"):
        integrity.build_manifest([tmp_path / "anon.dcm"], sender="MODALITY")


# --- signing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [("ecdsa-p256", integrity.ECDSA_SHA256), ("rsa-2048", integrity.RSA_PSS_SHA256)],
)
def test_sign_write_read_verify(
    ca: authority.CA, files: list[Path], tmp_path: Path, key_type: str, algorithm: str
) -> None:
    signer = ca.issue("modality", usages={"signing"}, key_type=key_type)  # type: ignore[arg-type]
    manifest = integrity.build_manifest(files, sender="MODALITY", study_uid=STUDY)
    signed = integrity.sign_manifest(manifest, signer.key_path, signer.cert_path)
    assert signed.signature_algorithm == algorithm
    integrity.write_signed(signed, tmp_path / "manifest.json")
    back = integrity.read_signed(tmp_path / "manifest.json")
    assert back == signed
    result = integrity.verify_manifest(back, ca.cert_path)
    assert result.ok, result.reason
    assert result.signer == "modality"
    assert "signature valid" in result.reason


def signed_file(ca: authority.CA, files: list[Path], path: Path, usage: str = "signing") -> Path:
    signer = ca.issue("modality", usages={usage})  # type: ignore[arg-type]
    manifest = integrity.build_manifest(files, sender="MODALITY")
    integrity.write_signed(
        integrity.sign_manifest(manifest, signer.key_path, signer.cert_path), path
    )
    return path


def test_tampered_manifest_fails(ca: authority.CA, files: list[Path], tmp_path: Path) -> None:
    path = signed_file(ca, files, tmp_path / "m.json")
    doc = json.loads(path.read_text())
    digest = doc["manifest"]["objects"][1]["sha256"]
    doc["manifest"]["objects"][1]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    path.write_text(json.dumps(doc))
    result = integrity.verify_manifest(integrity.read_signed(path), ca.cert_path)
    assert not result.ok and not result.signature_valid and result.chain_valid
    assert "signature does not match the manifest" in result.reason


def test_algorithm_claim_must_fit_the_key(
        ca: authority.CA, files: list[Path], tmp_path: Path) -> None:
    path = signed_file(ca, files, tmp_path / "m.json")
    doc = json.loads(path.read_text())
    doc["signature_algorithm"] = integrity.RSA_PSS_SHA256
    path.write_text(json.dumps(doc))
    result = integrity.verify_manifest(integrity.read_signed(path), ca.cert_path)
    assert not result.ok and "does not fit the signer's" in result.reason


def test_signer_from_untrusted_ca_fails(
        ca: authority.CA, files: list[Path], tmp_path: Path) -> None:
    rogue = authority.create_ca(tmp_path / "rogue", "rogue CA")
    signed = integrity.read_signed(signed_file(rogue, files, tmp_path / "m.json"))
    result = integrity.verify_manifest(signed, ca.cert_path)
    assert result.signature_valid and not result.chain_valid and not result.ok
    assert "signer not trusted" in result.reason and "not issued by" in result.reason
    # the same file is fine for whoever trusts the rogue CA: only the anchor differs
    assert integrity.verify_manifest(signed, rogue.cert_path).ok


def test_signer_needs_a_signing_certificate(
        ca: authority.CA, files: list[Path], tmp_path: Path) -> None:
    signed = integrity.read_signed(signed_file(ca, files, tmp_path / "m.json", "server"))
    result = integrity.verify_manifest(signed, ca.cert_path)
    assert not result.ok and "not issued for 'signing'" in result.reason


def test_bad_signer_input_is_a_result_not_an_exception(
    ca: authority.CA, files: list[Path], tmp_path: Path
) -> None:
    signed = integrity.read_signed(signed_file(ca, files, tmp_path / "m.json"))
    broken = integrity.SignedManifest(
        signed.manifest, signed.signature, signed.signature_algorithm, "junk"
    )
    result = integrity.verify_manifest(broken, ca.cert_path)
    assert not result.ok and "signer certificate unreadable" in result.reason


def test_signing_needs_a_matching_pair(ca: authority.CA, files: list[Path]) -> None:
    one = ca.issue("one", usages={"signing"})
    two = ca.issue("two", usages={"signing"})
    manifest = integrity.build_manifest(files, sender="MODALITY")
    with pytest.raises(IntegrityError, match="not the private key"):
        integrity.sign_manifest(manifest, one.key_path, two.cert_path)


def test_read_signed_refuses_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(IntegrityError, match="cannot read signed manifest"):
        integrity.read_signed(path)
    path.write_text(json.dumps({"format": "x"}))
    with pytest.raises(IntegrityError, match="missing"):
        integrity.read_signed(path)


# --- checking what arrived --------------------------------------------------------------------


def test_check_objects_reports_every_object(files: list[Path], tmp_path: Path) -> None:
    manifest = integrity.build_manifest(files, sender="MODALITY", study_uid=STUDY)
    got = tmp_path / "received"
    got.mkdir()
    # 1: stored by the receiver with its own file meta -> ok
    ok = write_part10(got / "a.dcm", dcmread(files[0]), version="PACS", source_ae="MODALITY")
    # 2: one pixel byte flipped in transit -> digest-mismatch
    bad = got / "b.dcm"
    data = bytearray(files[1].read_bytes())
    data[-2] ^= 0xFF
    bad.write_bytes(bytes(data))
    # 3: never arrives -> missing; plus an object nobody sent, a second copy of 1, and junk
    extra = write_part10(got / "c.dcm", make_dataset(f"{STUDY}.1.99"))
    dup = shutil.copy(files[0], got / "d.dcm")
    junk = got / "e.dcm"
    junk.write_bytes(b"not dicom at all")

    checks = integrity.check_objects(manifest, sorted(got.iterdir()))
    by_status = {(c.status, c.sop_instance_uid, c.path) for c in checks}
    assert by_status == {
        (Status.OK, f"{STUDY}.1.1", ok),
        (Status.DIGEST_MISMATCH, f"{STUDY}.1.2", bad),
        (Status.MISSING, f"{STUDY}.1.3", None),
        (Status.UNEXPECTED, f"{STUDY}.1.99", extra),
        (Status.DUPLICATE, f"{STUDY}.1.1", Path(dup)),
        (Status.UNREADABLE, None, junk),
    }
    mismatch = next(c for c in checks if c.status == Status.DIGEST_MISMATCH)
    assert mismatch.expected_sha256 == manifest.objects[1].sha256
    assert mismatch.actual_sha256 == integrity.dataset_digest(bad) != mismatch.expected_sha256
    summary = integrity.summarize(checks)
    assert not summary.all_ok and summary.total == 6
    assert summary.counts == {status: 1 for status in Status}
    assert str(summary).startswith("1 digest-mismatch, 1 duplicate, 1 missing")


def test_check_objects_all_ok(files: list[Path], tmp_path: Path) -> None:
    manifest = integrity.build_manifest(files, sender="MODALITY")
    got = tmp_path / "received"
    got.mkdir()
    received = [
        write_part10(got / p.name, dcmread(p), version=f"PACS_{i}") for i, p in enumerate(files)
    ]
    checks = integrity.check_objects(manifest, received)
    assert [c.status for c in checks] == [Status.OK] * 3
    summary = integrity.summarize(checks)
    assert summary.all_ok and str(summary) == "3 ok"
    assert not integrity.summarize(integrity.check_objects(manifest, received[:2])).all_ok
