"""The lab's security plan, resolved once: :func:`resolve` is the one function that turns the
topology's ``security`` section and what this machine can do into a
:class:`~lab.model.plan.SecurityPlan`.

``up`` calls it before anything is built (an impossible or unsupported choice stops there) and
keeps the plan in the lab's record; services, runs, ``status``, sweeps and reports read it from
there and never work it out again. What the machine can do comes through a :class:`Machine`:
:class:`HostMachine` asks the real one (a throwaway network namespace for kernel ESP, a
throwaway charon for strongSwan's algorithms, an in-memory handshake for each TLS profile);
unit tests pass their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

from lab.errors import IpsecError, TlsError
from lab.host import programs, shell
from lab.model import proposals
from lab.model.plan import EspPath, IpsecPlan, SecurityPlan, TlsPlan
from lab.model.tls_profiles import PROFILES, needs_rsa
from lab.model.topology import IpsecScope, RemotePeer, SecurityMode, Topology
from lab.security.ipsec import charon
from lab.security.ipsec.plan import endpoints, hosts_routed
from lab.security.tls import contexts

# A dummy ESP SA (RFC 4303) between RFC 2544 addresses: the kernel takes it only if it has ESP.
_PROBE_SA = ["xfrm", "state", "add", "src", "198.18.0.1", "dst", "198.18.0.2", "proto", "esp",
             "spi", "0x100", "mode", "tunnel", "enc", "cbc(aes)",
             "0x0102030405060708090a0b0c0d0e0f10", "auth", "hmac(sha256)", "0x" + "01" * 32]


class Machine(Protocol):
    """What the machine a lab is built on can do, as far as security is concerned."""

    def esp_path(self) -> EspPath:
        """Kernel ESP if the kernel takes an ESP SA, else userspace ESP."""

    def ipsec_algorithms(self) -> Mapping[str, Sequence[str]]:
        """The installed strongSwan's algorithms by transform type (VICI get_algorithms)."""

    def tls_support(self, profile: str) -> tuple[bool, str]:
        """Whether the local OpenSSL completes a handshake of ``profile``, and why (not)."""

    def tls_profiles(self) -> list[str]:
        """The profiles this machine can do (for the error message)."""


@cache
def kernel_esp() -> EspPath:
    """Kernel ESP if the kernel takes an ESP SA, tried in a new network namespace of its own
    (``unshare --net``) so the host's SAs are never touched: the SA goes with the namespace.
    Asked once per process (the kernel does not change under a command)."""
    res = shell.run(["unshare", "--net", "ip", *_PROBE_SA], check=False)
    return EspPath.KERNEL if res.ok else EspPath.LIBIPSEC


class HostMachine:
    """This machine, asked for real (each answer once per process)."""

    def esp_path(self) -> EspPath:
        return kernel_esp()

    def ipsec_algorithms(self) -> Mapping[str, Sequence[str]]:
        programs.require({"ipsec": "the topology asks for IPsec"})
        return charon.algorithms()

    def tls_support(self, profile: str) -> tuple[bool, str]:
        return contexts.supported(PROFILES[profile])

    def tls_profiles(self) -> list[str]:
        return contexts.supported_profiles()


def every_algorithm() -> dict[str, list[str]]:
    """Every algorithm the lab's proposal keywords know, by transform type (as charon says)."""
    out: dict[str, list[str]] = {}
    for alg in proposals.ALGORITHMS.values():
        out.setdefault(alg.transform.value, []).append(alg.strongswan)
    return out


@dataclass
class FixedMachine:
    """A machine whose answers are given (by default: userspace ESP, every algorithm, every TLS
    profile): for unit tests, and to plan without probing."""

    esp: EspPath = EspPath.LIBIPSEC
    algorithms: Mapping[str, Sequence[str]] = field(default_factory=every_algorithm)
    tls: Sequence[str] = tuple(PROFILES)

    def esp_path(self) -> EspPath:
        return self.esp

    def ipsec_algorithms(self) -> Mapping[str, Sequence[str]]:
        return self.algorithms

    def tls_support(self, profile: str) -> tuple[bool, str]:
        return (True, "given") if profile in self.tls else (False, "not offered by this machine")

    def tls_profiles(self) -> list[str]:
        return list(self.tls)


def needs_ipsec(topology: Topology) -> bool:
    """IPsec runs when asked for, and under DICOM TLS where the sites need a tunnel to reach
    each other at all (the mixed topologies): TLS then runs end to end inside the site-to-site
    tunnel, which the results record beside the TLS figures. Known from the topology alone, so
    ``up`` can say which programs a lab needs before it asks the machine anything."""
    mode = topology.security.mode
    return mode is SecurityMode.IPSEC or (mode is SecurityMode.TLS and not hosts_routed(topology))


def remote_files(remote: RemotePeer) -> None:
    """The remote peer's CA and the gateway's certificate and key must be readable PEM files
    before anything is built; IpsecError naming the field and the file otherwise."""
    for key in ("ca", "cert", "key"):
        name = getattr(remote, key)
        if name is None:
            continue
        try:
            head = Path(name).read_bytes()[:4096]
        except OSError as exc:
            raise IpsecError(f"security.ipsec.remote.{key}: cannot read {name}: "
                             f"{exc.strerror}") from None
        if b"-----BEGIN " not in head:
            raise IpsecError(f"security.ipsec.remote.{key}: {name} is not a PEM file")


def resolve(topology: Topology, machine: Machine) -> SecurityPlan:
    """The security plan of a lab of ``topology`` on ``machine``.

    IpsecError when the topology cannot do the asked IPsec scope, a proposal is malformed or
    names an algorithm the installed strongSwan lacks (the supported ones in the message);
    TlsError when the TLS profile is one the local OpenSSL cannot complete. A transition tunnel
    under DICOM TLS is always site-to-site."""
    sec = topology.security
    ipsec: IpsecPlan | None = None
    tls: TlsPlan | None = None
    if sec.mode is SecurityMode.TLS:
        ok, why = machine.tls_support(sec.tls.profile)
        if not ok:
            raise TlsError(f"security.tls.profile: {sec.tls.profile!r} cannot be used here: "
                           f"{why}; profiles this machine can do: "
                           f"{', '.join(machine.tls_profiles())}")
        tls = TlsPlan(sec.tls.profile, sec.tls.cipher, sec.tls.port,
                      needs_rsa(PROFILES[sec.tls.profile], sec.tls.cipher))
    if needs_ipsec(topology):
        if topology.remote is not None:
            remote_files(topology.remote)
        settings = sec.ipsec
        scope = IpsecScope.SITE_TO_SITE if tls is not None else settings.scope
        ike = proposals.parse(settings.ike, "ike", "security.ipsec.ike")
        esp = proposals.parse(settings.esp, "esp", "security.ipsec.esp")
        initiator, responder = endpoints(topology, scope)
        available = machine.ipsec_algorithms()
        proposals.require_supported(ike, available, "security.ipsec.ike")
        proposals.require_supported(esp, available, "security.ipsec.esp")
        ipsec = IpsecPlan(scope, settings.auth, initiator, responder, ike, esp,
                          machine.esp_path(), carries_tls=tls is not None)
    return SecurityPlan(sec.mode, sec.label, ipsec, tls)
