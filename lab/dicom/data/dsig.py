"""DICOM digital signatures: sign a SOP Instance and verify its signatures (PS3.15 Annex C).

A signature lives in the object itself (PS3.3 C.12.1.1.3, the Digital Signatures Macro): one
item of the MAC Parameters Sequence (4FFE,0001) says how the MAC was computed — MAC ID Number,
MAC Calculation Transfer Syntax UID (see :func:`mac_transfer_syntax`), MAC Algorithm, and Data
Elements Signed (0400,0020), the list of the signed tags — and one item of the Digital
Signatures Sequence (FFFA,FFFA) carries the signature: the same MAC ID Number, a Digital
Signature UID, the Digital Signature DateTime, Certificate Type ``X509_1993_SIG``, the signer's
certificate (DER) and the Signature.

The MAC is a hash of the signed elements encoded as :mod:`lab.dicom.data.dsig_stream` describes
(PS3.3 C.12.1.1.3.1.1), followed by the signature item's own elements except the certificate,
the signature and certified timestamps — so the signature UID and date cannot be swapped
either (PS3.3 C.12.1.1.3.1.2; DCMTK's dcmsign does the same). The Signature is that MAC signed
with the signer's RSA key, RSASSA-PKCS1-v1_5 with the MAC's DigestInfo (PS3.15 C.2, RFC 8017
8.2). Which attributes must be signed is the profile's business
(:mod:`lab.dicom.data.dsig_profiles`).

Verification recomputes the MAC over the elements as they are encoded now, checks the RSA
signature with the certificate in the item, and the certificate's chain to the trusted CA
certificates with ``cryptography``'s X.509 path validation. Signatures nested in sequence items
(PS3.3 C.12.1.1.3, allowed by the standard) are neither made nor checked here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import verification
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, generate_uid

from lab.dicom.data.dsig_profiles import (
    CERTIFICATE_TYPE,
    EXPLICIT_VR_LITTLE_ENDIAN,
    PROFILES,
    SIGNING_MACS,
    VERIFYING_MACS,
    Profile,
    satisfied_profiles,
)
from lab.dicom.data.dsig_stream import StreamError, item_stream, mac_stream, signable
from lab.errors import LabError

#: Elements of a Digital Signatures Sequence item that the MAC leaves out (PS3.3 C.12.1.1.3.1.2).
NOT_IN_MAC = (Tag(0x0400, 0x0115), Tag(0x0400, 0x0120), Tag(0x0400, 0x0305),
              Tag(0x0400, 0x0310))

KeyArg: TypeAlias = rsa.RSAPrivateKey | Path
CertArg: TypeAlias = x509.Certificate | Path


class DsigError(LabError):
    """A signature cannot be made: wrong key or profile, an unsignable or absent tag."""


@dataclass(frozen=True)
class Result:
    """The verdict on one signature of one object; ``problems`` is empty when it verifies.

    ``elements`` names the signed elements found missing (``(0010,0010) PatientName``);
    ``profiles`` the profiles whose required attributes the signature covers."""

    sop_instance_uid: str
    signature_uid: str
    mac_algorithm: str
    signer: str
    signed: tuple[BaseTag, ...]
    profiles: tuple[str, ...]
    problems: tuple[str, ...]
    elements: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the signature, the certificate chain and every signed element check."""
        return not self.problems

    def __str__(self) -> str:
        head = f"object {self.sop_instance_uid} signature {self.signature_uid}"
        if self.ok:
            return f"{head}: verified ({self.mac_algorithm}, signer {self.signer})"
        return f"{head}: FAILED: {'; '.join(self.problems)}"


def sign(
    ds: Dataset,
    key: KeyArg,
    cert: CertArg,
    profile: str = "base-rsa",
    mac: str = "SHA256",
    tags: Iterable[int] | None = None,
    *,
    now: datetime | None = None,
) -> Dataset:
    """Add a signature to ``ds`` (in place, returned) by ``key`` and its certificate ``cert``.

    ``tags`` None signs every signable top-level attribute (PS3.15 C.2's usual choice, which
    covers every profile); otherwise those tags plus what ``profile`` requires of those present
    (PS3.15 C.3, C.4). ``mac`` is a MAC Algorithm defined term (PS3.3 C.12.1.1.3). ``ds`` is
    changed only when the signature is made.
    """
    chosen = _profile(profile)
    if mac not in SIGNING_MACS:
        raise DsigError(f"MAC algorithm {mac!r}: the lab signs with {', '.join(SIGNING_MACS)}")
    private_key, certificate = _private_key(key), _certificate(cert)
    if private_key.public_key().public_numbers() != _rsa_public(certificate).public_numbers():
        raise DsigError("the private key does not belong to the certificate")
    signed = _tags_to_sign(ds, chosen, tags)
    mac_id = _free_mac_id(ds)
    item = _signature_item(mac_id, certificate, now or datetime.now(UTC))
    try:
        stream = mac_stream(ds, signed) + item_stream(item, NOT_IN_MAC)
    except StreamError as exc:
        raise DsigError(str(exc)) from None
    item.Signature = private_key.sign(stream, padding.PKCS1v15(), SIGNING_MACS[mac]())
    params = Dataset()
    params.MACIDNumber = mac_id
    params.MACCalculationTransferSyntaxUID = mac_transfer_syntax(ds)
    params.MACAlgorithm = mac
    params.DataElementsSigned = list(signed)
    _append(ds, "MACParametersSequence", params)
    _append(ds, "DigitalSignaturesSequence", item)
    return ds


