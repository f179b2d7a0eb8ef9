"""DICOM TLS profiles (PS3.15 Annex B) with mutual authentication: real handshakes over loopback TCP
(127.0.0.1 and ::1) between contexts from :mod:`lab.security.tls.contexts`, with certificates from
the lab PKI.

Every socket has a bounded timeout; a server thread serves exactly one connection and reports
what it negotiated, or the error it refused the peer with.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.security.pki import authority
from lab.security.tls import contexts
from lab.security.tls.contexts import PROFILES, TlsError

TIMEOUT = 5.0
V = ssl.TLSVersion
SUPPORTED = contexts.supported_profiles()


@dataclass(frozen=True)
class Creds:
    ca: Path
    server: authority.Credential
    client: authority.Credential
    rogue_client: authority.Credential
    ecdsa_server: authority.Credential


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Creds:
    """RSA credentials (every profile can use them), a client of an untrusted second CA, and an
    ECDSA server certificate."""
    root = tmp_path_factory.mktemp("tls")
    ca = authority.create_ca(root / "ca", key_type="rsa-2048")
    rogue = authority.create_ca(root / "rogue", "rogue CA", key_type="rsa-2048")
    where = {"ips": ["127.0.0.1", "::1"], "dns": ["localhost"], "key_type": "rsa-2048"}
    return Creds(
        ca=ca.cert_path,
        server=ca.issue("pacs", usages={"server"}, **where),  # type: ignore[arg-type]
        client=ca.issue("modality", usages={"client"}, key_type="rsa-2048"),
        rogue_client=rogue.issue("intruder", usages={"client"}, key_type="rsa-2048"),
        ecdsa_server=ca.issue("pacs-ec", ips=["127.0.0.1"], usages={"server"}),
    )


def server_ctx(name: str, c: Creds, cred: authority.Credential | None = None) -> ssl.SSLContext:
    cred = cred or c.server
    return contexts.server_context(name, cred.cert_path, cred.key_path, c.ca)


def client_ctx(name: str, c: Creds, cred: authority.Credential | None = None) -> ssl.SSLContext:
    cred = cred or c.client
    return contexts.client_context(name, cred.cert_path, cred.key_path, c.ca)


def _serve_one(listener: socket.socket, ctx: ssl.SSLContext) -> dict[str, Any]:
    conn, _peer = listener.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        with ctx.wrap_socket(conn, server_side=True) as link:
            if link.recv(1) != b"?":
                raise ConnectionError("client sent nothing")
            link.sendall(b"ok")
            return contexts.describe(link)


@dataclass
class Server:
    """A loopback TLS server; :meth:`accept` serves the next connection in a thread."""

    listener: socket.socket
    pool: ThreadPoolExecutor
    host: str

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def accept(self, ctx: ssl.SSLContext) -> Future[dict[str, Any]]:
        return self.pool.submit(_serve_one, self.listener, ctx)


@contextmanager
def loopback(host: str = "127.0.0.1") -> Iterator[Server]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener, ThreadPoolExecutor(1) as pool:
        listener.settimeout(TIMEOUT)
        listener.bind((host, 0))
        listener.listen(4)
        yield Server(listener, pool, host)


def talk(server: Server, ctx: ssl.SSLContext, hostname: str | None = None) -> dict[str, Any]:
    """Connect, handshake, exchange one round of data (TLS 1.3 refusals of a client certificate
    arrive only then), and describe the connection as the client sees it."""
    with (
        socket.create_connection((server.host, server.port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname or server.host) as link,
    ):
        link.sendall(b"?")
        if link.recv(2) != b"ok":
            raise ConnectionError("the server closed the connection")
        return contexts.describe(link)


def refused(server: Server, server_side: ssl.SSLContext, client_side: ssl.SSLContext) -> str:
    """Assert that both ends fail the connection; return the server's reason."""
    served = server.accept(server_side)
    with pytest.raises(OSError):  # ssl.SSLError, or the connection closed under the client
        talk(server, client_side)
    with pytest.raises(ssl.SSLError) as err:
        served.result(timeout=2 * TIMEOUT)
    return str(err.value)


