"""Certificate profiles of the lab PKI: the X.509 fields and extensions each use needs
(RFC 5280 4.2.1), made as pure values for :mod:`lab.security.pki.authority` to sign and write.

- ``signing``: digitalSignature + contentCommitment, id-kp-documentSigning (RFC 9336);
- ``server`` / ``client``: serverAuth / clientAuth (RFC 5280 4.2.1.12), plus keyEncipherment for
  RSA keys (TLS 1.2 RSA key transport, RFC 5246 7.4.2);
- ``ipsec``: digitalSignature and id-kp-ipsecIKE (RFC 4945 5.1.3.2, 5.1.3.12), plus serverAuth,
  which strongSwan (and Windows peers) accept;
- ``encipherment``: keyEncipherment, for an RSA key that CMS EnvelopedData encrypts content keys
  to (RFC 3370 4.2.1, RFC 5280 4.2.1.3): a site's PS3.15 object credential, to which senders
  de-identify (Annex E) and write secure media (Annex D). No extended key usage of its own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.errors import PkiError

KeyType = Literal["ecdsa-p256", "rsa-2048", "rsa-3072"]
Usage = Literal["server", "client", "ipsec", "signing", "encipherment"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: id-kp-documentSigning (RFC 9336 3.1); not among cryptography's named OIDs.
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
#: How far back validity starts, to absorb clock skew between nodes.
BACKDATE = dt.timedelta(hours=1)

KU_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
EKUS: dict[str, tuple[x509.ObjectIdentifier, ...]] = {
    "server": (ExtendedKeyUsageOID.SERVER_AUTH,),
    "client": (ExtendedKeyUsageOID.CLIENT_AUTH,),
    "ipsec": (ExtendedKeyUsageOID.IPSEC_IKE, ExtendedKeyUsageOID.SERVER_AUTH),
    "signing": (DOCUMENT_SIGNING,),
    "encipherment": (),
}


def new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa-2048", "rsa-3072"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise PkiError(f"unknown key type {key_type!r}; use one of {list(get_args(KeyType))}")


def validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise PkiError(f"validity must be at least 1 day, got {days}")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return now - BACKDATE, now + dt.timedelta(days=days)


def subject_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def san(name: str, dns: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns)]
    for text in dict.fromkeys(ips):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            raise PkiError(f"certificate {name!r}: {text!r} is not an IP address") from None
    if not entries:
        # RFC 6125 6.4.4 and RFC 4945 5.1.2: peers match the SAN; the CN alone is a fallback.
        entries.append(x509.DNSName(name))
    return entries


def key_usage(usages: AbstractSet[Usage], key: PrivateKey) -> x509.KeyUsage:
    flags = ["digital_signature"]
    if "signing" in usages:
        flags.append("content_commitment")
    if (usages & {"server", "client"} or "encipherment" in usages) and isinstance(
            key, rsa.RSAPrivateKey):
        # TLS 1.2 RSA key transport (RFC 5246 7.4.2) and CMS key transport (RFC 3370 4.2.1)
        # encrypt to the certificate's RSA key.
        flags.append("key_encipherment")
    return key_usage_of(*flags)


def key_usage_of(*flags: str) -> x509.KeyUsage:
    """A KeyUsage with exactly ``flags`` set (RFC 5280 4.2.1.3 bit names, snake_case)."""
    return x509.KeyUsage(**(dict.fromkeys(KU_FLAGS, False) | dict.fromkeys(flags, True)))


def ekus(usages: AbstractSet[Usage]) -> list[x509.ObjectIdentifier]:
    return list(dict.fromkeys(oid for u in sorted(usages) for oid in EKUS[u]))


def aki(ca_cert: x509.Certificate, ca_key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    """RFC 5280 4.2.1.1: the AKI of a leaf repeats the SKI of its issuer."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
