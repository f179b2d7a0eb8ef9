"""Digital signatures (lab.dicom.data.dsig, PS3.15 Annex C): round trips per profile and MAC, the
tamper cases each named, Part-10 save/load bit for bit, and the MAC byte stream's rules
(PS3.3 C.12.1.1.3.1.1) checked against bytes written out by hand."""

from __future__ import annotations

import copy
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
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from lab.dicom.data.dsig import DsigError, sign, verify
from lab.dicom.data.dsig_profiles import PROFILES, SIGNING_MACS
from lab.dicom.data.dsig_stream import mac_stream
from lab.dicom.data.generate import generate_study


class Signer(NamedTuple):
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    ca: x509.Certificate


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject: str, key: rsa.RSAPrivateKey, issuer: str,
                 issuer_key: rsa.RSAPrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    usage = dict(digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                 encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder()
            .subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(**usage), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def make_signer(site: str) -> Signer:
    """A CA of its own and a signing certificate it issued (PS3.15 C.2: X.509, RSA)."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _certificate(f"{site} CA", ca_key, f"{site} CA", ca_key, ca=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Signer(key, _certificate(f"{site} modality", key, f"{site} CA", ca_key, ca=False), ca)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return make_signer("site-a")


@pytest.fixture(scope="module")
def other_site() -> Signer:
    return make_signer("elsewhere")


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study = generate_study("CT", tmp_path_factory.mktemp("ct"), objects=1)
    return study.files[0]


@pytest.fixture
def ds(ct_file: Path) -> Dataset:
    loaded = dcmread(ct_file)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-A0100", "SRT", "Brain"
    loaded.AnatomicRegionSequence = Sequence([code])
    return loaded


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("mac", sorted(SIGNING_MACS))
def test_round_trip_per_profile_and_mac(ds: Dataset, signer: Signer, profile: str,
                                        mac: str) -> None:
    sign(ds, signer.key, signer.cert, profile=profile, mac=mac)
    [result] = verify(ds, [signer.ca])
    assert result.ok, str(result)
    assert result.mac_algorithm == mac
    assert result.sop_instance_uid == ds.SOPInstanceUID
    assert set(result.profiles) == set(PROFILES)  # everything signed covers every profile
    assert 0x7FE00010 in result.signed and 0x00100010 in result.signed


def test_the_signature_items_are_as_ps3_3_c_12_1_1_3_says(ds: Dataset, signer: Signer) -> None:
    sign(ds, signer.key, signer.cert)
    [params], [item] = ds.MACParametersSequence, ds.DigitalSignaturesSequence
    assert params.MACIDNumber == item.MACIDNumber == 0
    assert params.MACCalculationTransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert params.MACAlgorithm == "SHA256"
    assert item.CertificateType == "X509_1993_SIG"
    assert x509.load_der_x509_certificate(item.CertificateOfSigner) == signer.cert
    assert len(item.Signature) == 256 and item.DigitalSignatureDateTime.endswith("+0000")
    signed = list(params.DataElementsSigned)
    assert signed == sorted(signed) and all(tag.group >= 8 for tag in signed)


def test_narrowed_tags_get_what_the_profile_requires(ds: Dataset, signer: Signer) -> None:
    sign(ds, signer.key, signer.cert, profile="creator-rsa", tags=[0x00100010])
    [result] = verify(ds, [signer.ca])
    assert result.ok and "creator-rsa" in result.profiles
    assert {0x00100010, 0x00080016, 0x00080018, 0x0020000D, 0x7FE00010} <= set(result.signed)
    assert 0x00100020 not in result.signed  # PatientID: not asked for, not required


def test_a_base_signature_of_one_tag_meets_no_other_profile(ds: Dataset,
                                                            signer: Signer) -> None:
    sign(ds, signer.key, signer.cert, tags=[0x00100010])
    [result] = verify(ds, [signer.ca])
    assert result.ok and result.signed == (0x00100010,)
    assert result.profiles == ("base-rsa",)


def test_a_changed_pixel_is_detected(ds: Dataset, signer: Signer) -> None:
    sign(ds, signer.key, signer.cert)
    pixels = bytearray(ds.PixelData)
    pixels[1000] ^= 0x01
    ds.PixelData = bytes(pixels)
    [result] = verify(ds, [signer.ca])
    assert not result.ok
    assert "value changed" in str(result) and ds.SOPInstanceUID in str(result)


def test_a_changed_patient_name_is_detected(ds: Dataset, signer: Signer) -> None:
    sign(ds, signer.key, signer.cert)
    ds.PatientName = "Other^Patient"
    [result] = verify(ds, [signer.ca])
    assert not result.ok and "value changed" in result.problems[0]


def test_a_removed_signed_element_is_named(ds: Dataset, signer: Signer) -> None:
    sign(ds, signer.key, signer.cert)
    del ds.PatientName
    [result] = verify(ds, [signer.ca])
    assert not result.ok
    assert result.elements == ("(0010,0010) PatientName",)
    assert "signed element (0010,0010) PatientName removed" in str(result)


def test_a_certificate_from_another_ca_is_refused(ds: Dataset, signer: Signer,
                                                  other_site: Signer) -> None:
    sign(ds, other_site.key, other_site.cert)
    [result] = verify(ds, [signer.ca])
    assert not result.ok
    assert "does not chain to a trusted CA" in str(result)
    assert "elsewhere modality" in str(result)
    assert len(result.problems) == 1  # the signature itself is sound
    [trusting] = verify(ds, [signer.ca, other_site.ca])
    assert trusting.ok
    ds.PatientName = "Other^Patient"
    [both] = verify(ds, [signer.ca])
    assert "does not chain" in both.problems[0] and "value changed" in both.problems[1]


def test_a_signature_by_another_key_is_refused(ds: Dataset, signer: Signer,
                                               other_site: Signer) -> None:
    sign(ds, signer.key, signer.cert)
    forged = copy.deepcopy(ds)
    sign(forged, other_site.key, other_site.cert)
    ds.DigitalSignaturesSequence[0].Signature = forged.DigitalSignaturesSequence[1].Signature
    [result] = verify(ds, [signer.ca])
    assert result.problems == ("the Signature was not made with the key of the Certificate "
                               "of Signer",)


def test_unsigned_elements_may_change(ds: Dataset, signer: Signer) -> None:
    sign(ds, signer.key, signer.cert, tags=[0x00100010])
    ds.PatientID = "CHANGED"
    assert verify(ds, [signer.ca])[0].ok


def test_two_signatures_verify_each(ds: Dataset, signer: Signer, other_site: Signer) -> None:
    sign(ds, signer.key, signer.cert, mac="SHA512")
    sign(ds, other_site.key, other_site.cert, profile="authorization-rsa")
    results = verify(ds, [signer.ca, other_site.ca])
    assert [r.ok for r in results] == [True, True]
    assert [int(i.MACIDNumber) for i in ds.MACParametersSequence] == [0, 1]


def test_survives_part10_save_and_load_bit_for_bit(ds: Dataset, signer: Signer,
                                                   tmp_path: Path) -> None:
    sign(ds, signer.key, signer.cert, profile="creator-rsa")
    first, second = tmp_path / "first.dcm", tmp_path / "second.dcm"
    ds.save_as(first, enforce_file_format=True)
    loaded = dcmread(first)
    [result] = verify(loaded, [signer.ca])
    assert result.ok, str(result)
    assert (loaded.DigitalSignaturesSequence[0].Signature
            == ds.DigitalSignaturesSequence[0].Signature)
    loaded.save_as(second, enforce_file_format=True)
    assert first.read_bytes() == second.read_bytes()


def test_no_signature_is_an_empty_list(ds: Dataset, signer: Signer) -> None:
    assert verify(ds, [signer.ca]) == []


def test_refusals(ds: Dataset, signer: Signer, other_site: Signer) -> None:
    with pytest.raises(DsigError, match="does not belong"):
        sign(ds, other_site.key, signer.cert)
    with pytest.raises(DsigError, match="MAC algorithm 'MD5'"):
        sign(ds, signer.key, signer.cert, mac="MD5")
    with pytest.raises(DsigError, match="profile 'sr-rsa'"):
        sign(ds, signer.key, signer.cert, profile="sr-rsa")
    with pytest.raises(DsigError, match=r"\(0010,1000\) OtherPatientIDs"):
        sign(ds, signer.key, signer.cert, tags=[0x00101000])
    ds.add_new(0x00091010, "UN", b"ab")
    with pytest.raises(DsigError, match=r"not signable.*\(0009,1010\)"):
        sign(ds, signer.key, signer.cert, tags=[0x00091010])
    assert "DigitalSignaturesSequence" not in ds


def test_signs_from_pem_files(ds: Dataset, tmp_path: Path) -> None:
    site = make_signer("files")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_bytes(site.key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert.write_bytes(site.cert.public_bytes(serialization.Encoding.PEM))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(site.ca.public_bytes(serialization.Encoding.PEM))
    sign(ds, key, cert)
    assert verify(ds, [ca])[0].ok


def _sequence_dataset(undefined: bool) -> Dataset:
    inner = Dataset()
    inner.CodeValue = "12"
    ds = Dataset()
    ds.PatientName = "A^B"
    ds.AnatomicRegionSequence = Sequence([inner])
    ds["AnatomicRegionSequence"].is_undefined_length = undefined
    return ds


@pytest.mark.parametrize("undefined", [False, True])
def test_the_byte_stream_of_a_sequence(undefined: bool) -> None:
    """PS3.3 C.12.1.1.3.1.1: a sequence is its tag and VR without length, each item its Item
    tag without length, then the Sequence Delimitation tag — whatever the lengths were."""
    ds = _sequence_dataset(undefined)
    expected = (b"\x08\x00\x18\x22SQ\x00\x00"
                + b"\xfe\xff\x00\xe0" + b"\x08\x00\x00\x01SH\x02\x0012"
                + b"\xfe\xff\xdd\xe0"
                + b"\x10\x00\x10\x00PN\x04\x00A^B ")
    assert mac_stream(ds, [0x00100010, 0x00082218]) == expected


def test_the_byte_stream_leaves_out_group_lengths_and_un() -> None:
    ds = _sequence_dataset(False)
    ds.add_new(0x00100000, "UL", 4)
    ds.add_new(0x00111010, "UN", b"xx")
    assert mac_stream(ds, [0x00100010]) == b"\x10\x00\x10\x00PN\x04\x00A^B "
    with pytest.raises(DsigError, match="not signable"):
        sign(ds, *make_signer("x")[:2], tags=[0x00111010])


def test_a_certificate_padded_to_even_length_is_read(ds: Dataset, signer: Signer) -> None:
    """PS3.5 6.2: an OB value of odd length gets a zero byte; DCMTK stores an odd-length DER
    certificate so, and the verifier must read past it (found against dcmsign)."""
    sign(ds, signer.key, signer.cert)
    item = ds.DigitalSignaturesSequence[0]
    item.CertificateOfSigner = bytes(item.CertificateOfSigner) + b"\x00"
    [result] = verify(ds, [signer.ca])
    assert result.ok, str(result)


def test_compressed_pixel_data_is_signed_as_its_fragments(ds: Dataset, signer: Signer,
                                                          tmp_path: Path) -> None:
    """RLE Lossless (PS3.5 A.4.2): the MAC Calculation Transfer Syntax is the object's own, the
    Pixel Data its fragments; a changed fragment byte is detected after a save and load."""
    ds.compress(RLELossless)
    sign(ds, signer.key, signer.cert)
    assert ds.MACParametersSequence[0].MACCalculationTransferSyntaxUID == RLELossless
    path = tmp_path / "rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    loaded = dcmread(path)
    assert verify(loaded, [signer.ca])[0].ok
    data = bytearray(loaded.PixelData)
    data[-10] ^= 0x01
    loaded.PixelData = bytes(data)
    assert "value changed" in str(verify(loaded, [signer.ca])[0])


def test_survives_a_re_encoding_in_implicit_vr(ds: Dataset, signer: Signer,
                                               tmp_path: Path) -> None:
    """The MAC is over the explicit VR encoding whatever the object travels in (PS3.3
    C.12.1.1.3): read back from Implicit VR Little Endian — the C-STORE default — it verifies."""
    sign(ds, signer.key, signer.cert)
    path = tmp_path / "implicit.dcm"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
    loaded = dcmread(path)
    assert loaded.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    [result] = verify(loaded, [signer.ca])
    assert result.ok, str(result)

