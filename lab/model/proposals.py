"""IKEv2 and ESP proposals by name, as strongSwan spells them (``aes256-sha256-modp2048``).

A proposal is a list of algorithm keywords joined by ``-`` (RFC 7296 3.3: one transform of each
type). This module knows the keywords the lab offers, which transform type each belongs to and
the identifier strongSwan reports for it (VICI ``get_algorithms``, ``list-sas``), so that a
choice can be checked before anything starts: first its shape (every type the protocol needs,
nothing twice), then whether the installed strongSwan can do it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from lab.errors import IpsecError


class Transform(StrEnum):
    ENCRYPTION = "encryption"
    AEAD = "aead"  # combined encryption and integrity (RFC 5282, RFC 7634)
    INTEGRITY = "integrity"
    PRF = "prf"
    DH = "dh"  # Diffie-Hellman / key exchange group
    ESN = "esn"


@dataclass(frozen=True)
class Algorithm:
    keyword: str
    transform: Transform
    strongswan: str  # the name strongSwan's get_algorithms and list-sas report
    note: str = ""


def _table() -> dict[str, Algorithm]:
    t: dict[str, Algorithm] = {}

    def add(kind: Transform, ident: str, *keywords: str, note: str = "") -> None:
        for kw in keywords:
            t[kw] = Algorithm(kw, kind, ident, note)

    for bits in (128, 192, 256):
        add(Transform.ENCRYPTION, "AES_CBC", f"aes{bits}")
        add(Transform.ENCRYPTION, "AES_CTR", f"aes{bits}ctr")
        for icv in (8, 12, 16):
            add(Transform.AEAD, f"AES_GCM_{icv}", f"aes{bits}gcm{icv}")
            add(Transform.AEAD, f"AES_CCM_{icv}", f"aes{bits}ccm{icv}")
        add(Transform.ENCRYPTION, "CAMELLIA_CBC", f"camellia{bits}")
        add(Transform.ENCRYPTION, "SERPENT_CBC", f"serpent{bits}")
        add(Transform.ENCRYPTION, "TWOFISH_CBC", f"twofish{bits}")
    add(Transform.AEAD, "CHACHA20_POLY1305", "chacha20poly1305")
    add(Transform.ENCRYPTION, "3DES_CBC", "3des",
        note="retired (RFC 8221), for the paper's comparison")
    add(Transform.ENCRYPTION, "BLOWFISH_CBC", "blowfish", "blowfish128", "blowfish256",
        note="not in RFC 8221, for the paper's comparison")
    add(Transform.ENCRYPTION, "NULL", "null",
        note="no encryption (RFC 2410): ESP with integrity only, for teaching (the payload "
        "stays readable in a capture)")
    add(Transform.INTEGRITY, "HMAC_MD5_96", "md5", note="retired (RFC 8221)")
    add(Transform.INTEGRITY, "HMAC_SHA1_96", "sha1")
    add(Transform.INTEGRITY, "HMAC_SHA2_256_128", "sha256")
    add(Transform.INTEGRITY, "HMAC_SHA2_384_192", "sha384")
    add(Transform.INTEGRITY, "HMAC_SHA2_512_256", "sha512")
    add(Transform.INTEGRITY, "AES_XCBC_96", "aesxcbc")
    add(Transform.INTEGRITY, "AES_CMAC_96", "aescmac")
    for kw, ident in (("prfmd5", "PRF_HMAC_MD5"), ("prfsha1", "PRF_HMAC_SHA1"),
                      ("prfsha256", "PRF_HMAC_SHA2_256"), ("prfsha384", "PRF_HMAC_SHA2_384"),
                      ("prfsha512", "PRF_HMAC_SHA2_512"), ("prfaesxcbc", "PRF_AES128_XCBC"),
                      ("prfaescmac", "PRF_AES128_CMAC")):
        add(Transform.PRF, ident, kw)
    for bits in (768, 1024, 1536, 2048, 3072, 4096, 6144, 8192):
        add(Transform.DH, f"MODP_{bits}", f"modp{bits}")
    for bits in (256, 384, 521):
        add(Transform.DH, f"ECP_{bits}", f"ecp{bits}")
    add(Transform.DH, "CURVE_25519", "curve25519", "x25519")
    add(Transform.DH, "CURVE_448", "curve448", "x448")
    add(Transform.ESN, "EXT_SEQ", "esn")
    add(Transform.ESN, "NO_EXT_SEQ", "noesn")
    return t


ALGORITHMS: Mapping[str, Algorithm] = _table()

#: The keywords `teleradlab doctor` lists, one per algorithm the issue's comparison names.
SHOWN = ("aes128", "aes256", "aes128gcm16", "aes256gcm16", "chacha20poly1305", "3des",
         "blowfish", "md5", "sha1", "sha256", "sha384", "modp1024", "modp2048", "modp3072",
         "ecp256", "ecp384", "curve25519")


@dataclass(frozen=True)
class Proposal:
    """A checked proposal: its text and its algorithms in order."""

    text: str
    algorithms: tuple[Algorithm, ...]

    def of(self, kind: Transform) -> tuple[Algorithm, ...]:
        return tuple(a for a in self.algorithms if a.transform is kind)


def parse(text: str, protocol: str, field: str = "") -> Proposal:
    """Check the shape of an ``ike`` or ``esp`` proposal; IpsecError naming ``field`` if bad.

    IKE needs encryption (or AEAD), integrity unless AEAD, and a DH group (RFC 7296 3.3.3);
    ESP needs encryption (or AEAD) and integrity unless AEAD; a DH group there means PFS."""
    where = field or protocol
    words = [w for w in text.strip().lower().split("-")]
    if not text.strip() or any(not w for w in words):
        raise IpsecError(f"{where}: {text!r} is not a proposal (algorithms joined by '-', e.g. "
                         f"{'aes256-sha256-modp2048' if protocol == 'ike' else 'aes256gcm16'})")
    unknown = [w for w in words if w not in ALGORITHMS]
    if unknown:
        raise IpsecError(f"{where}: unknown algorithm {', '.join(map(repr, unknown))} in "
                         f"{text!r}; known: {', '.join(sorted(ALGORITHMS))}")
    prop = Proposal(text.strip().lower(), tuple(ALGORITHMS[w] for w in words))
    problems = _shape_problems(prop, protocol)
    if problems:
        raise IpsecError(f"{where}: {text!r}: " + "; ".join(problems))
    return prop


def _shape_problems(prop: Proposal, protocol: str) -> list[str]:
    enc, aead = prop.of(Transform.ENCRYPTION), prop.of(Transform.AEAD)
    integ, dh = prop.of(Transform.INTEGRITY), prop.of(Transform.DH)
    problems = []
    for kind in Transform:
        if len(prop.of(kind)) > 1:
            problems.append(f"more than one {kind.value} algorithm (the lab proposes one of each)")
    if not enc and not aead:
        problems.append("no encryption algorithm")
    if enc and aead:
        problems.append("both a plain cipher and an AEAD cipher")
    if aead and integ:
        problems.append(f"{aead[0].keyword} is an AEAD cipher and takes no integrity algorithm")
    if enc and not integ:
        problems.append(f"{enc[0].keyword} needs an integrity algorithm (e.g. sha256)")
    if protocol == "ike":
        if not dh:
            problems.append("IKE needs a DH group (e.g. modp2048, ecp256, curve25519)")
        if prop.of(Transform.ESN):
            problems.append("esn/noesn belong to ESP proposals")
        if aead and not prop.of(Transform.PRF):
            problems.append(f"with the AEAD cipher {aead[0].keyword} IKE needs a PRF (e.g. "
                            "prfsha256)")
    elif prop.of(Transform.PRF):
        problems.append("a PRF belongs to IKE proposals, not ESP")
    return problems


def unsupported(prop: Proposal, available: Mapping[str, Sequence[str]]) -> list[str]:
    """Keywords of ``prop`` the installed strongSwan cannot do. ``available`` maps a transform
    type to strongSwan's names, as :func:`lab.security.ipsec.charon.algorithms` reads them."""
    return [a.keyword for a in prop.algorithms
            if a.transform is not Transform.ESN
            and a.strongswan not in available.get(a.transform.value, ())]


def supported_keywords(available: Mapping[str, Sequence[str]]) -> list[str]:
    return [kw for kw, a in ALGORITHMS.items()
            if a.transform is Transform.ESN or a.strongswan in available.get(a.transform.value, ())]


def require_supported(prop: Proposal, available: Mapping[str, Sequence[str]], field: str) -> None:
    """IpsecError listing what this machine supports if any algorithm of ``prop`` is missing."""
    missing = unsupported(prop, available)
    if missing:
        raise IpsecError(
            f"{field}: the installed strongSwan cannot do {', '.join(missing)} (in "
            f"{prop.text!r}); this machine supports: {', '.join(supported_keywords(available))}")
