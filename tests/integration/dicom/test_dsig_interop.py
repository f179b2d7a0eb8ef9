"""Digital signatures against an independent implementation: DCMTK's dcmsign (Debian's dcmtk).

Both directions, never the lab's code on both ends: ``dcmsign --verify`` with the test CA as its
only trusted certificate (``+cf``, so it checks the signer's chain) accepts objects the lab
signed, and refuses them when given another CA or when a signed value changed; the lab verifies
objects ``dcmsign --sign`` signed with each profile (``+pb``, ``+pc``, ``+pa``) and each SHA
MAC (``+ms``, ``+m2``, ``+m3``, ``+m5``). The signer's key and certificates are made with
``cryptography`` here; no lab, no network. dcmsign runs by absolute path.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless

from lab.dicom.data.dsig import sign, verify
from lab.dicom.data.generate import MODALITIES, generate_study

DCMSIGN = "/usr/bin/dcmsign"
PROFILE_FLAGS = {"base-rsa": "+pb", "creator-rsa": "+pc", "authorization-rsa": "+pa"}
MAC_FLAGS = {"SHA1": "+ms", "SHA256": "+m2", "SHA384": "+m3", "SHA512": "+m5"}


class Pki(NamedTuple):
    key: Path
    cert: Path
    ca: Path
    other_ca: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, key: rsa.RSAPrivateKey, issuer: str, issuer_key: rsa.RSAPrivateKey,
           ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    return (x509.CertificateBuilder()
            .subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    here = tmp_path_factory.mktemp("pki")
    ca_key, other_key, key = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                              for _ in range(3))
    key_path = here / "signer.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return Pki(key_path,
               _pem(here / "signer.pem", _issue("modality", key, "lab CA", ca_key, ca=False)),
               _pem(here / "ca.pem", _issue("lab CA", ca_key, "lab CA", ca_key, ca=True)),
               _pem(here / "other.pem", _issue("other CA", other_key, "other CA", other_key,
                                               ca=True)))


@pytest.fixture
def original(tmp_path: Path) -> Path:
    """A CT object with a sequence, so the sequence rules of the byte stream are exercised."""
    [path] = generate_study("CT", tmp_path / "study", objects=1).files
    ds = dcmread(path)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-A0100", "SRT", "Brain"
    ds.AnatomicRegionSequence = Sequence([code])
    ds.save_as(path, enforce_file_format=True)
    return path


def dcmsign(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DCMSIGN, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def _lab_signed(original: Path, pki: Pki, out: Path, **options: object) -> Path:
    ds = dcmread(original)
    sign(ds, pki.key, pki.cert, **options)  # type: ignore[arg-type]
    ds.save_as(out, enforce_file_format=True)
    return out


def _verified_by_dcmsign(run: subprocess.CompletedProcess[str]) -> bool:
    output = run.stdout + run.stderr
    return run.returncode == 0 and "Verification : OK" in output and "failed" not in output


@pytest.mark.parametrize("profile", sorted(PROFILE_FLAGS))
@pytest.mark.parametrize("mac", sorted(MAC_FLAGS))
def test_dcmsign_verifies_what_the_lab_signed(original: Path, pki: Pki, tmp_path: Path,
                                              profile: str, mac: str) -> None:
    signed = _lab_signed(original, pki, tmp_path / "signed.dcm", profile=profile, mac=mac)
    run = dcmsign("--verify", "+rg", "+cf", pki.ca, signed)
    assert _verified_by_dcmsign(run), run.stdout + run.stderr


def test_dcmsign_refuses_a_lab_signature_under_another_ca(original: Path, pki: Pki,
                                                          tmp_path: Path) -> None:
    signed = _lab_signed(original, pki, tmp_path / "signed.dcm")
    run = dcmsign("--verify", "+rg", "+cf", pki.other_ca, signed)
    assert run.returncode != 0 and "certificate verification failed" in run.stderr


def test_dcmsign_refuses_a_lab_signed_object_changed_after(original: Path, pki: Pki,
                                                           tmp_path: Path) -> None:
    signed = _lab_signed(original, pki, tmp_path / "signed.dcm")
    ds = dcmread(signed)
    ds.PatientName = "Changed^Name"
    ds.save_as(signed, enforce_file_format=True)
    run = dcmsign("--verify", "+rg", "+cf", pki.ca, signed)
    assert not _verified_by_dcmsign(run), run.stdout + run.stderr


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize(("profile", "require"),
                         [("creator-rsa", "+rc"), ("authorization-rsa", "+ru")])
def test_dcmsign_sees_the_profile_in_a_narrowed_lab_signature(
        pki: Pki, tmp_path: Path, modality: str, profile: str, require: str) -> None:
    """One tag asked for, the profile's required attributes added by the lab: dcmsign's own
    policy check of the Creator (+rc) or Authorization (+ru) RSA profile agrees; a Base RSA
    signature of that one tag does not pass it."""
    [original] = generate_study(modality, tmp_path / "study", objects=1).files
    narrowed = _lab_signed(original, pki, tmp_path / "narrowed.dcm", profile=profile,
                           tags=[0x00100010])
    run = dcmsign("--verify", require, "+cf", pki.ca, narrowed)
    assert _verified_by_dcmsign(run), run.stdout + run.stderr
    base = _lab_signed(original, pki, tmp_path / "base.dcm", tags=[0x00100010])
    assert dcmsign("--verify", require, "+cf", pki.ca, base).returncode != 0


@pytest.mark.parametrize("profile", sorted(PROFILE_FLAGS))
@pytest.mark.parametrize("mac", sorted(MAC_FLAGS))
def test_the_lab_verifies_what_dcmsign_signed(original: Path, pki: Pki, tmp_path: Path,
                                              profile: str, mac: str) -> None:
    signed = tmp_path / "dcmsign.dcm"
    run = dcmsign("--sign", pki.key, pki.cert, PROFILE_FLAGS[profile], MAC_FLAGS[mac],
                  original, signed)
    assert run.returncode == 0, run.stderr
    ds = dcmread(signed)
    [result] = verify(ds, [pki.ca])
    assert result.ok, str(result)
    assert result.mac_algorithm == mac and profile in result.profiles
    [foreign] = verify(ds, [pki.other_ca])
    assert "does not chain to a trusted CA" in str(foreign)


def test_the_lab_names_what_changed_in_a_dcmsign_signed_object(original: Path, pki: Pki,
                                                               tmp_path: Path) -> None:
    signed = tmp_path / "dcmsign.dcm"
    assert dcmsign("--sign", pki.key, pki.cert, "+pb", "+m2", original, signed).returncode == 0
    changed = dcmread(signed)
    pixels = bytearray(changed.PixelData)
    pixels[4096] ^= 0x80
    changed.PixelData = bytes(pixels)
    assert "value changed" in str(verify(changed, [pki.ca])[0])
    removed = dcmread(signed)
    del removed.PatientName
    assert verify(removed, [pki.ca])[0].elements == ("(0010,0010) PatientName",)


def test_compressed_objects_both_ways(original: Path, pki: Pki, tmp_path: Path) -> None:
    """RLE Lossless Pixel Data (compressed here by pydicom): signed over its fragments in the
    object's own transfer syntax, by dcmsign for the lab and by the lab for dcmsign."""
    rle = tmp_path / "rle.dcm"
    ds = dcmread(original)
    ds.compress(RLELossless)
    ds.save_as(rle, enforce_file_format=True)
    by_dcmsign = tmp_path / "by-dcmsign.dcm"
    assert dcmsign("--sign", pki.key, pki.cert, "+pb", "+m2", rle, by_dcmsign).returncode == 0
    [result] = verify(dcmread(by_dcmsign), [pki.ca])
    assert result.ok, str(result)
    by_lab = _lab_signed(rle, pki, tmp_path / "by-lab.dcm")
    assert dcmread(by_lab).MACParametersSequence[0].MACCalculationTransferSyntaxUID == RLELossless
    run = dcmsign("--verify", "+rg", "+cf", pki.ca, by_lab)
    assert _verified_by_dcmsign(run), run.stdout + run.stderr


def test_the_lab_verifies_dcmsign_md5_and_names_ripemd160(original: Path, pki: Pki,
                                                          tmp_path: Path) -> None:
    """MD5 (+mm) is verified though never used to sign; RIPEMD-160 (+mr, dcmsign's default)
    cannot be (``cryptography`` has no RIPEMD-160), and the result says so."""
    md5, ripemd = tmp_path / "md5.dcm", tmp_path / "ripemd.dcm"
    assert dcmsign("--sign", pki.key, pki.cert, "+pb", "+mm", original, md5).returncode == 0
    assert verify(dcmread(md5), [pki.ca])[0].ok
    assert dcmsign("--sign", pki.key, pki.cert, "+pb", "+mr", original, ripemd).returncode == 0
    [result] = verify(dcmread(ripemd), [pki.ca])
    assert result.problems == ("MAC Algorithm 'RIPEMD160' is not supported",)
