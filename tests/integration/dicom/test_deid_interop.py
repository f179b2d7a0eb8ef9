"""Attribute confidentiality against an independent implementation: GDCM's gdcmanon (Debian's
libgdcm-tools), both ways, never the lab's code on both ends.

gdcmanon ``-d`` (PS3.15 E.1.2 re-identify) with the receiving site's key restores every original
value of objects the lab de-identified (``lab.dicom.data.deid``, Basic Profile and options); the
lab re-identifies, exactly, objects ``gdcmanon -e`` (E.1.1 de-identify) encrypted for the
receiving site's certificate, with AES-256 and AES-128, and refuses them with another site's
key. The keys and certificates come from the lab's PKI (``lab.security.pki``); no lab, no
network.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from lab.dicom.data.deid import Deidentifier, deidentify_file, reidentify, reidentify_file
from lab.dicom.data.deid_table import DeidError
from lab.dicom.data.generate import generate_study
from lab.security.pki.authority import create_ca

GDCMANON = "gdcmanon"
#: Marks gdcmanon does not know and so leaves after re-identifying (it removes 0012,0062/0063).
UNKNOWN_TO_GDCM = {Tag(0x0012, 0x0064), Tag(0x0028, 0x0303)}


class Site(NamedTuple):
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    key_path: Path
    cert_path: Path


def _site(where: Path, name: str) -> Site:
    credential = create_ca(where, f"{name} CA").issue(name, usages={"signing"},
                                                      key_type="rsa-2048")
    key = credential.load_key()
    assert isinstance(key, rsa.RSAPrivateKey)
    return Site(key, credential.load_cert(), credential.key_path, credential.cert_path)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return _site(tmp_path_factory.mktemp("pacs"), "pacs-b")


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return _site(tmp_path_factory.mktemp("elsewhere"), "elsewhere")


def gdcmanon(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GDCMANON, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def _differences(a: Dataset, b: Dataset) -> set[Tag]:
    tags = set(a.keys()) | set(b.keys())
    return {Tag(t) for t in tags if t not in a or t not in b or a[t] != b[t]}


@pytest.mark.parametrize(("modality", "options"), [
    ("CT", ()),
    ("MR", ("retain-long-modified-dates", "clean-descriptors")),
    ("US", ("retain-uids", "retain-device-identity")),
])
def test_gdcmanon_reidentifies_what_the_lab_deidentified(
        tmp_path: Path, pacs: Site, modality: str, options: tuple[str, ...]) -> None:
    [original] = generate_study(modality, tmp_path / "study", objects=1).files
    deid = tmp_path / "deid.dcm"
    deidentify_file(original, deid, Deidentifier((pacs.cert,), frozenset(options)))
    assert dcmread(deid).PatientName == ""
    back = tmp_path / "back.dcm"
    run = gdcmanon("-d", "-k", pacs.key_path, "-c", pacs.cert_path, "-i", deid, "-o", back)
    assert run.returncode == 0, run.stdout + run.stderr
    restored, before = dcmread(back), dcmread(original)
    assert _differences(restored, before) <= UNKNOWN_TO_GDCM
    assert restored.PatientName == before.PatientName
    assert restored.SOPInstanceUID == before.SOPInstanceUID


def test_gdcmanon_cannot_reidentify_for_another_site(tmp_path: Path, pacs: Site,
                                                     elsewhere: Site) -> None:
    [original] = generate_study("CT", tmp_path / "study", objects=1).files
    deid = tmp_path / "deid.dcm"
    deidentify_file(original, deid, Deidentifier((pacs.cert,)))
    run = gdcmanon("-d", "-k", elsewhere.key_path, "-c", elsewhere.cert_path, "-i", deid,
                   "-o", tmp_path / "back.dcm")
    assert run.returncode != 0 and "Could not Re-indentify" in run.stderr  # (sic)
    assert not (tmp_path / "back.dcm").exists()


@pytest.mark.parametrize("cipher", ["--aes256", "--aes128"])
@pytest.mark.parametrize("modality", ["CT", "MG", "NM"])
def test_the_lab_reidentifies_what_gdcmanon_deidentified(
        tmp_path: Path, pacs: Site, elsewhere: Site, modality: str, cipher: str) -> None:
    [original] = generate_study(modality, tmp_path / "study", objects=1).files
    deid = tmp_path / "gdcm.dcm"
    run = gdcmanon("-e", cipher, "-c", pacs.cert_path, "-i", original, "-o", deid)
    assert run.returncode == 0, run.stdout + run.stderr
    anonymous = dcmread(deid)
    before = dcmread(original)
    assert anonymous.PatientName != before.PatientName
    assert anonymous.SOPInstanceUID != before.SOPInstanceUID
    assert reidentify(anonymous, pacs.key, pacs.cert) == before
    target = tmp_path / "target.dcm"
    with pytest.raises(DeidError, match="not encrypted for CN=elsewhere"):
        reidentify_file(deid, target, elsewhere.key, elsewhere.cert)
    assert not target.exists()
