"""Secure media against an independent implementation: ``openssl cms`` (OpenSSL's CMS tool).

Each secure file of a file-set the lab exported (``lab.dicom.data.media``) is opened by
``openssl cms -decrypt`` with the receiver's key and verified by ``openssl cms -verify`` against
the lab CA, giving back the original Part-10 file byte for byte; openssl refuses it with another
key or another CA. The other way, a secure file made by ``openssl cms -sign`` then
``-encrypt`` in place of one of the lab's is imported by the lab. Keys and certificates come
from the lab's PKI (``lab.security.pki``); no lab, no network.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom import dcmread

from lab.dicom.data.generate import generate_study
from lab.dicom.data.media import Exported, export_study, import_fileset
from lab.security.pki.authority import CA, Credential, create_ca

OPENSSL = "openssl"


class Pki(NamedTuple):
    ca: CA
    modality: Credential
    pacs: Credential
    other_ca: CA
    stranger: Credential


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    here = tmp_path_factory.mktemp("pki")
    ca = create_ca(here / "lab", "lab CA")
    other = create_ca(here / "other", "other CA")
    return Pki(ca, ca.issue("modality-a", usages={"signing"}, key_type="rsa-2048"),
               ca.issue("pacs-b", usages={"signing"}, key_type="rsa-2048"), other,
               other.issue("stranger", usages={"signing"}, key_type="rsa-2048"))


def _key(credential: Credential) -> rsa.RSAPrivateKey:
    key = credential.load_key()
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def exported(tmp_path: Path, pki: Pki) -> tuple[list[Path], Exported]:
    study = generate_study("MR", tmp_path / "study", objects=2)
    return list(study.files), export_study(
        study.files, tmp_path / "fs", key=_key(pki.modality), certificate=pki.modality.load_cert(),
        recipients=[pki.pacs.load_cert()])


def _decrypt(secure: Path, recipient: Credential, out: Path) -> subprocess.CompletedProcess[str]:
    return openssl("cms", "-decrypt", "-inform", "DER", "-binary", "-in", secure,
                   "-recip", recipient.cert_path, "-inkey", recipient.key_path, "-out", out)


def _verify(signed: Path, ca: CA, out: Path) -> subprocess.CompletedProcess[str]:
    return openssl("cms", "-verify", "-inform", "DER", "-binary", "-in", signed, "-CAfile",
                   ca.cert_path, "-purpose", "any", "-out", out)


def test_openssl_decrypts_and_verifies_every_file(
        tmp_path: Path, pki: Pki, exported: tuple[list[Path], Exported]) -> None:
    sources, fileset = exported
    originals = {dcmread(p).SOPInstanceUID: p.read_bytes() for p in sources}
    for relative in fileset.files:
        secure = fileset.root / relative
        printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", secure)
        assert "aes-256-cbc" in printed.stdout and "pkcs7-signedData" in printed.stdout
        inner, plain = tmp_path / "inner.der", tmp_path / "plain.dcm"
        run = _decrypt(secure, pki.pacs, inner)
        assert run.returncode == 0, run.stderr
        run = _verify(inner, pki.ca, plain)
        assert run.returncode == 0 and "Verification successful" in run.stderr, run.stderr
        assert plain.read_bytes() == originals[dcmread(plain).SOPInstanceUID]


def test_openssl_refuses_another_key_and_another_ca(
        tmp_path: Path, pki: Pki, exported: tuple[list[Path], Exported]) -> None:
    _, fileset = exported
    secure, inner = fileset.root / fileset.files[0], tmp_path / "inner.der"
    assert _decrypt(secure, pki.stranger, tmp_path / "nope.der").returncode != 0
    assert _decrypt(secure, pki.pacs, inner).returncode == 0
    run = _verify(inner, pki.other_ca, tmp_path / "plain.dcm")
    assert run.returncode != 0 and "Verification failure" in run.stderr


def test_the_lab_imports_a_file_openssl_made(
        tmp_path: Path, pki: Pki, exported: tuple[list[Path], Exported]) -> None:
    sources, fileset = exported
    target = fileset.root / fileset.files[0]
    assert _decrypt(target, pki.pacs, tmp_path / "inner.der").returncode == 0
    assert _verify(tmp_path / "inner.der", pki.ca, tmp_path / "plain.dcm").returncode == 0
    signed = tmp_path / "openssl-signed.der"
    run = openssl("cms", "-sign", "-binary", "-nodetach", "-md", "sha256", "-outform", "DER",
                  "-in", tmp_path / "plain.dcm", "-signer", pki.modality.cert_path,
                  "-inkey", pki.modality.key_path, "-out", signed)
    assert run.returncode == 0, run.stderr
    run = openssl("cms", "-encrypt", "-binary", "-aes-128-cbc", "-outform", "DER", "-in", signed,
                  "-out", target, pki.pacs.cert_path)
    assert run.returncode == 0, run.stderr
    imported = import_fileset(fileset.root, tmp_path / "in", key=_key(pki.pacs),
                              certificate=pki.pacs.load_cert(), trusted=[pki.ca.load_cert()])
    assert sorted(p.read_bytes() for p in imported.files) == sorted(
        p.read_bytes() for p in sources)
