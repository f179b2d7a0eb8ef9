"""Sites for the object-security tests: a lab CA (lab.security.pki) and RSA certificates it
issued, as the RSA profiles of PS3.15 Annexes C, D and E need them."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.security.pki.authority import create_ca


class Site(NamedTuple):
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    ca: x509.Certificate
    key_path: Path
    cert_path: Path
    ca_path: Path


def make_site(where: Path, name: str, ca_name: str = "teleradlab test CA") -> Site:
    """A CA of its own in ``where`` and an RSA-2048 certificate ``name`` it issued."""
    ca = create_ca(where, ca_name)
    credential = ca.issue(name, usages={"signing"}, key_type="rsa-2048")
    key = credential.load_key()
    assert isinstance(key, rsa.RSAPrivateKey)
    return Site(key, credential.load_cert(), ca.load_cert(), credential.key_path,
                credential.cert_path, ca.cert_path)
