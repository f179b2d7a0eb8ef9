"""The peer's TLS, enumerated by sslyze (a maintained TLS scanner, on PyPI): which TLS versions
and cipher suites it accepts, whether it asks for a client certificate, and the certificate
chain it sends; then which PS3.15 Annex B profiles (:data:`lab.model.tls_profiles.PROFILES`)
that adds up to: a profile is accepted when the peer accepts one of its suites at one of its
versions (TLS 1.3, whose suites are all AEAD, counts for the profiles that allow it).

sslyze connects with its own OpenSSL builds (nassl, with a legacy build for TLS 1.0 and 3DES),
so what is enumerated does not depend on what this machine's OpenSSL still allows. With
``--tls-cert``/``--tls-key`` it presents that certificate, so a peer that demands one
(PS3.15 B.10 and later expect both ends authenticated) can still be enumerated.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from nassl.ssl_client import OpenSslFileTypeEnum
from sslyze import __version__ as sslyze_version
from sslyze.errors import ConnectionToServerFailed
from sslyze.plugins.scan_commands import ScanCommand
from sslyze.scanner.models import ServerConnectivityStatusEnum, ServerScanRequest
from sslyze.scanner.scan_command_attempt import ScanCommandAttemptStatusEnum
from sslyze.scanner.scanner import Scanner
from sslyze.server_connectivity import check_connectivity_to_server
from sslyze.server_setting import (
    ClientAuthenticationCredentials,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
)

from lab.model.tls_profiles import PROFILES, Profile
from lab.probe.certs import judge_chain
from lab.probe.findings import ProfileSupport, TlsFindings

#: sslyze's scan command per TLS version (SSL 2.0 and 3.0 are not probed: no profile allows
#: them, and RFC 7568 / RFC 6176 forbid them everywhere).
VERSION_COMMANDS: dict[str, ScanCommand] = {
    "TLS 1.0": ScanCommand.TLS_1_0_CIPHER_SUITES,
    "TLS 1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
    "TLS 1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
    "TLS 1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
}
_ORDER = ("TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")
_PYTHON_NAMES = {"TLS 1.0": "TLSv1", "TLS 1.1": "TLSv1_1", "TLS 1.2": "TLSv1_2",
                 "TLS 1.3": "TLSv1_3"}


@dataclass(frozen=True)
class Credentials:
    """What the scan presents and trusts (all optional)."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


def versions_of(prof: Profile) -> list[str]:
    """The TLS versions a profile allows, by sslyze's names."""
    low, high = prof.min_version.name, prof.max_version.name
    names = [_PYTHON_NAMES[v] for v in _ORDER]
    return list(_ORDER[names.index(low):names.index(high) + 1])


def profiles(suites: dict[str, list[str]]) -> list[ProfileSupport]:
    """Which profiles the accepted suites (version: OpenSSL names) satisfy."""
    out = []
    for prof in PROFILES.values():
        inside = []
        for version in versions_of(prof):
            allowed = prof.tls13_suites if version == "TLS 1.3" else prof.tls12_ciphers
            inside += [f"{version} {s}" for s in suites.get(version, []) if s in allowed]
        out.append(ProfileSupport(name=prof.name, section=prof.section, retired=prof.retired,
                                  accepted=bool(inside), suites=inside))
    return out


def _location(host: str, port: int) -> ServerNetworkLocation:
    """An address is scanned as it is; a name is resolved by sslyze."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ServerNetworkLocation(hostname=host, port=port)
    return ServerNetworkLocation(hostname=host, port=port, ip_address=host)


def client_auth(host: str, port: int, timeout: float) -> str:
    """Whether the peer asks for a client certificate (DISABLED, OPTIONAL, REQUIRED), found by
    a handshake without one: sslyze reads the demand only when it has no certificate to give
    (with one, the handshake simply succeeds)."""
    config = ServerNetworkConfiguration(tls_server_name_indication=host,
                                        network_timeout=max(1, int(timeout)),
                                        network_max_retries=1)
    try:
        found = check_connectivity_to_server(_location(host, port), config)
    except ConnectionToServerFailed as exc:
        return f"unknown ({exc.error_message})"
    return found.client_auth_requirement.value


def _request(host: str, port: int, creds: Credentials, timeout: float) -> ServerScanRequest:
    auth = None
    if creds.cert is not None and creds.key is not None:
        auth = ClientAuthenticationCredentials(certificate_chain_path=creds.cert,
                                               key_path=creds.key,
                                               key_type=OpenSslFileTypeEnum.PEM)
    config = ServerNetworkConfiguration(tls_server_name_indication=host,
                                        tls_client_auth_credentials=auth,
                                        network_timeout=max(1, int(timeout)),
                                        network_max_retries=1)
    return ServerScanRequest(
        server_location=_location(host, port),
        network_configuration=config,
        scan_commands={*VERSION_COMMANDS.values(), ScanCommand.CERTIFICATE_INFO})


def scan(host: str, port: int, creds: Credentials, *, timeout: float = 5.0) -> TlsFindings:
    """The peer's TLS as sslyze sees it; ``speaks_tls`` false (with the error) if sslyze
    could not complete a single handshake."""
    scanner = Scanner(per_server_concurrent_connections_limit=4, concurrent_server_scans_limit=1)
    scanner.queue_scans([_request(host, port, creds, timeout)])
    result = next(iter(scanner.get_results()))
    found = TlsFindings(speaks_tls=False, scanner=f"sslyze {sslyze_version.__version__}")
    if result.connectivity_status != ServerConnectivityStatusEnum.COMPLETED:
        trace = result.connectivity_error_trace
        found.error = ("".join(trace.format_exception_only()).strip() if trace is not None
                       else "no TLS handshake")
        return found
    found.speaks_tls = True
    probing = result.connectivity_result
    if creds.cert is not None:
        found.client_auth = client_auth(host, port, timeout)
    elif probing is not None:
        found.client_auth = probing.client_auth_requirement.value
    attempts = result.scan_result
    if attempts is None:
        return found
    for version, command in VERSION_COMMANDS.items():
        attempt = getattr(attempts, command.value)
        names: list[str] = []
        if attempt.status == ScanCommandAttemptStatusEnum.COMPLETED:
            names = [a.cipher_suite.openssl_name for a in attempt.result.accepted_cipher_suites]
        found.versions[version] = bool(names)
        found.suites[version] = names
    found.profiles = profiles(found.suites)
    cert_attempt = attempts.certificate_info
    if cert_attempt.status == ScanCommandAttemptStatusEnum.COMPLETED:
        found.certificate = _certificate(cert_attempt.result, host, creds.ca)
    return found


def _certificate(result: Any, host: str, ca: Path | None) -> Any:
    """The first deployment's received chain, judged (:func:`lab.probe.certs.judge_chain`)."""
    deployments = result.certificate_deployments
    if not deployments:
        return None
    chain: list[x509.Certificate] = list(deployments[0].received_certificate_chain)
    return judge_chain(chain, host, ca)
