"""IKE/ESP proposal keywords: their shape, and the check against what strongSwan can do."""

from __future__ import annotations

import pytest

from lab.errors import IpsecError
from lab.model import proposals
from lab.model.proposals import Transform

# As VICI get_algorithms reports them for a strongSwan with only AES, SHA-2 and MODP groups.
SMALL = {"encryption": ["AES_CBC"], "aead": ["AES_GCM_16"], "integrity": ["HMAC_SHA2_256_128"],
         "prf": ["PRF_HMAC_SHA2_256"], "dh": ["MODP_2048"]}


@pytest.mark.parametrize("text", ["aes256-sha256-modp2048", "3des-md5-modp1024",
                                  "aes128gcm16-prfsha256-ecp256",
                                  "chacha20poly1305-prfsha256-curve25519",
                                  "blowfish-sha1-modp1536"])
def test_valid_ike_proposals(text: str) -> None:
    prop = proposals.parse(text, "ike")
    assert prop.text == text and len(prop.of(Transform.DH)) == 1


@pytest.mark.parametrize("text", ["aes256gcm16", "aes128-sha1", "3des-md5", "chacha20poly1305",
                                  "aes256-sha384-modp3072-esn", "blowfish-sha256"])
def test_valid_esp_proposals(text: str) -> None:
    assert proposals.parse(text, "esp").text == text


@pytest.mark.parametrize(("text", "protocol", "why"), [
    ("aes256-sha256", "ike", "needs a DH group"),
    ("aes256", "esp", "needs an integrity algorithm"),
    ("aes256gcm16-sha256", "esp", "takes no integrity"),
    ("aes256-aes128gcm16-sha256", "esp", "both a plain cipher and an AEAD"),
    ("aes256-sha1-sha256", "esp", "more than one integrity"),
    ("aes256gcm16-modp2048", "ike", "needs a PRF"),
    ("aes256-sha256-prfsha256", "esp", "PRF belongs to IKE"),
    ("aes256-sha256-modp2048-esn", "ike", "esn/noesn belong to ESP"),
    ("rot13-sha256", "esp", "unknown algorithm 'rot13'"),
    ("aes256--sha256", "esp", "is not a proposal"),
    ("", "ike", "is not a proposal"),
])
def test_malformed_proposals_are_refused_with_the_reason(text: str, protocol: str,
                                                         why: str) -> None:
    with pytest.raises(IpsecError, match=why) as err:
        proposals.parse(text, protocol, f"security.ipsec.{protocol}")
    assert str(err.value).startswith(f"security.ipsec.{protocol}: ")


def test_keywords_are_case_insensitive() -> None:
    assert proposals.parse("AES256-SHA256-MODP2048", "ike").text == "aes256-sha256-modp2048"


def test_unsupported_algorithms_are_named_with_the_supported_list() -> None:
    prop = proposals.parse("3des-md5-modp1024", "ike")
    assert proposals.unsupported(prop, SMALL) == ["3des", "md5", "modp1024"]
    with pytest.raises(IpsecError) as err:
        proposals.require_supported(prop, SMALL, "security.ipsec.ike")
    message = str(err.value)
    assert "cannot do 3des, md5, modp1024" in message
    for kw in ("aes128", "aes256", "aes256gcm16", "sha256", "prfsha256", "modp2048"):
        assert kw in message
    assert "chacha20poly1305" not in message.split("supports:")[1]


def test_supported_proposal_passes() -> None:
    proposals.require_supported(proposals.parse("aes256gcm16", "esp"), SMALL, "esp")
    proposals.require_supported(proposals.parse("aes128-sha256-modp2048", "ike"), SMALL, "ike")


def test_every_shown_keyword_is_known() -> None:
    assert set(proposals.SHOWN) <= set(proposals.ALGORITHMS)
