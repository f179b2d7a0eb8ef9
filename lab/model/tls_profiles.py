"""DICOM TLS secure transport connection profiles (DICOM PS3.15 Annex B) as data: the TLS versions
and OpenSSL cipher suites each one allows. :mod:`lab.security.tls.contexts` turns them into
contexts.

Profiles, by name:

- ``bcp195-rfc8996`` (the default, :data:`DEFAULT_PROFILE`): BCP 195 as updated by RFC 9325 and
  RFC 8996 (PS3.15 B.12, "BCP 195 RFC 8996 TLS Profile", in PS3.15 editions since 2021): TLS 1.2
  and 1.3 only, and for TLS 1.2 only the ECDHE AEAD suites of RFC 9325 4.2.
- ``non-downgrading``: PS3.15 B.10, Non-Downgrading BCP 195 TLS Secure Transport Connection
  Profile: TLS 1.0 and 1.1 shall not be negotiated; the four DHE/ECDHE-RSA AES-GCM suites shall all
  be supported; "additional cipher suites of similar or greater cryptographic strength may be
  supported", which is how the ECDHE-ECDSA AES-GCM suites (for the lab's default ECDSA
  certificates) are included.
- ``extended``: PS3.15 B.11, Extended BCP 195 TLS Profile: the same four suites, plus the
  "should" list (ECDHE-ECDSA AES-GCM; the CAMELLIA-GCM suites of that list are not implemented by
  OpenSSL), and "no other cipher suites shall be used".
- ``aes`` (retired): PS3.15 B.3 (retired, see PS3.15 2018a), AES TLS Secure Transport Connection
  Profile: TLS_RSA_WITH_AES_128_CBC_SHA, falling back to TLS_RSA_WITH_3DES_EDE_CBC_SHA.
- ``basic`` (retired): PS3.15 B.1 (retired, see PS3.15 2018a), Basic TLS Secure Transport
  Connection Profile: TLS_RSA_WITH_3DES_EDE_CBC_SHA.

The retired profiles date from TLS 1.0 (the era of the paper this lab reproduces); they are kept
for comparison only. Their suites use RSA key transport, so the server needs an RSA certificate,
and OpenSSL 3 allows TLS 1.0/1.1 only at security level 0, which those two profiles (and only
those) ask for. Builds of OpenSSL 3 without "weak SSL ciphers" cannot do 3DES at all:
:func:`lab.security.tls.contexts.supported` finds out by a real handshake, and the context
builders refuse a profile the local OpenSSL cannot do instead of silently running something else.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from lab.errors import TlsError

DEFAULT_PROFILE = "bcp195-rfc8996"

V = ssl.TLSVersion

#: IANA names (RFC 8446 / TLS registry) of the OpenSSL suite names used below.
IANA_NAMES: dict[str, str] = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "DHE-RSA-AES128-GCM-SHA256": "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "DHE-RSA-AES256-GCM-SHA384": "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-SHA": "TLS_RSA_WITH_AES_128_CBC_SHA",
    "DES-CBC3-SHA": "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
}

_TLS13 = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256")
_ECDSA_GCM = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")
_ECDHE_RSA_GCM = ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384")
_B10_SUITES = (
    "DHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
)


@dataclass(frozen=True)
class Profile:
    """One DICOM PS3.15 Annex B secure transport connection profile, as OpenSSL settings.

    ``tls12_ciphers`` are OpenSSL cipher names for TLS 1.2 and below, in preference order;
    ``required`` those of them the profile makes mandatory (the context is refused without them).
    ``tls13_suites`` is informational (see the module docstring).
    """

    name: str
    title: str
    section: str
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    tls12_ciphers: tuple[str, ...]
    required: tuple[str, ...]
    tls13_suites: tuple[str, ...]
    retired: bool
    needs_rsa_key: bool

    @property
    def cipher_string(self) -> str:
        """The OpenSSL cipher string; retired profiles drop to security level 0 (OpenSSL 3 allows
        TLS 1.0/1.1 and SHA-1 handshake signatures only there)."""
        text = ":".join(self.tls12_ciphers)
        return f"{text}:@SECLEVEL=0" if self.retired else text


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "bcp195-rfc8996",
            "BCP 195 RFC 8996 TLS Profile",
            "PS3.15 B.12",
            V.TLSv1_2,
            V.TLSv1_3,
            _ECDSA_GCM + _ECDHE_RSA_GCM,
            _ECDHE_RSA_GCM,
            _TLS13,
            retired=False,
            needs_rsa_key=False,
        ),
        Profile(
            "non-downgrading",
            "Non-Downgrading BCP 195 TLS Secure Transport Connection Profile",
            "PS3.15 B.10",
            V.TLSv1_2,
            V.TLSv1_3,
            _ECDSA_GCM + _B10_SUITES,
            _B10_SUITES,
            _TLS13,
            retired=False,
            needs_rsa_key=False,
        ),
        Profile(
            "extended",
            "Extended BCP 195 TLS Profile",
            "PS3.15 B.11",
            V.TLSv1_2,
            V.TLSv1_3,
            _B10_SUITES + _ECDSA_GCM,
            _B10_SUITES,
            _TLS13,
            retired=False,
            needs_rsa_key=False,
        ),
        Profile(
            "aes",
            "AES TLS Secure Transport Connection Profile (retired)",
            "PS3.15 B.3",
            V.TLSv1,
            V.TLSv1_2,
            ("AES128-SHA", "DES-CBC3-SHA"),
            ("AES128-SHA",),
            (),
            retired=True,
            needs_rsa_key=True,
        ),
        Profile(
            "basic",
            "Basic TLS Secure Transport Connection Profile (retired)",
            "PS3.15 B.1",
            V.TLSv1,
            V.TLSv1_2,
            ("DES-CBC3-SHA",),
            ("DES-CBC3-SHA",),
            (),
            retired=True,
            needs_rsa_key=True,
        ),
    )
}


def needs_rsa(prof: Profile, cipher: str | None = None) -> bool:
    """Whether the server needs an RSA certificate: for the retired profiles' RSA key transport,
    or for an ECDHE-RSA / DHE-RSA suite chosen on its own."""
    return prof.needs_rsa_key or (cipher is not None and "ECDSA" not in cipher)


def profile(name: str) -> Profile:
    """The profile called ``name``; :class:`TlsError` listing the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise TlsError(
            f"unknown DICOM TLS profile {name!r}; known profiles: {', '.join(PROFILES)}"
        ) from None