def allowed(prof: contexts.Profile, info: dict[str, Any]) -> None:
    versions = {v for v in V if prof.min_version <= v <= prof.max_version}
    assert info["version"] in {_wire(v) for v in versions}
    if info["version"] == "TLSv1.3":
        assert info["cipher"] in prof.tls13_suites
    else:
        assert info["cipher"] in prof.tls12_ciphers


def _wire(v: ssl.TLSVersion) -> str:
    return {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1", "TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}.get(
        v.name, v.name
    )


def pinned(ctx: ssl.SSLContext, version: ssl.TLSVersion, ciphers: str | None = None) -> None:
    ctx.set_ciphers(ciphers or "DEFAULT:@SECLEVEL=0")
    contexts._set_versions(ctx, version, version)


# --- the profile table ------------------------------------------------------------------------


def test_profiles_name_their_ps3_15_sections_and_the_default_is_current() -> None:
    assert contexts.DEFAULT_PROFILE == "bcp195-rfc8996"
    assert {p.section for p in PROFILES.values()} == {
        "PS3.15 B.12",
        "PS3.15 B.10",
        "PS3.15 B.11",
        "PS3.15 B.3",
        "PS3.15 B.1",
    }
    for prof in PROFILES.values():
        assert set(prof.required) <= set(prof.tls12_ciphers)
        assert prof.retired == prof.needs_rsa_key == (prof.name in {"aes", "basic"})
        assert prof.min_version >= (V.TLSv1 if prof.retired else V.TLSv1_2)
    assert contexts.DEFAULT_PROFILE in SUPPORTED
    basic = {contexts.IANA_NAMES[c] for c in PROFILES["basic"].required}
    assert basic == {"TLS_RSA_WITH_3DES_EDE_CBC_SHA"}


# --- handshakes that must succeed --------------------------------------------------------------


@pytest.mark.parametrize("name", SUPPORTED)
def test_mutual_authentication_succeeds_with_what_the_profile_allows(
    name: str, creds: Creds
) -> None:
    prof = PROFILES[name]
    with loopback() as server:
        served = server.accept(server_ctx(name, creds))
        client_view = talk(server, client_ctx(name, creds))
        server_view = served.result(timeout=2 * TIMEOUT)
    assert client_view["peer_cn"] == "pacs" and server_view["peer_cn"] == "modality"
    assert client_view["version"] == server_view["version"]
    assert client_view["cipher"] == server_view["cipher"]
    allowed(prof, client_view)


@pytest.mark.parametrize("name", SUPPORTED)
def test_a_client_at_the_lowest_version_of_the_profile_gets_a_profile_suite(
    name: str, creds: Creds
) -> None:
    prof = PROFILES[name]
    client = client_ctx(name, creds)
    contexts._set_versions(client, prof.min_version, prof.min_version)
    with loopback() as server:
        served = server.accept(server_ctx(name, creds))
        info = talk(server, client)
        served.result(timeout=2 * TIMEOUT)
    assert info["version"] == _wire(prof.min_version)
    assert info["cipher"] in prof.tls12_ciphers


def test_ipv6_loopback_and_the_ip_address_in_the_server_certificate(creds: Creds) -> None:
    with loopback("::1") as server:
        served = server.accept(server_ctx(contexts.DEFAULT_PROFILE, creds))
        info = talk(server, client_ctx(contexts.DEFAULT_PROFILE, creds))
        served.result(timeout=2 * TIMEOUT)
    assert info["version"] in {"TLSv1.2", "TLSv1.3"} and info["peer_cn"] == "pacs"


def test_ecdsa_certificates_work_with_the_current_profiles_at_tls12(creds: Creds) -> None:
    for name in ("bcp195-rfc8996", "non-downgrading", "extended"):
        client = client_ctx(name, creds)
        contexts._set_versions(client, V.TLSv1_2, V.TLSv1_2)
        with loopback() as server:
            served = server.accept(server_ctx(name, creds, creds.ecdsa_server))
            info = talk(server, client)
            served.result(timeout=2 * TIMEOUT)
        assert info["cipher"].startswith("ECDHE-ECDSA-"), name


# --- handshakes that must be refused ----------------------------------------------------------


def test_a_client_without_a_certificate_is_refused(creds: Creds) -> None:
    anonymous = contexts.client_context(contexts.DEFAULT_PROFILE, None, None, creds.ca)
    with loopback() as server:
        reason = refused(server, server_ctx(contexts.DEFAULT_PROFILE, creds), anonymous)
    assert "certificate" in reason.lower()


