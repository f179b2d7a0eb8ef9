"""Signing a transfer's manifest and checking the signature (:mod:`lab.dicom.data.integrity`).

The canonical text of a :class:`~lab.dicom.data.manifest.Manifest` is signed detached with ECDSA
P-256/SHA-256 (FIPS 186-5, DER signature as in RFC 3279 2.2.3) or RSASSA-PSS/SHA-256 with
MGF1-SHA-256 and a 32-byte salt (RFC 8017 8.1, RFC 4055), by a certificate from the lab PKI
(``lab.security.pki.authority``, usage ``signing``). The signed manifest is one JSON file that
carries the signer's certificate, so a receiver needs only the lab CA certificate to check it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from lab.dicom.data.manifest import Fields, IntegrityError, Manifest, check_shape
from lab.security.pki import authority

SIGNED_FORMAT = "teleradlab-signed-manifest/1"
ECDSA_SHA256 = "ecdsa-sha256"
RSA_PSS_SHA256 = "rsassa-pss-sha256"

_SIGNED_FIELDS: Fields = {
    "format": str,
    "manifest": dict,
    "signature": str,
    "signature_algorithm": str,
    "signer_certificate": str,
}


@dataclass(frozen=True)
class SignedManifest:
    """A manifest with a detached signature over ``manifest.to_json()`` (UTF-8) and the signer's
    certificate, so a receiver needs only the lab CA certificate to check it."""

    manifest: Manifest
    signature: bytes
    signature_algorithm: str
    signer_cert_pem: str


def sign_manifest(manifest: Manifest, key_path: Path, cert_path: Path) -> SignedManifest:
    """Sign with the key at ``key_path``; the algorithm follows the key (ECDSA or RSA-PSS)."""
    try:
        key, cert = authority.load_key_pair(key_path, cert_path)
    except authority.PkiError as exc:
        raise IntegrityError(f"cannot sign: {exc}") from None
    data = manifest.to_json().encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature, algorithm = key.sign(data, ec.ECDSA(hashes.SHA256())), ECDSA_SHA256
    else:
        signature, algorithm = key.sign(data, _PSS, hashes.SHA256()), RSA_PSS_SHA256
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return SignedManifest(manifest, signature, algorithm, pem)


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def write_signed(signed: SignedManifest, path: Path) -> None:
    """Write one JSON file: manifest, base64 signature, algorithm, signer certificate (PEM)."""
    doc = {
        "format": SIGNED_FORMAT,
        "manifest": signed.manifest.to_dict(),
        "signature": base64.b64encode(signed.signature).decode(),
        "signature_algorithm": signed.signature_algorithm,
        "signer_certificate": signed.signer_cert_pem,
    }
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def read_signed(path: Path) -> SignedManifest:
    """Read what :func:`write_signed` wrote; a malformed file is an :class:`IntegrityError`.
    Nothing is trusted yet: that is :func:`verify_manifest`'s job."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"cannot read signed manifest {path}: {exc}") from None
    check_shape(doc, _SIGNED_FIELDS, str(path))
    if doc["format"] != SIGNED_FORMAT:
        raise IntegrityError(f"{path}: format {doc['format']!r} is not {SIGNED_FORMAT!r}")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
    except binascii.Error:
        raise IntegrityError(f"{path}: signature is not base64") from None
    manifest = Manifest.from_dict(doc["manifest"])
    return SignedManifest(
        manifest, signature, doc["signature_algorithm"], doc["signer_certificate"]
    )


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_manifest`: each check, and every problem found."""

    signature_valid: bool
    chain_valid: bool
    signer: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.signature_valid and self.chain_valid and not self.problems

    @property
    def reason(self) -> str:
        if self.ok:
            return f"signature valid; signer {self.signer!r} is trusted by the lab CA"
        return "; ".join(self.problems)


def verify_manifest(signed: SignedManifest, ca_cert_path: Path) -> Verification:
    """Check the signature over the canonical manifest and that the signer's certificate chains to
    the lab CA, is valid now and is issued for signing (``lab.security.pki.authority.verify_chain``
    and ``require_usage``). Bad input gives ``ok=False`` with the reasons, never an exception; only
    an unreadable CA certificate (the receiver's own trust anchor) raises
    :class:`lab.security.pki.authority.PkiError`.
    """
    ca_cert = authority.load_certificate(ca_cert_path)
    try:
        cert = x509.load_pem_x509_certificate(signed.signer_cert_pem.encode())
    except ValueError as exc:
        return Verification(False, False, None, (f"signer certificate unreadable: {exc}",))
    problem = _signature_problem(signed, cert)
    problems = [problem] if problem else []
    chain_valid = True
    try:
        authority.verify_chain(cert, ca_cert)
        authority.require_usage(cert, "signing")
    except authority.PkiError as exc:
        chain_valid = False
        problems.append(f"signer not trusted: {exc}")
    return Verification(problem is None, chain_valid, authority.subject_cn(cert), tuple(problems))


def _signature_problem(signed: SignedManifest, cert: x509.Certificate) -> str | None:
    """Verify with the algorithm the signer's key type implies (the file's claim must agree, so
    it cannot pick another scheme); None when the signature is good."""
    data = signed.manifest.to_json().encode()
    key, claimed = cert.public_key(), signed.signature_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and claimed == ECDSA_SHA256:
            key.verify(signed.signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and claimed == RSA_PSS_SHA256:
            key.verify(signed.signature, data, _PSS, hashes.SHA256())
        else:
            return f"signature algorithm {claimed!r} does not fit the signer's {type(key).__name__}"
    except InvalidSignature:
        return "signature does not match the manifest (altered after signing?)"
    return None
