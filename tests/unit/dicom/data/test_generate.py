"""The synthetic study generator and the loading of a user's folder; no root, no network.

Every modality is generated small (2 objects, 1 for MG) and read back; the big default studies
are only checked through their profiles, never written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian

from lab.dicom.data.generate import MODALITIES, PROFILES, Study, generate_study, load_folder
from lab.errors import LabError

SMALL = {modality: 1 if modality == "MG" else 2 for modality in MODALITIES}
MB = 1_000_000

#: Attributes every object must carry for a PACS and DCMTK (PS3.3 C.7, C.12.1, C.7.6.3).
COMMON = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientName",
    "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber",
    "StudyID", "StudyDescription", "ReferringPhysicianName", "Modality", "SeriesNumber",
    "SeriesDescription", "InstanceNumber", "Manufacturer", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "PixelData",
)  # fmt: skip
SPECIFIC = {
    "CT": ("FrameOfReferenceUID", "RescaleIntercept", "RescaleSlope", "KVP", "SliceThickness",
           "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "ImageType"),
    "MR": ("FrameOfReferenceUID", "ScanningSequence", "SequenceVariant", "MRAcquisitionType",
           "EchoTime", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"),
    "CR": ("BodyPartExamined", "ViewPosition", "PatientOrientation"),
    "DX": ("ImageType", "PresentationIntentType", "ImagerPixelSpacing", "DetectorType",
           "AcquisitionContextSequence", "PresentationLUTShape"),
    "MG": ("ImageType", "PresentationIntentType", "ImageLaterality", "ViewCodeSequence",
           "AnatomicRegionSequence", "PositionerType"),
    "US": ("NumberOfFrames", "FrameIncrementPointer", "FrameTime", "PlanarConfiguration"),
    "NM": ("NumberOfFrames", "FrameIncrementPointer", "EnergyWindowVector", "DetectorVector",
           "EnergyWindowInformationSequence", "DetectorInformationSequence"),
}  # fmt: skip


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Study]:
    root = tmp_path_factory.mktemp("studies")
    return {m: generate_study(m, root / m, objects=SMALL[m]) for m in MODALITIES}


def _bytes(study: Study) -> list[bytes]:
    return [path.read_bytes() for path in study.files]


@pytest.mark.parametrize("modality", MODALITIES)
def test_study_reads_back_as_its_profile(studies: dict[str, Study], modality: str) -> None:
    study, profile = studies[modality], PROFILES[modality]
    assert [p.name for p in study.files] == [
        f"{modality}-{i:04d}.dcm" for i in range(1, SMALL[modality] + 1)
    ]
    assert study.total_bytes == sum(p.stat().st_size for p in study.files)
    instances = set()
    for number, path in enumerate(study.files, start=1):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == profile.sop_class_uid
        assert ds.Modality == modality
        assert ds.InstanceNumber == number
        assert ds.StudyInstanceUID == study.study_instance_uid
        assert ds.SeriesInstanceUID == study.series_instance_uid
        assert (ds.PatientID, str(ds.PatientName)) == (study.patient_id, study.patient_name)
        assert (ds.Rows, ds.Columns) == (profile.rows, profile.columns)
        assert (ds.BitsAllocated, ds.BitsStored) == (profile.bits_allocated, profile.bits_stored)
        assert ds.HighBit == profile.bits_stored - 1
        assert ds.SamplesPerPixel == profile.samples_per_pixel
        assert ds.PhotometricInterpretation == profile.photometric
        assert int(ds.get("NumberOfFrames", 1)) == profile.frames
        assert len(ds.PixelData) == profile.object_bytes
        assert ds.pixel_array.size * ds.pixel_array.itemsize == profile.object_bytes
        instances.add(ds.SOPInstanceUID)
    assert len(instances) == len(study.files)


@pytest.mark.parametrize("modality", MODALITIES)
def test_files_are_part10_explicit_little_endian(studies: dict[str, Study], modality: str) -> None:
    """PS3.10 §7.1: 128-byte preamble, "DICM", group 0002 meta; data set uncompressed."""
    for path in studies[modality].files:
        raw = path.read_bytes()
        assert raw[:128] == bytes(128)
        assert raw[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.FileMetaInformationVersion == b"\x00\x01"
        assert "ImplementationClassUID" in meta
        assert ds.original_encoding == (False, True)  # explicit VR, little endian


@pytest.mark.parametrize("modality", MODALITIES)
def test_required_attributes_present(studies: dict[str, Study], modality: str) -> None:
    ds = pydicom.dcmread(studies[modality].files[0])
    missing = [k for k in (*COMMON, *SPECIFIC[modality]) if k not in ds]
    assert missing == []
    assert ds.Manufacturer == "teleradlab"


def test_patient_name_is_ascii_and_on_the_wire(studies: dict[str, Study]) -> None:
    study = studies["CT"]
    assert study.patient_name == "TELERAD^SYNTH0"
    assert all(b"TELERAD^SYNTH0" in data for data in _bytes(study))


def test_patient_name_can_be_chosen(tmp_path: Path) -> None:
    study = generate_study("MR", tmp_path, objects=1, patient_name="DOE^JANE")
    assert str(pydicom.dcmread(study.files[0]).PatientName) == "DOE^JANE"
    with pytest.raises(LabError, match="printable ASCII"):
        generate_study("MR", tmp_path, objects=1, patient_name="MÜLLER^ANNA")


@pytest.mark.parametrize("modality", ["CT", "NM", "US"])
def test_same_inputs_give_identical_bytes(tmp_path: Path, modality: str) -> None:
    objects = 1 if modality == "US" else 2  # a US object is 27 MB
    first = generate_study(modality, tmp_path / "a", seed=7, objects=objects)
    second = generate_study(modality, tmp_path / "b", seed=7, objects=objects)
    assert first.study_instance_uid == second.study_instance_uid
    assert _bytes(first) == _bytes(second)


def test_same_bytes_in_another_process(tmp_path: Path) -> None:
    """Nothing depends on the process (hash seeds, random UIDs, clocks)."""
    here = generate_study("NM", tmp_path / "here", seed=3, objects=1)
    code = (
        "import sys; from pathlib import Path; from lab.dicom.data.generate import generate_study; "
        "generate_study('NM', Path(sys.argv[1]), seed=3, objects=1)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True)
    assert _bytes(here) == [(tmp_path / "there" / p.name).read_bytes() for p in here.files]


def test_another_seed_gives_other_uids_and_pixels(tmp_path: Path) -> None:
    one = generate_study("CT", tmp_path / "a", seed=1, objects=2)
    two = generate_study("CT", tmp_path / "b", seed=2, objects=2)
    assert one.study_instance_uid != two.study_instance_uid
    assert one.series_instance_uid != two.series_instance_uid
    for a, b in zip(one.files, two.files, strict=True):
        ds_a, ds_b = pydicom.dcmread(a), pydicom.dcmread(b)
        assert ds_a.SOPInstanceUID != ds_b.SOPInstanceUID
        assert ds_a.PixelData != ds_b.PixelData


def test_objects_in_one_study_differ(studies: dict[str, Study]) -> None:
    first, second = (pydicom.dcmread(p) for p in studies["CT"].files)
    assert first.PixelData != second.PixelData
    assert first.ImagePositionPatient != second.ImagePositionPatient


def test_default_profiles_have_realistic_sizes() -> None:
    """Sizes of the default studies, computed from the profiles, not generated."""
    ct, mr, cr, dx = PROFILES["CT"], PROFILES["MR"], PROFILES["CR"], PROFILES["DX"]
    mg, us, nm = PROFILES["MG"], PROFILES["US"], PROFILES["NM"]
    assert (ct.rows, ct.columns, ct.bits_allocated) == (512, 512, 16)
    assert 0.5 * MB < ct.object_bytes < 0.6 * MB and ct.objects == 100
    assert 45 * MB < ct.study_bytes < 60 * MB
    assert (mr.rows, mr.columns, mr.objects) == (256, 256, 60)
    assert 5 * MB < mr.study_bytes < 10 * MB
    assert 8 * MB < cr.object_bytes < 12 * MB and cr.objects == 2
    assert 12 * MB < dx.object_bytes < 18 * MB and dx.objects == 2
    assert 25 * MB < mg.object_bytes < 30 * MB and mg.objects == 4
    assert us.frames >= 20 and us.bits_allocated == 8 and us.samples_per_pixel == 3
    assert 20 * MB < us.object_bytes < 35 * MB and us.objects == 2
    assert (nm.rows, nm.columns, nm.frames, nm.bits_allocated) == (128, 128, 64, 16)
    assert 1 <= nm.objects <= 2
    assert tuple(PROFILES) == MODALITIES


def test_unknown_modality_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="'XA'") as info:
        generate_study("XA", tmp_path)
    assert all(m in str(info.value) for m in MODALITIES)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("objects", [0, -3])
def test_objects_below_one_is_refused(tmp_path: Path, objects: int) -> None:
    with pytest.raises(LabError, match=str(objects)):
        generate_study("CT", tmp_path, objects=objects)


def test_negative_seed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="-1"):
        generate_study("CT", tmp_path, seed=-1)


def test_load_folder_skips_and_reports_bad_files(tmp_path: Path) -> None:
    study = generate_study("CT", tmp_path / "in", objects=3)
    nested = generate_study("NM", tmp_path / "in" / "sub", objects=1)
    whole = study.files[2].read_bytes()
    cut_pixels = tmp_path / "in" / "cut-pixels.dcm"
    cut_pixels.write_bytes(whole[: len(whole) - 1000])
    cut_header = tmp_path / "in" / "cut-header.dcm"
    cut_header.write_bytes(whole[: len(whole) - 512 * 512 * 2 - 4])
    text = tmp_path / "in" / "notes.txt"
    text.write_text("not an image\n")
    good, bad = load_folder(tmp_path / "in")
    assert good == sorted([*study.files, *nested.files])
    reasons = dict(bad)
    assert set(reasons) == {cut_pixels, cut_header, text}
    assert "truncated" in reasons[cut_pixels]
    assert "truncated" in reasons[cut_header]
    assert "not a DICOM" in reasons[text]


@pytest.mark.parametrize(
    ("where", "marker"),
    [
        ("before Pixel Data", b"\xe0\x7f\x10\x00OW"),
        ("before the Image Pixel module", b"\x28\x00\x02\x00US"),
        ("inside the Pixel Data header", b"\xe0\x7f\x10\x00OW\x00\x00\x00"),
    ],
)
def test_load_folder_catches_cuts_at_element_boundaries(
    tmp_path: Path, where: str, marker: bytes
) -> None:
    """pydicom reads a file cut between two elements without complaint."""
    study = generate_study("CT", tmp_path / "src", objects=1)
    data = study.files[0].read_bytes()
    cut = tmp_path / "in" / "cut.dcm"
    cut.parent.mkdir()
    cut.write_bytes(data[: data.index(marker) + (len(marker) if "inside" in where else 0)])
    good, bad = load_folder(tmp_path / "in")
    assert good == []
    assert "truncated" in dict(bad)[cut], where


def test_load_folder_reports_a_dataset_without_sop_uids(tmp_path: Path) -> None:
    (tmp_path / "empty.bin").write_bytes(b"")
    meta_only = pydicom.Dataset()
    meta_only.PatientName = "NO^UIDS"
    meta_only.file_meta = pydicom.dataset.FileMetaDataset()
    meta_only.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta_only.file_meta.MediaStorageSOPClassUID = UID("1.2.3")
    meta_only.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    pydicom.dcmwrite(tmp_path / "no-uids.dcm", meta_only, enforce_file_format=True)
    good, bad = load_folder(tmp_path)
    assert good == []
    reasons = dict(bad)
    assert "SOPClassUID" in reasons[tmp_path / "no-uids.dcm"]
    assert "not a DICOM" in reasons[tmp_path / "empty.bin"]


def test_load_folder_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="not a directory"):
        load_folder(tmp_path / "missing")
