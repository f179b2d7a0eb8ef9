"""Secure media (lab.dicom.data.media, PS3.10 7.4, PS3.15 Annex D): a study out as a DICOMDIR
file-set of secure files and back byte for byte; a changed, foreign, plain, swapped or missing
file refused by its File ID, and then nothing imported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet

from lab.dicom.data.cms import envelope, sign_data
from lab.dicom.data.deid import Deidentifier, deidentify_file
from lab.dicom.data.generate import generate_study
from lab.dicom.data.media import Exported, MediaError, export_study, import_fileset

from .pki_helpers import Site, make_site


@pytest.fixture(scope="module")
def modality_a(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("a"), "modality-a", "lab CA")


@pytest.fixture(scope="module")
def pacs_b(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("b"), "pacs-b", "lab CA")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("x"), "stranger", "another CA")


def _export(tmp_path: Path, signer: Site, recipient: Site, objects: int = 3) -> tuple[
        list[Path], Exported]:
    study = generate_study("CT", tmp_path / "study", objects=objects)
    exported = export_study(study.files, tmp_path / "fs", key=signer.key,
                            certificate=signer.cert, recipients=[recipient.cert])
    return list(study.files), exported


def _import(root: Path, dest: Path, site: Site, trusted: Site) -> list[Path]:
    return list(import_fileset(root, dest, key=site.key, certificate=site.cert,
                               trusted=[trusted.ca]).files)


def test_round_trip_byte_for_byte(tmp_path: Path, modality_a: Site, pacs_b: Site) -> None:
    sources, exported = _export(tmp_path, modality_a, pacs_b)
    assert len(exported.files) == 3
    name = str(dcmread(sources[0]).PatientName).encode()
    for relative in exported.files:
        secure = (exported.root / relative).read_bytes()
        assert name not in secure and b"DICM" not in secure[:200]
    assert len(list(FileSet(exported.root / "DICOMDIR"))) == 3
    imported = _import(exported.root, tmp_path / "in", pacs_b, modality_a)
    assert sorted(p.read_bytes() for p in imported) == sorted(p.read_bytes() for p in sources)
    assert {p.stem for p in imported} == {dcmread(p).SOPInstanceUID for p in sources}


def test_the_export_needs_a_new_directory(tmp_path: Path, modality_a: Site,
                                          pacs_b: Site) -> None:
    sources, exported = _export(tmp_path, modality_a, pacs_b, objects=1)
    with pytest.raises(MediaError, match="is not empty"):
        export_study(sources, exported.root, key=modality_a.key, certificate=modality_a.cert,
                     recipients=[pacs_b.cert])


def _refused(tmp_path: Path, exported: Exported, site: Site, trusted: Site) -> MediaError:
    with pytest.raises(MediaError) as refused:
        _import(exported.root, tmp_path / "in", site, trusted)
    assert not (tmp_path / "in").exists() or not list((tmp_path / "in").iterdir())
    assert "nothing imported" in str(refused.value)
    return refused.value


def test_a_changed_file_is_named_and_nothing_imported(tmp_path: Path, modality_a: Site,
                                                      pacs_b: Site) -> None:
    _, exported = _export(tmp_path, modality_a, pacs_b)
    victim = exported.root / exported.files[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    error = _refused(tmp_path, exported, pacs_b, modality_a)
    assert [line.split(":")[0] for line in error.refused] == [exported.files[1].as_posix()]


def test_foreign_files_are_named(tmp_path: Path, modality_a: Site, pacs_b: Site,
                                 stranger: Site) -> None:
    sources, exported = _export(tmp_path, modality_a, pacs_b)
    first, second, third = (exported.root / f for f in exported.files)
    plain = next(p for p in sources if dcmread(p).SOPInstanceUID == _uid(exported, 0))
    # signed by a stranger's CA, encrypted for the receiver
    first.write_bytes(envelope(sign_data(plain.read_bytes(), stranger.key, stranger.cert),
                               [pacs_b.cert], inner="signed_data"))
    # signed at site A, encrypted for someone else
    signed = sign_data(second.read_bytes(), modality_a.key, modality_a.cert)
    second.write_bytes(envelope(signed, [stranger.cert], inner="signed_data"))
    shutil.copyfile(plain, third)  # not secure at all
    error = _refused(tmp_path, exported, pacs_b, modality_a)
    reasons = dict(line.split(": ", 1) for line in error.refused)
    assert "does not chain to a trusted CA" in reasons[exported.files[0].as_posix()]
    assert "not encrypted for CN=pacs-b" in reasons[exported.files[1].as_posix()]
    assert "not a CMS structure" in reasons[exported.files[2].as_posix()]


def test_swapped_and_missing_files(tmp_path: Path, modality_a: Site, pacs_b: Site) -> None:
    _, exported = _export(tmp_path, modality_a, pacs_b)
    first, second, third = (exported.root / f for f in exported.files)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    third.unlink()
    error = _refused(tmp_path, exported, pacs_b, modality_a)
    assert len(error.refused) == 3
    assert "but its directory record names" in error.refused[0]
    assert "cannot be read" in error.refused[2]


def _uid(exported: Exported, index: int) -> str:
    records = list(FileSet(exported.root / "DICOMDIR"))
    by_path = {Path(r.path).relative_to(exported.root.resolve()): r for r in records}
    return str(by_path[exported.files[index]].SOPInstanceUID)


def test_a_de_identified_study_goes_on_media_byte_for_byte(tmp_path: Path, modality_a: Site,
                                                          pacs_b: Site) -> None:
    """Table E.1-1 empties Type 1 keys of the directory records (Study Date, Time, ID): the
    records get placeholders, the objects travel unchanged."""
    study = generate_study("CT", tmp_path / "study", objects=2)
    session = Deidentifier((pacs_b.cert,))
    deid = [tmp_path / "deid" / f.name for f in study.files]
    for src, dst in zip(study.files, deid, strict=True):
        deidentify_file(src, dst, session)
    assert not dcmread(deid[0]).get("StudyID") and not dcmread(deid[0]).get("StudyDate")
    exported = export_study(deid, tmp_path / "fs", key=modality_a.key,
                            certificate=modality_a.cert, recipients=[pacs_b.cert])
    [record] = [r for r in dcmread(exported.root / "DICOMDIR").DirectoryRecordSequence
                if r.DirectoryRecordType == "STUDY"]
    assert (record.StudyDate, record.StudyTime, record.StudyID) == ("19000101", "000000", "0")
    imported = _import(exported.root, tmp_path / "in", pacs_b, modality_a)
    assert sorted(p.read_bytes() for p in imported) == sorted(p.read_bytes() for p in deid)
