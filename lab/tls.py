"""DICOM TLS done natively with Python's :mod:`ssl`: the secure transport connection profiles of
DICOM PS3.15 Annex B, with mutual authentication against the lab CA (:mod:`lab.pki`).

PS3.15 B.9-B.11 recommend the registered port 2762 ("dicom-tls") for the DICOM Upper Layer on
TLS; :data:`DICOM_TLS_PORT` is that number. Profiles, by name:

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
:func:`supported` finds out by a real handshake, and the context builders refuse a profile the
local OpenSSL cannot do instead of silently running something else.

Python's :mod:`ssl` cannot restrict the TLS 1.3 cipher suites (OpenSSL's
``SSL_CTX_set_ciphersuites`` is not exposed); :attr:`Profile.tls13_suites` is therefore
informational: it lists what OpenSSL offers by default, all of them AEAD suites allowed by every
TLS 1.3 profile here.

Host checks: the client checks the server's certificate against the lab CA only, and by default
also the server's identity (RFC 6125, RFC 9525): ``server_hostname`` passed to ``wrap_socket`` /
``wrap_bio`` must be the address or name the client dialled, and must appear in the server
certificate's SubjectAlternativeName (lab certificates carry the node's IPv4/IPv6 addresses and
DNS names). The server requires a client certificate issued by the lab CA (PS3.15 B.10 leaves key
management to the Conformance Statement; mutual authentication is what the lab states) but does
not match the client's name: any lab-issued client is accepted.
"""

from __future__ import annotations

import functools
import ssl
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from lab import pki
from lab.errors import LabError

DICOM_TLS_PORT = 2762
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


class TlsError(LabError):
    """A TLS profile is unknown or cannot be done here, or TLS credentials do not fit it."""


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


def profile(name: str) -> Profile:
    """The profile called ``name``; :class:`TlsError` listing the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise TlsError(
            f"unknown DICOM TLS profile {name!r}; known profiles: {', '.join(PROFILES)}"
        ) from None


def server_context(profile_name: str, cert: Path, key: Path, ca_cert: Path) -> ssl.SSLContext:
    """A server (SCP) context for ``profile_name``: our certificate and key, and a client
    certificate required and verified against ``ca_cert``, the only trust anchor."""
    prof = _usable(profile_name)
    if prof.needs_rsa_key and not isinstance(
        pki.load_certificate(cert).public_key(), rsa.RSAPublicKey
    ):
        raise TlsError(
            f"TLS profile {prof.name!r} ({prof.section}) uses RSA key transport "
            f"({', '.join(IANA_NAMES[c] for c in prof.required)}) and needs an RSA server "
            f"certificate; {cert} does not hold an RSA key (issue one with key_type='rsa-2048')"
        )
    return _server(prof, cert, key, ca_cert)


def client_context(
    profile_name: str,
    cert: Path | None,
    key: Path | None,
    ca_cert: Path,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client (SCU) context for ``profile_name`` that verifies the server against ``ca_cert``
    only and presents ``cert``/``key`` (both, or neither: a client without a certificate is
    refused by every server built here, which negative tests rely on).

    With ``check_hostname`` (the default) the ``server_hostname`` given when wrapping — the
    address or name dialled — must be in the server certificate's SubjectAlternativeName.
    """
    if (cert is None) != (key is None):
        raise TlsError("a TLS client certificate needs its key, and a key its certificate")
    return _client(_usable(profile_name), cert, key, ca_cert, check_hostname=check_hostname)


def supported_profiles() -> list[str]:
    """Names of the profiles the local OpenSSL can really do."""
    return [name for name in PROFILES if supported(PROFILES[name])[0]]


@functools.cache
def supported(prof: Profile) -> tuple[bool, str]:
    """Whether the local OpenSSL can do ``prof``, and why (or why not).

    Checked for real: the server and client contexts must accept the profile's versions and
    cipher string and still list every required suite in ``get_ciphers()``; then a complete
    mutually authenticated handshake is run between them in memory (``ssl.MemoryBIO``: no socket,
    so it works in any network namespace) with RSA certificates from a throwaway lab CA. A client
    pinned to the profile's lowest version (TLS 1.2, or TLS 1.0 for the retired profiles) is tried
    too, and the answer says whether it worked. The result is cached for the process.
    """
    here = f"the local OpenSSL ({ssl.OPENSSL_VERSION})"
    with tempfile.TemporaryDirectory(prefix="teleradlab-tls-probe-") as tmp:
        creds = _probe_credentials(Path(tmp))
        try:
            server = _server(prof, creds["server"], creds["server.key"], creds["ca"])
            client = _client(
                prof, creds["client"], creds["client.key"], creds["ca"], check_hostname=True
            )
        except ssl.SSLError as exc:
            names = ", ".join(IANA_NAMES.get(c, c) for c in prof.tls12_ciphers)
            hint = (
                " (OpenSSL 3 has 3DES suites only when built with enable-weak-ssl-ciphers)"
                if any("DES-CBC3" in c for c in prof.tls12_ciphers)
                else ""
            )
            return False, f"{here} offers none of {names}{hint} [{_reason(exc)}]"
        offered = {c["name"] for c in server.get_ciphers()}
        missing = [IANA_NAMES.get(c, c) for c in prof.required if c not in offered]
        if missing:
            return False, f"{here} does not offer {', '.join(missing)}"
        try:
            version, cipher = _handshake(server, client)
        except ssl.SSLError as exc:
            return False, f"a test handshake failed with {here}: {exc}"
        why = f"test handshake with {here} negotiated {version} {cipher}"
        if prof.min_version < prof.max_version:
            low = prof.min_version
            pinned = _client(
                prof, creds["client"], creds["client.key"], creds["ca"], check_hostname=True
            )
            _set_versions(pinned, low, low)
            try:
                version, cipher = _handshake(server, pinned)
                why += f"; a client pinned to {low.name} negotiated {version} {cipher}"
            except ssl.SSLError as exc:
                why += f"; a client pinned to {low.name} was refused ({_reason(exc)})"
        return True, why


