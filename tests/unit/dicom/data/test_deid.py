"""Attribute confidentiality (lab.dicom.data.deid, PS3.15 Annex E): Table E.1-1 as data, the
profile and its options on the generator's objects, the original values back at the receiver
exactly, and a wrong key refused with nothing overwritten."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from lab.dicom.data.deid import (
    Deidentifier,
    deidentify,
    deidentify_file,
    recipients,
    reidentify,
    reidentify_file,
)
from lab.dicom.data.deid_table import EDITION, DeidError, check_options, row_for, table
from lab.dicom.data.dsig import sign, verify
from lab.dicom.data.generate import MODALITIES, generate_study

from .pki_helpers import Site, make_site

IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
               "InstitutionName", "ReferringPhysicianName")


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("b"), "pacs-b")


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("x"), "elsewhere", "another CA")


def _object(tmp_path: Path, modality: str = "CT", objects: int = 1) -> list[Path]:
    return list(generate_study(modality, tmp_path / modality, objects=objects).files)


def test_the_table_is_the_standards() -> None:
    exact, patterns = table()
    assert "2024b" in EDITION and len(exact) + len(patterns) == 621
    assert row_for(0x00100010).actions == {"basic": "Z"}  # type: ignore[union-attr]
    sop = row_for(0x00080018)
    assert sop is not None and sop.action(frozenset()) == "U"
    assert sop.action(frozenset({"retain-uids"})) == "K"
    assert row_for(0x60023000).name == "Overlay Data"  # type: ignore[union-attr]
    assert row_for(0x00091001).name == "Private Attributes"  # type: ignore[union-attr]
    assert row_for(0x00280010) is None  # Rows: not identifying, kept


def test_options_refused_and_exclusive() -> None:
    with pytest.raises(DeidError, match="retain-safe-private need content knowledge"):
        check_options(["retain-safe-private"])
    with pytest.raises(DeidError, match="unknown option"):
        check_options(["retain-everything"])
    with pytest.raises(DeidError, match="exclude each other"):
        check_options(["retain-long-full-dates", "retain-long-modified-dates"])


@pytest.mark.parametrize("modality", MODALITIES)
def test_no_identifying_value_is_left_and_all_come_back(tmp_path: Path, site_b: Site,
                                                        modality: str) -> None:
    [original] = _object(tmp_path, modality)
    before = dcmread(original)
    session = Deidentifier((site_b.cert,))
    out = tmp_path / "deid.dcm"
    deidentified = deidentify_file(original, out, session)
    raw = out.read_bytes()
    for keyword in IDENTIFYING:
        value = str(before[keyword].value)
        assert value and value.encode() not in raw, keyword
    for uid in (before.SOPInstanceUID, before.StudyInstanceUID, before.SeriesInstanceUID):
        assert uid.encode() not in raw
    assert deidentified.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in deidentified.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]
    assert deidentified.file_meta.MediaStorageSOPInstanceUID == deidentified.SOPInstanceUID
    back = tmp_path / "back.dcm"
    reidentify_file(out, back, site_b.key, site_b.cert)
    restored = dcmread(back)
    assert restored == before
    assert restored.file_meta.MediaStorageSOPInstanceUID == before.SOPInstanceUID


def test_uids_map_alike_across_a_study(tmp_path: Path, site_b: Site) -> None:
    files = _object(tmp_path, "CT", objects=3)
    session = Deidentifier((site_b.cert,))
    outs = [deidentify(dcmread(path), session) for path in files]
    assert len({ds.StudyInstanceUID for ds in outs}) == 1
    assert len({ds.SOPInstanceUID for ds in outs}) == 3
    assert outs[0].StudyInstanceUID != dcmread(files[0]).StudyInstanceUID
    kept = deidentify(dcmread(files[0]), Deidentifier((site_b.cert,), {"retain-uids"}))
    assert kept.SOPInstanceUID == dcmread(files[0]).SOPInstanceUID


def test_the_options(tmp_path: Path, site_b: Site) -> None:
    [path] = _object(tmp_path)
    ds = dcmread(path)
    ds.DeviceSerialNumber = "SN-4711"
    ds.StationName = "CT-ROOM-2"
    ds.StudyDescription = f"follow-up of {ds.PatientName.family_name} at teleradlab"
    options = {"retain-device-identity", "retain-long-modified-dates", "clean-descriptors"}
    session = Deidentifier((site_b.cert,), options, date_offset_days=-10)
    out = deidentify(ds, session)
    assert out.DeviceSerialNumber == "SN-4711" and out.StationName == "CT-ROOM-2"
    moved = datetime.strptime(ds.StudyDate, "%Y%m%d") - timedelta(days=10)
    assert out.StudyDate == moved.strftime("%Y%m%d")
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert out.StudyDescription.startswith("follow-up of XXXXXXX at")
    assert ds.PatientName.family_name not in out.StudyDescription
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113109", "113107", "113105"}
    basic = deidentify(ds, Deidentifier((site_b.cert,)))
    assert basic.DeviceSerialNumber == "ANONYMOUS"  # X/Z/D: a dummy, valid whatever the type
    assert "StudyDescription" not in basic
    assert basic["StudyDate"].is_empty
    assert reidentify(out, site_b.key, site_b.cert) == ds


def test_dates_move_by_the_offset(tmp_path: Path, site_b: Site) -> None:
    [path] = _object(tmp_path)
    ds = dcmread(path)
    ds.StudyDate, ds.AcquisitionDateTime = "20240301", "20240301101500.5"
    out = deidentify(ds, Deidentifier((site_b.cert,), {"retain-long-modified-dates"},
                                      date_offset_days=-1))
    assert out.StudyDate == "20240229" and out.AcquisitionDateTime == "20240229101500.5"


def test_private_attributes_go_and_come_back(tmp_path: Path, site_b: Site) -> None:
    [path] = _object(tmp_path)
    ds = dcmread(path)
    block = ds.private_block(0x0009, "TELERAD SECRET", create=True)
    block.add_new(0x01, "LO", "a private identifier")
    out = deidentify(ds, Deidentifier((site_b.cert,)))
    assert not [element for element in out if element.tag.is_private]
    assert reidentify(out, site_b.key, site_b.cert) == ds


def test_a_wrong_key_is_refused_and_nothing_overwritten(tmp_path: Path, site_b: Site,
                                                        elsewhere: Site) -> None:
    [path] = _object(tmp_path)
    deid = tmp_path / "deid.dcm"
    deidentify_file(path, deid, Deidentifier((site_b.cert,)))
    target = tmp_path / "target.dcm"
    target.write_bytes(b"what was there before")
    with pytest.raises(DeidError, match="not encrypted for CN=elsewhere"):
        reidentify_file(deid, target, elsewhere.key, elsewhere.cert)
    with pytest.raises(DeidError, match="private key does not belong"):
        reidentify_file(deid, target, elsewhere.key, site_b.cert)
    assert target.read_bytes() == b"what was there before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CT", "deid.dcm", "target.dcm"]
    assert f"serial {site_b.cert.serial_number:x}" in recipients(dcmread(deid))[0]


def test_every_recipient_can_reidentify(tmp_path: Path, site_b: Site, elsewhere: Site) -> None:
    [path] = _object(tmp_path)
    ds = dcmread(path)
    out = deidentify(ds, Deidentifier((site_b.cert, elsewhere.cert)))
    assert reidentify(out, elsewhere.key, elsewhere.cert) == ds
    assert reidentify(out, site_b.key, site_b.cert) == ds


def test_nothing_to_reidentify(site_b: Site) -> None:
    with pytest.raises(DeidError, match="no Encrypted Attributes Sequence"):
        reidentify(Dataset(), site_b.key, site_b.cert)


def test_a_signed_object_verifies_again_after_reidentification(tmp_path: Path,
                                                               site_b: Site) -> None:
    """Digital Signatures Sequence is removed (Table E.1-1: X) and restored exactly, so the
    receiver checks the sender's signature on the re-identified object (PS3.15 Annex C)."""
    [path] = _object(tmp_path)
    ds = dcmread(path)
    sign(ds, site_b.key, site_b.cert)
    out = deidentify(ds, Deidentifier((site_b.cert,)))
    assert "DigitalSignaturesSequence" not in out
    [result] = verify(reidentify(out, site_b.key, site_b.cert), [site_b.ca])
    assert result.ok, str(result)


def test_values_in_another_character_set_come_back(tmp_path: Path, site_b: Site) -> None:
    """The encrypted Modified Attributes item carries Specific Character Set, so UTF-8 names
    are encoded and decoded alike (PS3.5 6.1)."""
    [path] = _object(tmp_path)
    ds = dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.InstitutionName = "Müller^Jürgen", "Hôpital Saint-Éloi"
    ds.save_as(path, enforce_file_format=True)
    deid = tmp_path / "deid.dcm"
    deidentify_file(path, deid, Deidentifier((site_b.cert,)))
    assert "Müller".encode() not in deid.read_bytes()
    back = reidentify(dcmread(deid), site_b.key, site_b.cert)
    assert back.PatientName == "Müller^Jürgen" and back == dcmread(path)