def verify(ds: Dataset, trusted_ca_certs: Iterable[CertArg], *,
           now: datetime | None = None) -> list[Result]:
    """Check every top-level signature of ``ds`` against ``trusted_ca_certs``; an empty list
    means the object carries no signature (PS3.15 C.1: no signature is not a failed one)."""
    trusted = [_certificate(cert) for cert in trusted_ca_certs]
    moment = now or datetime.now(UTC)
    params = {int(item.get("MACIDNumber", -1)): item
              for item in ds.get("MACParametersSequence", [])}
    return [_verify_one(ds, item, params, trusted, moment)
            for item in ds.get("DigitalSignaturesSequence", [])]


def _verify_one(ds: Dataset, item: Dataset, params: dict[int, Dataset],
                trusted: Sequence[x509.Certificate], now: datetime) -> Result:
    mac_item = params.get(int(item.get("MACIDNumber", -1)))
    mac_name = str(mac_item.get("MACAlgorithm", "")) if mac_item is not None else ""
    signed = _signed_tags(mac_item)
    certificate, problems = _signer_certificate(item, trusted, now)
    unusable = _parameter_problems(item, mac_item)
    missing = tuple(_name(tag) for tag in signed if tag not in ds)
    problems += unusable + [f"signed element {name} removed" for name in missing]
    if certificate is not None and not unusable and not missing:
        # checked even when the chain failed, so a report says every reason at once
        problems += _signature_problems(ds, item, signed, certificate,
                                        VERIFYING_MACS[mac_name]())
    return Result(
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        signature_uid=str(item.get("DigitalSignatureUID", "")),
        mac_algorithm=mac_name,
        signer=certificate.subject.rfc4514_string() if certificate is not None else "",
        signed=signed,
        profiles=satisfied_profiles(ds, signed),
        problems=tuple(problems),
        elements=missing,
    )


def _parameter_problems(item: Dataset, mac_item: Dataset | None) -> list[str]:
    if mac_item is None:
        return [f"no MAC Parameters item with MAC ID Number {item.get('MACIDNumber')}"]
    problems = []
    syntax = UID(str(mac_item.get("MACCalculationTransferSyntaxUID", "")))
    if not _explicit_little_endian(syntax):
        problems.append(f"MAC Calculation Transfer Syntax {syntax!r} is not an explicit VR "
                        "little endian one (PS3.3 C.12.1.1.3)")
    algorithm = str(mac_item.get("MACAlgorithm", ""))
    if algorithm not in VERIFYING_MACS:
        problems.append(f"MAC Algorithm {algorithm!r} is not supported")
    if "Signature" not in item:
        problems.append("the signature item has no Signature (0400,0120)")
    return problems


def _signature_problems(ds: Dataset, item: Dataset, signed: tuple[BaseTag, ...],
                        certificate: x509.Certificate,
                        algorithm: hashes.HashAlgorithm) -> list[str]:
    """Check the RSA signature over the MAC of the elements as encoded now; on failure, tell a
    changed object (the signature holds another MAC) from a signature this key did not make."""
    try:
        stream = mac_stream(ds, signed) + item_stream(item, NOT_IN_MAC)
    except StreamError as exc:
        return [str(exc)]
    public_key = _rsa_public(certificate)
    signature = bytes(item.Signature)
    try:
        public_key.verify(signature, stream, padding.PKCS1v15(), algorithm)
        return []
    except InvalidSignature:
        pass
    try:
        public_key.recover_data_from_signature(signature, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return ["the Signature was not made with the key of the Certificate of Signer"]
    return ["a signed element's value changed since signing (the MAC differs)"]


def _signer_certificate(item: Dataset, trusted: Sequence[x509.Certificate],
                        now: datetime) -> tuple[x509.Certificate | None, list[str]]:
    kind = str(item.get("CertificateType", ""))
    if kind != CERTIFICATE_TYPE:
        return None, [f"Certificate Type {kind!r} is not {CERTIFICATE_TYPE}"]
    try:
        certificate = _der_certificate(bytes(item.CertificateOfSigner))
    except (AttributeError, ValueError) as exc:
        return None, [f"the Certificate of Signer cannot be read: {exc}"]
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        return None, ["the Certificate of Signer has no RSA key (PS3.15 C.2 requires RSA)"]
    problem = _chain_problem(certificate, trusted, now)
    return certificate, [problem] if problem else []


def _der_certificate(value: bytes) -> x509.Certificate:
    """The certificate in an OB value, which PS3.5 6.2 pads to even length with a zero byte
    (a DER certificate of odd length, as DCMTK writes it)."""
    try:
        return x509.load_der_x509_certificate(value)
    except ValueError:
        if not value.endswith(b"\x00"):
            raise
        return x509.load_der_x509_certificate(value[:-1])


def _chain_problem(certificate: x509.Certificate, trusted: Sequence[x509.Certificate],
                   now: datetime) -> str | None:
    """Path validation (RFC 5280 6) of the signer's certificate to a trusted CA. The CA side
    keeps the Web PKI rules (basic constraints, key usage); the signer's own extensions are
    not held to a TLS client's (no clientAuth needed to sign an object)."""
    if not trusted:
        return "no trusted CA certificate was given"
    builder = (verification.PolicyBuilder()
               .store(verification.Store(list(trusted)))
               .time(now)
               .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                   ee_policy=verification.ExtensionPolicy.permit_all()))
    try:
        builder.build_client_verifier().verify(certificate, [])
    except verification.VerificationError as exc:
        subject = certificate.subject.rfc4514_string()
        return f"the signer's certificate ({subject}) does not chain to a trusted CA: {exc}"
    return None


