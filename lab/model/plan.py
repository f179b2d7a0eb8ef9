"""The security plan of a lab as data: what protects it, decided once when the lab comes up.

:func:`lab.security.plan.resolve` makes a :class:`SecurityPlan` from the topology's ``security``
section and what the machine can do (kernel ESP or userspace ESP, the algorithms of the installed
strongSwan, the TLS profiles the local OpenSSL completes). The lab's record keeps it
(:mod:`lab.runtime.state`), and everything after ``up`` reads it from there: the services' TLS
options and ports, a run's protection columns, ``status``, sweeps and reports. Nothing here does
I/O; the plan holds no secret (a pre-shared key stays in the topology or the lab's PKI folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lab.model.dicom import PACS_PORT, RECEIVER_PORT
from lab.model.proposals import Proposal
from lab.model.topology import Family, IPAddress, IPNetwork, IpsecAuth, IpsecScope, SecurityMode


class EspPath(StrEnum):
    """Where ESP runs: in the kernel (XFRM, charon's kernel-netlink), or in userspace over a TUN
    device (charon's kernel-libipsec) where the kernel has no ESP."""

    KERNEL = "kernel"
    LIBIPSEC = "libipsec"


@dataclass(frozen=True)
class Endpoint:
    """One IKE peer: the node, the address IKE and ESP use, its IKE identity (RFC 7296 3.5) and
    the traffic it protects (its own side's selectors)."""

    node: str
    address: IPAddress
    identity: str
    selectors: tuple[IPNetwork, ...]
    #: False for a real remote gateway outside the lab (``node`` then only names it): the lab
    #: runs no charon and installs no guard there.
    local: bool = True

    @property
    def family(self) -> Family:
        return Family.of(self.address)


@dataclass(frozen=True)
class IpsecPlan:
    """The IPsec a lab runs: two IKE peers, the proposals, and the ESP path of this machine.
    ``carries_tls``: the tunnel exists only to join the sites of a mixed topology, and DICOM TLS
    runs end to end inside it."""

    scope: IpsecScope
    auth: IpsecAuth
    initiator: Endpoint
    responder: Endpoint
    ike: Proposal
    esp: Proposal
    esp_path: EspPath
    carries_tls: bool = False

    @property
    def endpoints(self) -> tuple[Endpoint, Endpoint]:
        return self.initiator, self.responder

    @property
    def local_endpoints(self) -> tuple[Endpoint, ...]:
        """The IKE peers inside the lab: where charon runs and the guards go."""
        return tuple(e for e in self.endpoints if e.local)

    @property
    def remote(self) -> Endpoint | None:
        """The real remote gateway, when the lab's one site is attached to one."""
        return next((e for e in self.endpoints if not e.local), None)

    def peer(self, node: str) -> Endpoint:
        return self.responder if node == self.initiator.node else self.initiator

    @property
    def inner_families(self) -> tuple[Family, ...]:
        return tuple(f for f in Family if any(Family.of(n) is f
                                              for n in self.initiator.selectors))

    @property
    def proposal(self) -> str:
        """The proposals as asked, as results record them."""
        return f"ike={self.ike.text} esp={self.esp.text}"


@dataclass(frozen=True)
class TlsPlan:
    """DICOM TLS (PS3.15 Annex B) between the DICOM programs: the profile, one TLS 1.2 suite
    when the topology pins one, the port every listener uses, and whether the nodes need RSA
    certificates (RSA key transport, or an RSA-authenticated suite)."""

    profile: str
    cipher: str | None
    port: int
    rsa: bool

    @property
    def label(self) -> str:
        return self.profile + (f" {self.cipher}" if self.cipher else "")


@dataclass(frozen=True)
class SecurityPlan:
    """What protects a lab, for everyone who needs to know after ``up``."""

    mode: SecurityMode
    label: str  # the topology's security, as tables print it
    ipsec: IpsecPlan | None = None
    tls: TlsPlan | None = None

    @property
    def pacs_port(self) -> int:
        return self.tls.port if self.tls else PACS_PORT

    @property
    def receiver_port(self) -> int:
        return self.tls.port if self.tls else RECEIVER_PORT

    @property
    def profile(self) -> str:
        """The protection as result rows name it: the TLS profile (and the transition tunnel it
        runs in), or the IPsec proposals; empty in clear."""
        if self.tls is not None:
            return self.tls.label + (" (in the IPsec transition tunnel)" if self.ipsec else "")
        return self.ipsec.proposal if self.ipsec else ""
