"""The lab PKI's per-site object credential (PS3.15 Annexes C, D, E need RSA)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.dicom.data.cms import envelope, open_envelope
from lab.host.shell import run
from lab.model.names import LabPaths
from lab.security.pki.authority import load_certificate, load_key_pair
from lab.security.pki.lab_pki import ensure_lab_pki
from lab.topology import load, resolve_path


def test_each_site_gets_an_rsa_object_credential_that_signs_and_receives(tmp_path: Path) -> None:
    topology = load(resolve_path("ipv4"))
    pki = ensure_lab_pki(LabPaths("i14b-pki", root=tmp_path, data_root=tmp_path), topology)
    a, b = (pki.objects(site.name) for site in topology.sites)
    assert a.cert_path != b.cert_path
    assert pki.objects(topology.sites[0].name).cert_path == a.cert_path  # made once, then kept
    key, cert = load_key_pair(b.key_path, b.cert_path)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and usage.key_encipherment
    assert not usage.key_cert_sign
    # what a sender encrypts to site b's certificate, site b opens (and openssl agrees it chains)
    assert open_envelope(envelope(b"originals", [cert]), key, cert) == b"originals"
    out = run(["openssl", "verify", "-CAfile", str(pki.ca_cert), str(b.cert_path)], check=False)
    assert out.returncode == 0, out.stderr
    assert load_certificate(a.cert_path).issuer == cert.issuer