def test_an_untrusted_client_is_refused_and_the_server_keeps_accepting(creds: Creds) -> None:
    ctx = server_ctx(contexts.DEFAULT_PROFILE, creds)
    intruder = client_ctx(contexts.DEFAULT_PROFILE, creds, creds.rogue_client)
    with loopback() as server:
        reason = refused(server, ctx, intruder)
        served = server.accept(ctx)
        info = talk(server, client_ctx(contexts.DEFAULT_PROFILE, creds))
        assert served.result(timeout=2 * TIMEOUT)["peer_cn"] == "modality"
    assert "certificate verify failed" in reason
    assert info["peer_cn"] == "pacs"


def test_the_client_checks_the_server_address_against_the_certificate(creds: Creds) -> None:
    with loopback() as server:
        served = server.accept(server_ctx(contexts.DEFAULT_PROFILE, creds))
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            talk(server, client_ctx(contexts.DEFAULT_PROFILE, creds), hostname="198.18.2.10")
        with pytest.raises(ssl.SSLError):
            served.result(timeout=2 * TIMEOUT)


def test_a_tls11_client_is_refused_by_the_current_profile(creds: Creds) -> None:
    old = client_ctx(contexts.DEFAULT_PROFILE, creds)
    pinned(old, V.TLSv1_1)
    with loopback() as server:
        reason = refused(server, server_ctx(contexts.DEFAULT_PROFILE, creds), old)
    assert "UNSUPPORTED_PROTOCOL" in reason


@pytest.mark.parametrize("name", ["non-downgrading", "bcp195-rfc8996", "extended"])
def test_a_cbc_only_client_is_refused_by_the_bcp195_profiles(name: str, creds: Creds) -> None:
    cbc = client_ctx(name, creds)
    pinned(cbc, V.TLSv1_2, "AES128-SHA:AES256-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
    with loopback() as server:
        reason = refused(server, server_ctx(name, creds), cbc)
    assert "no shared cipher" in reason


def test_a_modern_client_cannot_talk_to_a_retired_aes_server(creds: Creds) -> None:
    if "aes" not in SUPPORTED:
        pytest.skip("the local OpenSSL cannot do the aes profile at all")
    with loopback() as server:
        reason = refused(server, server_ctx("aes", creds),
                         client_ctx(contexts.DEFAULT_PROFILE, creds))
    assert "no shared cipher" in reason or "UNSUPPORTED_PROTOCOL" in reason


# --- refusals before any connection -------------------------------------------------------------


def test_an_unknown_profile_names_the_known_ones(creds: Creds) -> None:
    with pytest.raises(TlsError, match="unknown DICOM TLS profile 'bcp195'") as err:
        server_ctx("bcp195", creds)
    for name in PROFILES:
        assert name in str(err.value)


def test_the_retired_basic_profile_is_refused_clearly_where_openssl_lacks_3des(
    creds: Creds,
) -> None:
    ok, why = contexts.supported(PROFILES["basic"])
    if ok:
        # This OpenSSL can still do 3DES: the profile must then really work.
        assert "basic" in SUPPORTED and "DES-CBC3-SHA" in why
        return
    assert "TLS_RSA_WITH_3DES_EDE_CBC_SHA" in why
    with pytest.raises(TlsError) as err:
        client_ctx("basic", creds)
    message = str(err.value)
    assert "'basic'" in message and "PS3.15 B.1" in message and "3DES" in message
    assert f"supports: {', '.join(SUPPORTED)}" in message


def test_retired_profiles_need_an_rsa_server_certificate(creds: Creds) -> None:
    if "aes" not in SUPPORTED:
        pytest.skip("the local OpenSSL cannot do the aes profile at all")
    with pytest.raises(TlsError, match="needs an RSA server certificate"):
        server_ctx("aes", creds, creds.ecdsa_server)


def test_a_client_certificate_needs_its_key(creds: Creds) -> None:
    with pytest.raises(TlsError, match="needs its key"):
        contexts.client_context(contexts.DEFAULT_PROFILE, creds.client.cert_path, None, creds.ca)


def test_describe_refuses_a_connection_before_its_handshake() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="x")
    with pytest.raises(TlsError, match="not completed"):
        contexts.describe(obj)
