"""DICOM TLS done natively with Python's :mod:`ssl`: the secure transport connection profiles of
DICOM PS3.15 Annex B, with mutual authentication against the lab CA
(:mod:`lab.security.pki.authority`).

PS3.15 B.9-B.11 recommend the registered port 2762 ("dicom-tls") for the DICOM Upper Layer on
TLS; :data:`lab.model.dicom.TLS_PORT` is that number. The profiles themselves (names, versions,
suites, the PS3.15 sections they come from) are data in :mod:`lab.model.tls_profiles`.

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
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.errors import TlsError
from lab.model.tls_profiles import (
    DEFAULT_PROFILE,
    IANA_NAMES,
    PROFILES,
    Profile,
    profile,
)
from lab.security.pki import authority

__all__ = [
    "DEFAULT_PROFILE",
    "IANA_NAMES",
    "PROFILES",
    "Profile",
    "TlsError",
    "client_context",
    "describe",
    "profile",
    "server_context",
    "supported",
    "supported_profiles",
]


def server_context(profile_name: str, cert: Path, key: Path, ca_cert: Path) -> ssl.SSLContext:
    """A server (SCP) context for ``profile_name``: our certificate and key, and a client
    certificate required and verified against ``ca_cert``, the only trust anchor."""
    prof = _usable(profile_name)
    if prof.needs_rsa_key and not isinstance(
        authority.load_certificate(cert).public_key(), rsa.RSAPublicKey
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


def restrict_cipher(ctx: ssl.SSLContext, profile_name: str, cipher: str) -> None:
    """Let a client offer only ``cipher`` (one of the profile's TLS 1.2 suites), at TLS 1.2 at
    most: Python cannot choose among TLS 1.3 suites, so choosing a suite means TLS 1.2."""
    prof = _usable(profile_name)
    if cipher not in prof.tls12_ciphers:
        raise TlsError(f"cipher {cipher!r} is not a suite of profile {prof.name!r} (its TLS 1.2 "
                       f"suites: {', '.join(prof.tls12_ciphers)})")
    ctx.set_ciphers(f"{cipher}:@SECLEVEL=0" if prof.retired else cipher)
    _set_versions(ctx, prof.min_version, min(prof.max_version, ssl.TLSVersion.TLSv1_2))


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
    peer_cn = authority.subject_cn(x509.load_der_x509_certificate(der)) if der else None
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
    """The profile, if the local OpenSSL accepts its versions and cipher suites (a quick check:
    a program's start must not pay for :func:`supported`'s test handshakes, which only explain
    a refusal); TlsError saying why and which profiles work otherwise."""
    prof = profile(profile_name)
    if not _ciphers_ok(prof):
        raise _refuse(prof)
    return prof


@functools.cache
def _ciphers_ok(prof: Profile) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_versions(ctx, prof.min_version, prof.max_version)
    try:
        ctx.set_ciphers(prof.cipher_string)
    except ssl.SSLError:
        return False
    offered = {c["name"] for c in ctx.get_ciphers()}
    return all(c in offered for c in prof.required)


def _refuse(prof: Profile) -> TlsError:
    """Why ``prof`` cannot be used here, from the full check (only on this error path)."""
    why = supported(prof)[1]
    return TlsError(
        f"TLS profile {prof.name!r} ({prof.title}, {prof.section}) cannot be used with the "
        f"local OpenSSL: {why}. Profiles this machine supports: "
        f"{', '.join(supported_profiles()) or 'none'}"
    )


def _set_versions(ctx: ssl.SSLContext, low: ssl.TLSVersion, high: ssl.TLSVersion) -> None:
    # Python warns that TLS 1.0/1.1 are deprecated; the retired profiles ask for them on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = low
        ctx.maximum_version = high


def _configure(ctx: ssl.SSLContext, prof: Profile, ca_cert: Path) -> ssl.SSLContext:
    _set_versions(ctx, prof.min_version, prof.max_version)
    ctx.set_ciphers(prof.cipher_string)  # ssl.SSLError if OpenSSL has none of them
    ctx.load_verify_locations(cafile=str(ca_cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


#: The ffdhe2048 group of RFC 7919 (as ``openssl genpkey -genparam -algorithm DH -pkeyopt
#: group:ffdhe2048`` writes it): the finite-field group the DHE suites of PS3.15 B.10/B.11 use.
FFDHE2048 = Path(__file__).with_name("ffdhe2048.pem")


def _server(prof: Profile, cert: Path, key: Path, ca_cert: Path) -> ssl.SSLContext:
    ctx = _configure(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), prof, ca_cert)
    ctx.load_cert_chain(str(cert), str(key))
    if any(c.startswith("DHE-") for c in prof.tls12_ciphers):
        ctx.load_dh_params(str(FFDHE2048))  # without them OpenSSL never picks a DHE suite
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
        ca = authority.create_ca(Path(tmp) / "ca", "teleradlab TLS probe CA", key_type="rsa-2048",
                                days=1)
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
