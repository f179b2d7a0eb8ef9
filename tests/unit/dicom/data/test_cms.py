"""CMS for the DICOM security profiles (lab.dicom.data.cms): EnvelopedData for a named recipient
and SignedData by a certificate of the lab CA, round trips and every refusal named."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms

from lab.dicom.data.cms import (
    CmsError,
    der,
    envelope,
    open_envelope,
    recipients_of,
    sign_data,
    verify_signed,
)

from .pki_helpers import Site, make_site

DATA = b"DICM\n\r\x00" + bytes(range(256)) * 40  # line ends and zeros must pass unchanged


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("b"), "pacs-b")


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("x"), "elsewhere", "another CA")


@pytest.mark.parametrize("cipher", ["aes128", "aes256"])
def test_envelope_round_trip(site_b: Site, cipher: str) -> None:
    sealed = envelope(DATA, [site_b.cert], cipher)
    info = asn1_cms.ContentInfo.load(sealed)
    algorithm = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]
    assert algorithm["algorithm"].native == f"{cipher}_cbc"
    assert DATA not in sealed
    assert open_envelope(sealed, site_b.key, site_b.cert) == DATA
    assert open_envelope(sealed + b"\x00", site_b.key, site_b.cert) == DATA  # OB padding


def test_envelope_names_the_inner_content_type(site_b: Site) -> None:
    sealed = envelope(DATA, [site_b.cert], inner="signed_data")
    info = asn1_cms.ContentInfo.load(sealed)
    assert info["content"]["encrypted_content_info"]["content_type"].native == "signed_data"
    assert open_envelope(sealed, site_b.key, site_b.cert) == DATA


def test_another_site_cannot_open_and_is_told_who_can(site_b: Site, elsewhere: Site) -> None:
    sealed = envelope(DATA, [site_b.cert])
    with pytest.raises(CmsError, match="not encrypted for CN=elsewhere") as refused:
        open_envelope(sealed, elsewhere.key, elsewhere.cert)
    assert f"serial {site_b.cert.serial_number:x} issued by" in str(refused.value)
    with pytest.raises(CmsError, match="private key does not belong"):
        open_envelope(sealed, elsewhere.key, site_b.cert)
    assert recipients_of(sealed) == [f"the certificate of serial {site_b.cert.serial_number:x} "
                                     "issued by Common Name: teleradlab test CA"]


def test_two_recipients_each_open(site_b: Site, elsewhere: Site) -> None:
    sealed = envelope(DATA, [site_b.cert, elsewhere.cert])
    assert open_envelope(sealed, elsewhere.key, elsewhere.cert) == DATA
    assert open_envelope(sealed, site_b.key, site_b.cert) == DATA


def test_signed_round_trip_and_tampering(site_b: Site, elsewhere: Site) -> None:
    signed = sign_data(DATA, site_b.key, site_b.cert)
    content, signer = verify_signed(signed, [site_b.ca])
    assert content == DATA and signer == site_b.cert
    with pytest.raises(CmsError, match="does not chain to a trusted CA"):
        verify_signed(signed, [elsewhere.ca])
    at = signed.index(DATA[100:200]) + 50
    changed = bytearray(signed)
    changed[at] ^= 0x01
    with pytest.raises(CmsError, match="content was changed after signing"):
        verify_signed(bytes(changed), [site_b.ca])
    broken = bytearray(signed)
    broken[-5] ^= 0x01  # inside the signature value, the last field of the SignerInfo
    with pytest.raises(CmsError, match="signature of CN=pacs-b does not verify"):
        verify_signed(bytes(broken), [site_b.ca])


def test_refusals_are_named(site_b: Site, elsewhere: Site) -> None:
    with pytest.raises(CmsError, match="not a CMS structure"):
        verify_signed(b"\x30\x03\x02\x01", [site_b.ca])
    with pytest.raises(CmsError, match="enveloped_data, not the signed_data"):
        verify_signed(envelope(DATA, [site_b.cert]), [site_b.ca])
    with pytest.raises(CmsError, match="cipher 'des3'"):
        envelope(DATA, [site_b.cert], "des3")
    with pytest.raises(CmsError, match="private key does not belong"):
        sign_data(DATA, elsewhere.key, site_b.cert)


def test_der_strips_only_the_ob_pad(site_b: Site, tmp_path: Path) -> None:
    sealed = envelope(DATA, [site_b.cert])
    padded = sealed + b"\x00" if len(sealed) % 2 else sealed
    assert der(padded) == sealed
    assert der(sealed) == sealed
