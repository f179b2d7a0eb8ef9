"""CMS (RFC 5652) as the DICOM security profiles use it: EnvelopedData for a named recipient and
SignedData by a certificate of the lab CA.

Two profiles of PS3.15 wrap DICOM data in CMS: attribute confidentiality (Annex E: the original
values in Encrypted Content (0400,0520), PS3.3 C.12.1.1.4.1) and secure media (Annex D, the
PS3.10 7.4 Secure DICOM File). Both ask for the same CMS: EnvelopedData with AES-CBC content
encryption and RSA key transport (PKCS#1 v1.5, RFC 8017 7.2) to the recipient's X.509
certificate, and SignedData by an RSA key whose certificate travels in the SignedData.

``cryptography`` makes the EnvelopedData (``PKCS7EnvelopeBuilder``, AES-128/256-CBC), opens it
(``pkcs7_decrypt_der``) and makes the SignedData (``PKCS7SignatureBuilder``); it has no
verification of SignedData, so :func:`verify_signed` reads the structure with ``asn1crypto``
and checks it with ``cryptography``: the message-digest attribute against the content
(RFC 5652 5.4), the signature over the DER of the signed attributes (5.4, 5.6), the signer's
certificate chain to the trusted CA (RFC 5280 6). No ASN.1 or cipher is written here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509 import verification

from lab.errors import LabError

#: Content encryption algorithms (RFC 3565) that ``cryptography`` can make; PS3.15 D.1, E.1.
CIPHERS: dict[str, type[algorithms.AES128] | type[algorithms.AES256]] = {
    "aes128": algorithms.AES128, "aes256": algorithms.AES256}

#: Digest algorithms a SignedData may use here (PS3.15 D.1 names SHA-256 and stronger).
DIGESTS: dict[str, type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class CmsError(LabError):
    """A CMS structure cannot be opened or does not verify; the message says why."""


def der(value: bytes) -> bytes:
    """A DER structure out of an OB value: PS3.5 6.2 pads OB to even length with one zero byte,
    which is not part of the DER (GDCM and DCMTK write it so)."""
    if value.endswith(b"\x00") and len(value) % 2 == 0:
        try:
            asn1_cms.ContentInfo.load(value, strict=True)
        except ValueError:
            return value[:-1]
    return value


def envelope(data: bytes, recipients: Sequence[x509.Certificate], cipher: str = "aes256",
             *, inner: str = "data") -> bytes:
    """``data`` as a DER ContentInfo of EnvelopedData for each of ``recipients`` (RSA key
    transport, ``cipher`` AES-CBC). ``inner`` is the content type of the enveloped content
    (RFC 5652 6.1): ``signed_data`` when ``data`` is a SignedData (PS3.10 7.4)."""
    if cipher not in CIPHERS:
        raise CmsError(f"cipher {cipher!r}: one of {', '.join(CIPHERS)}")
    if not recipients:
        raise CmsError("an EnvelopedData needs at least one recipient certificate")
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(data)
    for certificate in recipients:
        if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
            raise CmsError(f"recipient {_subject(certificate)} has no RSA key (PS3.15 needs RSA "
                           "key transport)")
        builder = builder.add_recipient(certificate)
    made = (builder.set_content_encryption_algorithm(CIPHERS[cipher])
            .encrypt(Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    if inner == "data":
        return made
    # the builder always says id-data; the content type is outside the encryption (RFC 5652
    # 6.1 EncryptedContentInfo), so naming the real one changes no encrypted byte
    info = asn1_cms.ContentInfo.load(made)
    info["content"]["encrypted_content_info"]["content_type"] = inner
    return bytes(info.dump(force=True))


def recipients_of(value: bytes) -> list[str]:
    """Who can open an EnvelopedData: the certificate of each key-transport recipient, named by
    serial number and issuer as CMS names it (RFC 5652 6.2.1)."""
    info = _content_info(der(value), "enveloped_data")
    names = []
    for recipient in info["content"]["recipient_infos"]:
        rid = recipient.chosen["rid"]
        if rid.name == "issuer_and_serial_number":
            names.append(f"the certificate of serial {rid.chosen['serial_number'].native:x} "
                         f"issued by {rid.chosen['issuer'].human_friendly}")
        else:
            names.append(f"subject key id {rid.chosen.native.hex()}")
    return names


def open_envelope(value: bytes, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> bytes:
    """The content of an EnvelopedData, opened with the recipient's ``key`` and ``certificate``.
    A key that is not the certificate's, or a certificate that is not among the recipients, is
    refused before any decryption, saying who the recipients are."""
    if key.public_key().public_numbers() != _rsa(certificate).public_numbers():
        raise CmsError("the private key does not belong to the recipient certificate "
                       f"{_subject(certificate)}")
    content = der(value)
    recipients = recipients_of(content)
    mine = (certificate.issuer.public_bytes(), certificate.serial_number)
    if not any(_is_recipient(recipient, mine) for recipient in
               _content_info(content, "enveloped_data")["content"]["recipient_infos"]):
        raise CmsError(f"not encrypted for {_subject(certificate)}: the recipients are "
                       f"{'; '.join(recipients)}")
    try:
        return pkcs7.pkcs7_decrypt_der(content, certificate, key, [])
    except ValueError as exc:
        raise CmsError(f"the EnvelopedData cannot be decrypted: {exc}") from None


def sign_data(data: bytes, key: rsa.RSAPrivateKey, certificate: x509.Certificate,
              digest: str = "sha256") -> bytes:
    """``data`` inside a DER ContentInfo of SignedData (content included, the signer's
    certificate included, signed attributes with the message digest; RSA PKCS#1 v1.5)."""
    if digest not in DIGESTS:
        raise CmsError(f"digest {digest!r}: one of {', '.join(DIGESTS)}")
    if key.public_key().public_numbers() != _rsa(certificate).public_numbers():
        raise CmsError(f"the private key does not belong to {_subject(certificate)}")
    return (pkcs7.PKCS7SignatureBuilder().set_data(data)
            .add_signer(certificate, key, DIGESTS[digest]())
            .sign(Encoding.DER, [pkcs7.PKCS7Options.Binary]))


def verify_signed(value: bytes, trusted: Iterable[x509.Certificate], *,
                  now: datetime | None = None) -> tuple[bytes, x509.Certificate]:
    """The content of a SignedData and its signer's certificate, once every signer's signature
    and certificate chain check; :class:`CmsError` naming the reason otherwise."""
    info = _content_info(der(value), "signed_data")["content"]
    content = info["encap_content_info"]["content"].native
    if not isinstance(content, bytes):
        raise CmsError("the SignedData carries no content (a detached signature)")
    certificates = [x509.load_der_x509_certificate(choice.chosen.dump())
                    for choice in info["certificates"] or [] if choice.name == "certificate"]
    if not info["signer_infos"]:
        raise CmsError("the SignedData has no signer")
    signers = [_check_signer(signer, content, certificates) for signer in info["signer_infos"]]
    anchors = list(trusted)
    for signer in signers:
        _check_chain(signer, anchors, certificates, now or datetime.now(UTC))
    return content, signers[0]


def _check_signer(signer: asn1_cms.SignerInfo, content: bytes,
                  certificates: Sequence[x509.Certificate]) -> x509.Certificate:
    sid = signer["sid"]
    if sid.name != "issuer_and_serial_number":
        raise CmsError("the signer is named by subject key identifier, which is not supported")
    wanted = (sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native)
    found = [cert for cert in certificates
             if (cert.issuer.public_bytes(), cert.serial_number) == wanted]
    if not found:
        raise CmsError("the signer's certificate is not in the SignedData")
    certificate = found[0]
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in DIGESTS:
        raise CmsError(f"digest algorithm {digest_name!r} is not accepted")
    algorithm = DIGESTS[digest_name]()
    attributes = signer["signed_attrs"]
    if not attributes:
        raise CmsError("the SignedData has no signed attributes (RFC 5652 5.3 needs them here)")
    digests = [a["values"][0].native for a in attributes if a["type"].native == "message_digest"]
    hasher = hashes.Hash(algorithm)
    hasher.update(content)
    if len(digests) != 1 or not constant_time.bytes_eq(digests[0], hasher.finalize()):
        raise CmsError("the content was changed after signing (its digest differs from the "
                       "signed message-digest attribute)")
    try:
        _rsa(certificate).verify(signer["signature"].native, attributes.untag().dump(),
                                 padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise CmsError(f"the signature of {_subject(certificate)} does not verify") from None
    return certificate


def _check_chain(certificate: x509.Certificate, trusted: Sequence[x509.Certificate],
                 intermediates: Sequence[x509.Certificate], now: datetime) -> None:
    """RFC 5280 path validation to a trusted CA; the signer's own extensions are not held to
    a TLS client's rules (as for the signatures of PS3.15 Annex C in :mod:`.dsig`)."""
    if not trusted:
        raise CmsError("no trusted CA certificate was given")
    verifier = (verification.PolicyBuilder().store(verification.Store(list(trusted))).time(now)
                .extension_policies(
                    ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                    ee_policy=verification.ExtensionPolicy.permit_all())
                .build_client_verifier())
    try:
        verifier.verify(certificate, [c for c in intermediates if c != certificate])
    except verification.VerificationError as exc:
        raise CmsError(f"the signer {_subject(certificate)} does not chain to a trusted CA: "
                       f"{exc}") from None


def _content_info(value: bytes, kind: str) -> asn1_cms.ContentInfo:
    try:
        info = asn1_cms.ContentInfo.load(value, strict=True)
        found = info["content_type"].native
        info["content"].native  # noqa: B018 - parses the whole structure now, not later
    except ValueError as exc:
        raise CmsError(f"not a CMS structure: {exc}") from None
    if found != kind:
        raise CmsError(f"a CMS {found}, not the {kind} expected")
    return info


def _is_recipient(recipient: asn1_cms.RecipientInfo, mine: tuple[bytes, int]) -> bool:
    """Key transport to the certificate named by issuer and serial (RFC 5652 6.2.1)."""
    if recipient.name != "ktri":
        return False
    rid = recipient.chosen["rid"]
    return bool(rid.name == "issuer_and_serial_number"
                and (rid.chosen["issuer"].dump(), rid.chosen["serial_number"].native) == mine)


def _rsa(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise CmsError(f"{_subject(certificate)} has no RSA key")
    return public


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()