def mac_transfer_syntax(ds: Dataset) -> str:
    """The MAC Calculation Transfer Syntax for ``ds``: its own transfer syntax when that is an
    explicit VR little endian one — so encapsulated (compressed) Pixel Data is signed as its
    fragments, which must then never be re-fragmented (PS3.3 C.12.1.1.3, note) — else Explicit
    VR Little Endian. DCMTK's dcmsign chooses the same way."""
    file_meta = getattr(ds, "file_meta", None)
    syntax = UID(str(file_meta.get("TransferSyntaxUID", ""))) if file_meta else UID("")
    if _explicit_little_endian(syntax) and not syntax.is_deflated:
        return str(syntax)
    return EXPLICIT_VR_LITTLE_ENDIAN


def _explicit_little_endian(syntax: UID) -> bool:
    return syntax.is_transfer_syntax and syntax.is_little_endian and not syntax.is_implicit_VR


def _signed_tags(mac_item: Dataset | None) -> tuple[BaseTag, ...]:
    if mac_item is None or "DataElementsSigned" not in mac_item:
        return ()
    value = mac_item.DataElementsSigned
    values = [value] if isinstance(value, int) else list(value)
    return tuple(Tag(tag) for tag in values)


def _tags_to_sign(ds: Dataset, profile: Profile, tags: Iterable[int] | None) -> list[BaseTag]:
    if tags is None:
        return [Tag(tag) for tag in sorted(ds.keys()) if signable(ds, Tag(tag))]
    wanted = {Tag(tag) for tag in tags}
    absent = sorted(_name(tag) for tag in wanted if tag not in ds)
    if absent:
        raise DsigError(f"cannot sign elements the object does not have: {', '.join(absent)}")
    wanted.update(profile.required_in(ds))
    refused = sorted(_name(tag) for tag in wanted if not signable(ds, tag))
    if refused:
        raise DsigError(f"not signable (PS3.3 C.12.1.1.3.1.1): {', '.join(refused)}")
    return sorted(wanted)


def _signature_item(mac_id: int, certificate: x509.Certificate, now: datetime) -> Dataset:
    item = Dataset()
    item.MACIDNumber = mac_id
    item.DigitalSignatureUID = generate_uid()
    item.DigitalSignatureDateTime = now.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f+0000")
    item.CertificateType = CERTIFICATE_TYPE
    item.CertificateOfSigner = certificate.public_bytes(serialization.Encoding.DER)
    return item


def _free_mac_id(ds: Dataset) -> int:
    used = {int(item.get("MACIDNumber", -1)) for item in ds.get("MACParametersSequence", [])}
    return next(number for number in range(len(used) + 1) if number not in used)


def _append(ds: Dataset, keyword: str, item: Dataset) -> None:
    if keyword not in ds:
        setattr(ds, keyword, DicomSequence())
    getattr(ds, keyword).append(item)


def _profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise DsigError(f"profile {name!r}: one of {', '.join(PROFILES)}") from None


def _private_key(key: KeyArg) -> rsa.RSAPrivateKey:
    loaded = (serialization.load_pem_private_key(key.read_bytes(), password=None)
              if isinstance(key, Path) else key)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise DsigError("the RSA profiles of PS3.15 Annex C need an RSA private key")
    return loaded


def _certificate(cert: CertArg) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.read_bytes()) if isinstance(cert, Path) else cert


def _rsa_public(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise DsigError("the certificate has no RSA key (PS3.15 C.2 requires RSA)")
    return public


def _name(tag: BaseTag) -> str:
    """``(0010,0010) PatientName``: how results name an element."""
    keyword = keyword_for_tag(tag)
    return f"({tag.group:04X},{tag.element:04X}){' ' + keyword if keyword else ''}"
