"""The lab PKI: real keys and certificates on disk, checked by ``cryptography``'s RFC 5280 path
validation and by the ``openssl`` command line, as TLS and IKE peers would check them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from lab.host.shell import run
from lab.security.pki import authority
from lab.security.pki.authority import CA, PkiError

E = TypeVar("E", bound=x509.ExtensionType)
V4, V6 = "198.18.2.10", "2001:db8:2::10"


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return authority.create_ca(tmp_path / "ca")


@pytest.fixture
def rogue(tmp_path: Path) -> CA:
    return authority.create_ca(tmp_path / "rogue", "rogue CA")


def server(ca: CA, **kw: Any) -> authority.Credential:
    """The PACS's TLS server certificate, reachable by name, IPv4 and IPv6."""
    return ca.issue("pacs", dns=["pacs.site-b.lab"], ips=[V4, V6], usages={"server"}, **kw)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def openssl(*args: str, check: bool = True) -> str:
    result = run(["openssl", *args], check=check)
    return result.stdout + result.stderr


# --- the CA -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048"])
def test_ca_is_a_self_signed_root_with_a_private_key_file(tmp_path: Path, key_type: str) -> None:
    ca = authority.create_ca(tmp_path / "ca", "site CA", key_type=key_type)  # type: ignore[arg-type]
    assert ca.key_path == tmp_path / "ca" / "ca.key"
    assert mode(ca.key_path) == 0o600
    cert = ca.load_cert()
    cert.verify_directly_issued_by(cert)
    assert authority.subject_cn(cert) == "site CA"
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext(cert, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert authority.load_ca(ca.dir) == ca
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc <= now - dt.timedelta(minutes=59)
    assert cert.not_valid_after_utc > now + dt.timedelta(days=29)


def test_ca_refuses_to_overwrite_and_load_checks_the_pair(ca: CA, rogue: CA) -> None:
    with pytest.raises(PkiError, match="already exists"):
        authority.create_ca(ca.dir)
    ca.key_path.unlink()
    ca.key_path.write_bytes(rogue.key_path.read_bytes())
    with pytest.raises(PkiError, match="not the private key"):
        authority.load_ca(ca.dir)


# --- issued certificates ----------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048", "rsa-3072"])
def test_server_certificate_profile(ca: CA, key_type: str) -> None:
    cred = server(ca, key_type=key_type)
    assert (cred.key_path, cred.cert_path) == (ca.dir / "pacs.key", ca.dir / "pacs.crt")
    assert mode(cred.key_path) == 0o600
    cert, key = cred.load_cert(), cred.load_key()
    assert isinstance(
        key, rsa.RSAPrivateKey if key_type.startswith("rsa") else ec.EllipticCurvePrivateKey
    )
    assert authority.subject_cn(cert) == "pacs"
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pacs.site-b.lab"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(V4),
        ipaddress.ip_address(V6),
    ]
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert usage.value.key_encipherment == key_type.startswith("rsa")
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca.load_cert(), x509.SubjectKeyIdentifier).value.digest
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    authority.verify_chain(cert, ca.load_cert())


def test_cryptography_path_validation_accepts_server_and_client(ca: CA) -> None:
    """RFC 5280 path validation plus RFC 6125/RFC 9525 name checks, as a TLS peer does them."""
    srv = server(ca).load_cert()
    cli = ca.issue("modality", ips=["198.18.1.10", "2001:db8:1::10"], usages={"client"})
    builder = PolicyBuilder().store(Store([ca.load_cert()])).time(dt.datetime.now(dt.UTC))
    for subject in (
        x509.DNSName("pacs.site-b.lab"),
        x509.IPAddress(ipaddress.ip_address(V4)),
        x509.IPAddress(ipaddress.ip_address(V6)),
    ):
        chain = builder.build_server_verifier(subject).verify(srv, [])
        assert chain[-1] == ca.load_cert()
    verified = builder.build_client_verifier().verify(cli.load_cert(), [])
    assert ipaddress.ip_address("2001:db8:1::10") in {
        n.value for n in verified.subjects or [] if isinstance(n, x509.IPAddress)
    }
    with pytest.raises(x509.verification.VerificationError):
        builder.build_server_verifier(x509.DNSName("other.lab")).verify(srv, [])


