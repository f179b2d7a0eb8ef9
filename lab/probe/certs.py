"""The server's certificate chain, read with ``cryptography``: validity dates, key type and size,
signature hash, the names it holds (SubjectAlternativeName DNS names and IP addresses, RFC
5280 4.2.1.6; the subject CN only without a SAN), whether the address dialled is among them
(RFC 6125 6, RFC 9525), and whether the chain leads to the CA given (each certificate's
signature checked against the next, the last against a CA certificate of the file).

What is judged acceptable is not decided here but in :mod:`lab.probe.verdicts`.
"""

from __future__ import annotations

import ipaddress
import itertools
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from lab.probe.findings import Certificate


def key_of(cert: x509.Certificate) -> tuple[str, int]:
    """The public key's type and size in bits."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def names_of(cert: x509.Certificate) -> list[str]:
    """DNS names and IP addresses of the SAN, or the subject CN when there is no SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(cn.value) for cn in cns]
    return ([str(n) for n in san.get_values_for_type(x509.DNSName)]
            + [str(a) for a in san.get_values_for_type(x509.IPAddress)])


def matches(host: str, names: list[str]) -> bool:
    """Whether ``host`` (an address or a DNS name) is one of ``names`` (one leading ``*.``
    label wildcard allowed for DNS names, RFC 6125 6.4.3)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for name in names:
        if address is not None:
            try:
                if ipaddress.ip_address(name) == address:
                    return True
            except ValueError:
                continue
        elif name.lower() == host.lower() or (
                name.startswith("*.") and host.lower().partition(".")[2] == name[2:].lower()):
            return True
    return False


def trusted(chain: list[x509.Certificate], ca: Path) -> tuple[bool, str | None]:
    """Whether the received chain leads to a certificate of ``ca`` by signatures alone
    (validity dates are judged on their own), and why not."""
    anchors = x509.load_pem_x509_certificates(ca.read_bytes())
    for cert, issuer in itertools.pairwise(chain):
        try:
            cert.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError) as exc:
            return False, f"{cert.subject.rfc4514_string()} is not signed by the next: {exc}"
    last = chain[-1]
    for anchor in anchors:
        if last == anchor:
            return True, None
        try:
            last.verify_directly_issued_by(anchor)
        except (InvalidSignature, ValueError, TypeError):  # the next anchor may fit
            continue
        return True, None
    return False, f"not issued by a CA of {ca}"


def chain_problems(chain: list[x509.Certificate], moment: datetime) -> list[str]:
    """What is wrong with the certificates above the leaf that the server sends: out of their
    validity, signed with MD5 or SHA-1 (RFC 9155), or a key under 2048 bits (RSA, DSA) or 256
    (EC) — any of them breaks the chain as surely as the leaf's own."""
    found = []
    for cert in chain[1:]:
        who = cert.subject.rfc4514_string()
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            found.append(f"{who}: outside its validity ({cert.not_valid_before_utc.date()} to "
                         f"{cert.not_valid_after_utc.date()})")
        sig = cert.signature_hash_algorithm
        if sig is not None and sig.name in ("md5", "sha1"):
            found.append(f"{who}: signed with {sig.name}")
        kind, bits = key_of(cert)
        if bits < (256 if kind.startswith(("EC", "Ed")) else 2048):
            found.append(f"{who}: {kind} key of {bits} bits")
    return found


def judge_chain(chain: list[x509.Certificate], host: str, ca: Path | None,
                now: datetime | None = None) -> Certificate:
    """The leaf's facts, the problems of the rest of the chain, and the chain's trust when a
    CA is given."""
    leaf = chain[0]
    moment = now or datetime.now(UTC)
    kind, bits = key_of(leaf)
    sig = leaf.signature_hash_algorithm
    names = names_of(leaf)
    found = Certificate(
        subject=leaf.subject.rfc4514_string(), issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc.isoformat(),
        not_after=leaf.not_valid_after_utc.isoformat(),
        days_left=round((leaf.not_valid_after_utc - moment).total_seconds() / 86400, 2),
        key_type=kind, key_bits=bits, signature_hash=sig.name if sig else None,
        names=names, chain_length=len(chain), chain_problems=chain_problems(chain, moment))
    if ca is not None:
        found.trusted, found.trust_error = trusted(chain, ca)
    return found