def describe(conn: ssl.SSLSocket | ssl.SSLObject) -> dict[str, Any]:
    """What a finished handshake negotiated, for results: TLS version, cipher (OpenSSL name and,
    where known, IANA name), secret bits, and the peer certificate's subject CN (or ``None``)."""
    cipher = conn.cipher()
    if cipher is None:
        raise TlsError("the TLS handshake has not completed; nothing was negotiated yet")
    name, _proto, bits = cipher
    der = conn.getpeercert(binary_form=True)
    peer_cn = pki.subject_cn(x509.load_der_x509_certificate(der)) if der else None
    return {
        "version": conn.version(),
        "cipher": name,
        "cipher_iana": name if name.startswith("TLS_") else IANA_NAMES.get(name),
        "bits": bits,
        "peer_cn": peer_cn,
    }


# --- internals ----------------------------------------------------------------------------------


def _reason(exc: ssl.SSLError) -> str:
    return str(getattr(exc, "reason", None) or (exc.args[-1] if exc.args else exc))


def _usable(profile_name: str) -> Profile:
    prof = profile(profile_name)
    ok, why = supported(prof)
    if not ok:
        raise TlsError(
            f"TLS profile {prof.name!r} ({prof.title}, {prof.section}) cannot be used with the "
            f"local OpenSSL: {why}. Profiles this machine supports: "
            f"{', '.join(supported_profiles()) or 'none'}"
        )
    return prof


def _set_versions(ctx: ssl.SSLContext, low: ssl.TLSVersion, high: ssl.TLSVersion) -> None:
    # Python warns that TLS 1.0/1.1 are deprecated; the retired profiles ask for them on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = low
        ctx.maximum_version = high


def _configure(ctx: ssl.SSLContext, prof: Profile, ca_cert: Path) -> ssl.SSLContext:
    _set_versions(ctx, prof.min_version, prof.max_version)
    ctx.set_ciphers(prof.cipher_string)
    ctx.load_verify_locations(cafile=str(ca_cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _server(prof: Profile, cert: Path, key: Path, ca_cert: Path) -> ssl.SSLContext:
    ctx = _configure(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), prof, ca_cert)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _client(
    prof: Profile, cert: Path | None, key: Path | None, ca_cert: Path, *, check_hostname: bool
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    _configure(ctx, prof, ca_cert)
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


_PROBE_HOST = "tls-probe.invalid"


@functools.cache
def _probe_material() -> dict[str, bytes]:
    """PEM bytes of a throwaway RSA CA, server and client (made once per process)."""
    with tempfile.TemporaryDirectory(prefix="teleradlab-tls-ca-") as tmp:
        ca = pki.create_ca(Path(tmp) / "ca", "teleradlab TLS probe CA", key_type="rsa-2048", days=1)
        made = {
            "server": ca.issue(
                "server", dns=[_PROBE_HOST], usages={"server"}, key_type="rsa-2048", days=1
            ),
            "client": ca.issue("client", usages={"client"}, key_type="rsa-2048", days=1),
        }
        out = {"ca": ca.cert_path.read_bytes()}
        for name, cred in made.items():
            out[name] = cred.cert_path.read_bytes()
            out[f"{name}.key"] = cred.key_path.read_bytes()
        return out


def _probe_credentials(where: Path) -> dict[str, Path]:
    paths = {}
    for name, data in _probe_material().items():
        path = (
            where / name.replace(".key", "-key.pem")
            if name.endswith(".key")
            else where / f"{name}.pem"
        )
        path.write_bytes(data)
        path.chmod(0o600)
        paths[name] = path
    return paths


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str, str]:
    """Run a full handshake between two contexts over memory BIOs; return (version, cipher)."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out, server_hostname=_PROBE_HOST)
    done = {"s": False, "c": False}
    for _ in range(20):
        for side, obj in (("c", c), ("s", s)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    # TLS 1.3: the server verifies the client certificate after the client considers itself
    # done; one round of application data makes a refusal visible on both sides.
    c.write(b"?")
    s_in.write(c_out.read())
    if s.read(1) != b"?":
        raise ssl.SSLError("test handshake did not carry application data")
    info = describe(c)
    return str(info["version"]), str(info["cipher"])