def test_openssl_verifies_purposes_and_shows_sans_and_ekus(ca: CA) -> None:
    srv = server(ca)
    cli = ca.issue("modality", dns=["modality.site-a.lab"], usages={"client"})
    gw = ca.issue("gw-a", ips=["198.18.100.1", "2001:db8:100::1"], usages={"ipsec"})
    signer = ca.issue("modality-signer", usages={"signing"})
    cafile = str(ca.cert_path)
    assert "OK" in openssl("verify", "-CAfile", cafile, "-purpose", "sslserver", str(srv.cert_path))
    assert "OK" in openssl("verify", "-CAfile", cafile, "-purpose", "sslclient", str(cli.cert_path))
    for cred in (gw, signer):
        assert "OK" in openssl("verify", "-CAfile", cafile, str(cred.cert_path))
    # the client certificate is not a server certificate
    out = openssl(
        "verify", "-CAfile", cafile, "-purpose", "sslserver", str(cli.cert_path), check=False
    )
    assert "unsuitable certificate purpose" in out

    text = openssl("x509", "-in", str(srv.cert_path), "-noout", "-text")
    assert "DNS:pacs.site-b.lab, IP Address:198.18.2.10, IP Address:2001:DB8:2:0:0:0:0:10" in text
    assert "TLS Web Server Authentication" in text
    assert "CA:FALSE" in text
    text = openssl("x509", "-in", str(gw.cert_path), "-noout", "-text")
    assert "IP Address:198.18.100.1, IP Address:2001:DB8:100:0:0:0:0:1" in text
    assert "ipsec Internet Key Exchange" in text and "TLS Web Server Authentication" in text
    assert "Digital Signature" in text
    text = openssl("x509", "-in", str(signer.cert_path), "-noout", "-text")
    assert "1.3.6.1.5.5.7.3.36" in text  # id-kp-documentSigning, RFC 9336
    assert "Non Repudiation" in text


def test_untrusted_ca_is_rejected(ca: CA, rogue: CA, tmp_path: Path) -> None:
    cert = server(rogue).load_cert()
    with pytest.raises(PkiError, match=r"'pacs' was not issued by certificate 'teleradlab lab CA'"):
        authority.verify_chain(cert, ca.load_cert())
    out = openssl("verify", "-CAfile", str(ca.cert_path), str(rogue.dir / "pacs.crt"), check=False)
    assert "unable to get local issuer certificate" in out

    # same subject name, different key: only the signature tells them apart
    twin = authority.create_ca(tmp_path / "twin", ca.name)
    with pytest.raises(PkiError, match="'pacs' is not signed by the key of"):
        authority.verify_chain(server(ca).load_cert(), twin.load_cert())


def test_validity_window(ca: CA) -> None:
    cert = server(ca, days=5).load_cert()
    now = dt.datetime.now(dt.UTC)
    # skew allowance
    authority.verify_chain(cert, ca.load_cert(), at=now - dt.timedelta(minutes=30))
    with pytest.raises(PkiError, match="'pacs' has expired"):
        authority.verify_chain(cert, ca.load_cert(), at=now + dt.timedelta(days=6))
    with pytest.raises(PkiError, match="'pacs' is not yet valid"):
        authority.verify_chain(cert, ca.load_cert(), at=now - dt.timedelta(hours=2))


def test_leaf_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = authority.create_ca(tmp_path / "ca", days=2)
    cert = server(ca, days=365).load_cert()
    assert cert.not_valid_after_utc == ca.load_cert().not_valid_after_utc


def test_a_leaf_is_not_a_trust_anchor(ca: CA) -> None:
    leaf = server(ca).load_cert()
    other = ca.issue("other", usages={"client"}).load_cert()
    with pytest.raises(PkiError, match="'pacs' is not a CA certificate"):
        authority.verify_chain(other, leaf)


def test_usage_checks(ca: CA) -> None:
    signer = ca.issue("signer", usages={"signing"}).load_cert()
    srv = server(ca).load_cert()
    gw = ca.issue("gw", ips=[V4], usages={"ipsec"}).load_cert()
    authority.require_usage(signer, "signing")
    authority.require_usage(srv, "server")
    authority.require_usage(gw, "ipsec")
    authority.require_usage(gw, "server")  # strongSwan and Windows peers look for serverAuth
    with pytest.raises(PkiError, match="not issued for 'signing'"):
        authority.require_usage(srv, "signing")
    with pytest.raises(PkiError, match="not issued for 'client'"):
        authority.require_usage(signer, "client")


def test_issue_options(ca: CA, tmp_path: Path) -> None:
    cred = ca.issue("node-1", usages={"client"}, out_dir=tmp_path / "elsewhere")
    assert cred.cert_path == tmp_path / "elsewhere" / "node-1.crt"
    assert mode(cred.key_path) == 0o600
    # without names the CN becomes the one SAN entry (peers match the SAN, RFC 6125)
    san = ext(cred.load_cert(), x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-1"]
    with pytest.raises(PkiError, match="already exists"):
        ca.issue("node-1", usages={"client"}, out_dir=tmp_path / "elsewhere")


@pytest.mark.parametrize(
    ("name", "kw", "message"),
    [
        ("ca", {"usages": {"server"}}, "reserved"),
        ("../evil", {"usages": {"server"}}, "must be 1-64 letters"),
        ("pacs", {"usages": set()}, "non-empty subset"),
        ("pacs", {"usages": {"vpn"}}, "non-empty subset"),
        ("pacs", {"usages": {"server"}, "ips": ["198.18.300.1"]}, "not an IP address"),
        ("pacs", {"usages": {"server"}, "days": 0}, "at least 1 day"),
        ("pacs", {"usages": {"server"}, "key_type": "dsa-1024"}, "unknown key type"),
    ],
)
def test_bad_requests_are_refused(ca: CA, name: str, kw: dict[str, object], message: str) -> None:
    with pytest.raises(PkiError, match=message):
        ca.issue(name, **kw)  # type: ignore[arg-type]
    assert sorted(p.name for p in ca.dir.iterdir()) == ["ca.crt", "ca.key"]
