"""A small X.509 PKI for the lab: one root CA per lab, end-entity certificates issued from it.

The same credentials serve the three security measures of the lab, so each profile follows the
standard of the protocol that consumes it:

- ``signing``: integrity manifests of DICOM objects (``lab.dicom.data.integrity``); digitalSignature
  and contentCommitment key usage, id-kp-documentSigning EKU (RFC 9336).
- ``server`` / ``client``: DICOM TLS with mutual authentication (DICOM PS3.15 Annex B, the BCP 195
  TLS profiles); serverAuth / clientAuth EKU (RFC 5280 4.2.1.12).
- ``ipsec``: IKEv2 certificate authentication in strongSwan. RFC 4945 5.1.3.2 asks for
  digitalSignature, and 5.1.3.12 for a non-critical EKU holding id-kp-ipsecIKE if an EKU is
  present at all; serverAuth is added too because strongSwan (and Windows peers) accept it.

Every leaf carries CN=name and a SubjectAlternativeName with its DNS names and IPv4/IPv6 addresses
(RFC 5280 4.2.1.6), which is what TLS host checks (RFC 6125) and IKE identities (RFC 4945 5.1.2)
compare against. The hierarchy is deliberately one level (root -> leaf): the paper's testbed needs
no intermediates, and :func:`verify_chain` checks exactly that shape.

Files: ``<name>.key`` (PKCS#8 PEM, unencrypted, mode 0600) and ``<name>.crt`` (PEM); the CA is
``ca.key`` / ``ca.crt``. Existing files are never overwritten: a CA is an identity, and replacing
it silently would orphan everything issued from it. Validity starts one hour in the past so that
small clock skew between nodes does not make fresh certificates "not yet valid".
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.errors import PkiError
from lab.security.pki.profile import (
    EKUS,
    KeyType,
    PrivateKey,
    Usage,
    aki,
    ekus,
    key_usage,
    key_usage_of,
    new_key,
    san,
    subject_name,
    validity,
)

__all__ = [
    "CA",
    "Credential",
    "KeyType",
    "PkiError",
    "PrivateKey",
    "Usage",
    "create_ca",
    "load_ca",
    "load_certificate",
    "load_key_pair",
    "load_private_key",
    "require_usage",
    "subject_cn",
    "verify_chain",
]

CA_FILE_STEM = "ca"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def load_private_key(path: Path) -> PrivateKey:
    """Load an unencrypted PEM private key (ECDSA or RSA, the two kinds the lab issues)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"cannot load private key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: unsupported key type {type(key).__name__} (ECDSA or RSA only)")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """Load one PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot load certificate {path}: {exc}") from None


def load_key_pair(key_path: Path, cert_path: Path) -> tuple[PrivateKey, x509.Certificate]:
    """Load a private key and its certificate, checking that the certificate is for that key."""
    key, cert = load_private_key(key_path), load_certificate(cert_path)
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise PkiError(f"{key_path} is not the private key of {cert_path}")
    return key, cert


@dataclass(frozen=True)
class Credential:
    """An end-entity key pair on disk: what a TLS peer, an IKE daemon or a signer is given."""

    name: str
    key_path: Path
    cert_path: Path

    def load_key(self) -> PrivateKey:
        return load_private_key(self.key_path)

    def load_cert(self) -> x509.Certificate:
        return load_certificate(self.cert_path)


@dataclass(frozen=True)
class CA:
    """The lab's root CA: ``dir/ca.key`` and ``dir/ca.crt``; ``name`` is its subject CN."""

    name: str
    dir: Path

    @property
    def key_path(self) -> Path:
        return self.dir / f"{CA_FILE_STEM}.key"

    @property
    def cert_path(self) -> Path:
        return self.dir / f"{CA_FILE_STEM}.crt"

    def load_key(self) -> PrivateKey:
        return load_private_key(self.key_path)

    def load_cert(self) -> x509.Certificate:
        return load_certificate(self.cert_path)

    def issue(
        self,
        name: str,
        *,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        usages: AbstractSet[Usage],
        key_type: KeyType = "ecdsa-p256",
        days: int = 30,
        out_dir: Path | None = None,
    ) -> Credential:
        """Make a key and a certificate for ``name`` (subject CN) signed by this CA, and write
        ``<name>.key`` (0600) and ``<name>.crt`` into ``out_dir`` (default: the CA directory).

        ``ips`` may mix IPv4 and IPv6 addresses. Validity ends after ``days`` days but never after
        the CA's own end (RFC 5280 6.1.3 would reject the leaf from then on anyway).
        """
        _check_name(name)
        if name == CA_FILE_STEM:
            raise PkiError(f"certificate name {name!r} is reserved for the CA files")
        unknown = set(usages) - set(get_args(Usage))
        if not usages or unknown:
            raise PkiError(
                f"usages must be a non-empty subset of {sorted(get_args(Usage))}, got "
                f"{sorted(usages)}"
            )
        ca_key, ca_cert = self.load_key(), self.load_cert()
        key = new_key(key_type)
        not_before, not_after = validity(days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject_name(name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(usages, key), critical=True)
            .add_extension(x509.SubjectAlternativeName(san(name, dns, ips)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(aki(ca_cert, ca_key), critical=False)
        )
        if ekus(usages):  # encipherment alone has none (an empty EKU is invalid, RFC 5280)
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus(usages)), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        where = out_dir if out_dir is not None else self.dir
        cred = Credential(name, where / f"{name}.key", where / f"{name}.crt")
        _write_pair(key, cert, cred.key_path, cred.cert_path)
        return cred


def create_ca(
    dir: Path,
    name: str = "teleradlab lab CA",
    *,
    key_type: KeyType = "ecdsa-p256",
    days: int = 30,
) -> CA:
    """Create a self-signed root CA in ``dir`` (created if needed): ``ca.key`` (0600), ``ca.crt``.

    The profile follows RFC 5280 4.2.1: BasicConstraints CA:true with pathLenConstraint 0 (it signs
    leaves only), KeyUsage keyCertSign + cRLSign, SubjectKeyIdentifier. A second CA for negative
    tests is just another call with another directory (and, ideally, another name).
    """
    if not name or len(name) > 64:
        raise PkiError(f"CA name must be 1 to 64 characters (X.520 ub-common-name), got {name!r}")
    key = new_key(key_type)
    subject = subject_name(name)
    not_before, not_after = validity(days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage_of("key_cert_sign", "crl_sign"), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    dir.mkdir(parents=True, exist_ok=True)
    ca = CA(name, dir)
    _write_pair(key, cert, ca.key_path, ca.cert_path)
    return ca


def load_ca(dir: Path) -> CA:
    """Open the CA in ``dir``, checking that its key and certificate belong together."""
    ca = CA("", dir)
    _key, cert = load_key_pair(ca.key_path, ca.cert_path)
    return CA(subject_cn(cert), dir)


def verify_chain(
    cert: x509.Certificate, ca_cert: x509.Certificate, *, at: dt.datetime | None = None
) -> None:
    """Check that ``cert`` was issued by ``ca_cert`` and that both are valid at ``at`` (default:
    now, UTC); raise :class:`PkiError` saying what is wrong otherwise.

    This is RFC 5280 6.1 path validation for the lab's one-level hierarchy: issuer name and
    signature (6.1.3 a.1, a.4), validity periods (6.1.3 a.2), and that the anchor really is a CA
    certificate allowed to sign certificates (4.2.1.9, 4.2.1.3).
    """
    when = at if at is not None else dt.datetime.now(dt.UTC)
    subject, issuer = _describe(cert), _describe(ca_cert)
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError(f"{issuer} is not a CA certificate (BasicConstraints CA:true missing)")
    try:
        if not ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            raise PkiError(f"{issuer} may not sign certificates (no keyCertSign usage)")
    except x509.ExtensionNotFound:
        pass
    try:
        cert.verify_directly_issued_by(ca_cert)
    except ValueError:
        raise PkiError(
            f"{subject} was not issued by {issuer} (issuer is {_issuer(cert)})"
        ) from None
    except InvalidSignature:
        raise PkiError(f"{subject} is not signed by the key of {issuer}") from None
    except TypeError as exc:
        raise PkiError(f"cannot check the signature of {subject}: {exc}") from None
    for who, c in ((subject, cert), (issuer, ca_cert)):
        if when < c.not_valid_before_utc:
            raise PkiError(f"{who} is not yet valid (valid from {c.not_valid_before_utc})")
        if when > c.not_valid_after_utc:
            raise PkiError(f"{who} has expired (valid until {c.not_valid_after_utc})")


def require_usage(cert: x509.Certificate, usage: Usage) -> None:
    """Raise :class:`PkiError` unless ``cert`` may be used for ``usage``.

    RFC 5280 4.2.1.12: when an EKU extension is present the certificate may only be used for the
    purposes it lists (anyExtendedKeyUsage counts for all); 4.2.1.3: when KeyUsage is present it
    must allow digitalSignature, which all four uses need.
    """
    ext = cert.extensions
    try:
        ku = ext.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.digital_signature:
        raise PkiError(f"{_describe(cert)} may not make signatures (no digitalSignature usage)")
    try:
        eku = set(ext.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return
    wanted = EKUS[usage][0]
    if wanted not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise PkiError(
            f"{_describe(cert)} is not issued for {usage!r} use "
            f"(its ExtendedKeyUsage lacks {wanted.dotted_string})"
        )


def subject_cn(cert: x509.Certificate) -> str:
    """The subject common name, or the whole subject when it has none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


# --- helpers ----------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise PkiError(
            f"certificate name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
            "(it names the files too)"
        )


def _write_pair(key: PrivateKey, cert: x509.Certificate, key_path: Path, cert_path: Path) -> None:
    """Write the key (0600, created exclusively) then the certificate; refuse to overwrite."""
    for path in (key_path, cert_path):
        if path.exists():
            raise PkiError(
                f"{path} already exists; not overwriting (remove it or use another name)"
            )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # exact mode whatever the umask
            out.write(key_pem)
        with cert_path.open("xb") as out:
            out.write(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise PkiError(f"cannot write {key_path.name}/{cert_path.name}: {exc}") from None


def _public_der(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise PkiError(f"unsupported public key type {type(key).__name__}")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _describe(cert: x509.Certificate) -> str:
    return f"certificate {subject_cn(cert)!r}"


def _issuer(cert: x509.Certificate) -> str:
    return repr(cert.issuer.rfc4514_string())
