"""The lab's data model: frozen dataclasses, pure data, no I/O.

A :class:`Topology` is fully resolved: every node knows its interfaces, addresses and static
routes, and the physical wiring (veth pairs and the bridges on the gateways) is spelled out, so a
backend only has to make it real. ``lab.topology`` builds it from a file; nothing here reads files,
settings or the system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from lab.model.dicom import TLS_PORT
from lab.model.tls_profiles import DEFAULT_PROFILE

IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface
IPAddress = IPv4Address | IPv6Address


class Family(StrEnum):
    """An IP address family."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @property
    def version(self) -> int:
        return 4 if self is Family.IPV4 else 6

    @property
    def label(self) -> str:
        return "IPv4" if self is Family.IPV4 else "IPv6"

    @classmethod
    def of(cls, value: IPNetwork | IPInterface | IPAddress) -> Family:
        return cls.IPV4 if value.version == 4 else cls.IPV6


class Role(StrEnum):
    """What a node is for. Hosts sit on a site LAN; gateways and the WAN router forward."""

    MODALITY = "modality"
    PACS = "pacs"
    WORKSTATION = "workstation"
    GATEWAY = "gateway"
    WAN = "wan"

    @property
    def is_router(self) -> bool:
        return self in (Role.GATEWAY, Role.WAN)


class SegmentKind(StrEnum):
    LAN = "lan"
    WAN = "wan"
    UPLINK = "uplink"  # a real network outside the lab, reached through a host interface


class UplinkMode(StrEnum):
    """How a gateway joins a real network through a host interface: a macvlan on it (the host
    keeps the interface and its addresses), or the interface itself moved into the gateway
    (and back, with its addresses, when the lab goes)."""

    MACVLAN = "macvlan"
    MOVE = "move"


@dataclass(frozen=True)
class Uplink:
    """The host interface behind a gateway's uplink interface, and how it is attached."""

    host_interface: str
    mode: UplinkMode = UplinkMode.MACVLAN


class SecurityMode(StrEnum):
    NONE = "none"
    IPSEC = "ipsec"
    TLS = "tls"


@dataclass(frozen=True)
class Segment:
    """One layer-2 network: a site LAN, or one WAN link between a gateway and the WAN router."""

    name: str
    kind: SegmentKind
    site: str
    prefixes: tuple[IPNetwork, ...]
    mtu: int

    @property
    def families(self) -> frozenset[Family]:
        return frozenset(Family.of(p) for p in self.prefixes)

    def prefix(self, family: Family) -> IPNetwork | None:
        return next((p for p in self.prefixes if Family.of(p) is family), None)


@dataclass(frozen=True)
class Interface:
    """An interface inside a node; ``bridge``: a bridge whose ports are wires of the segment."""

    name: str
    segment: str
    addresses: tuple[IPInterface, ...]
    mtu: int
    bridge: bool = False
    uplink: Uplink | None = None  # set on a gateway's interface to a real network

    def address(self, family: Family) -> IPInterface | None:
        return next((a for a in self.addresses if Family.of(a) is family), None)


@dataclass(frozen=True)
class Route:
    """A static route; ``destination`` 0.0.0.0/0 or ::/0 is a default route."""

    destination: IPNetwork
    gateway: IPAddress
    interface: str


@dataclass(frozen=True)
class Node:
    name: str
    role: Role
    site: str | None
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()

    @property
    def forwarding(self) -> bool:
        return self.role.is_router

    def addresses(self, family: Family | None = None) -> tuple[IPInterface, ...]:
        return tuple(
            a
            for i in self.interfaces
            for a in i.addresses
            if family is None or Family.of(a) is family
        )

    def interface(self, name: str) -> Interface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise KeyError(f"node {self.name} has no interface {name}")


@dataclass(frozen=True)
class Port:
    """One end of a wire: an interface name in a node, optionally enslaved to a bridge there."""

    node: str
    ifname: str
    bridge: str | None = None


@dataclass(frozen=True)
class Wire:
    """A point-to-point cable (a veth pair in the netns backend)."""

    segment: str
    a: Port
    b: Port


@dataclass(frozen=True)
class Site:
    name: str
    description: str
    lan: str
    gateway: str
    hosts: tuple[str, ...]


class IpsecScope(StrEnum):
    """Where IPsec protects: between the two gateways (tunnel mode, site prefixes as traffic
    selectors), or end to end between the modality and the PACS."""

    SITE_TO_SITE = "site-to-site"
    HOST_TO_HOST = "host-to-host"


class IpsecAuth(StrEnum):
    PSK = "psk"  # a pre-shared key, made per lab unless the topology gives one
    CERT = "cert"  # certificates from the lab CA (RFC 7296 2.15, RFC 4945)


@dataclass(frozen=True)
class RemotePeer:
    """A real IKE peer that takes the place of the lab's second site: its address and IKE
    identity (RFC 7296 3.5), the lab gateway's identity towards it, how the two authenticate
    (a pre-shared key, or certificates: the CA that signed the remote's and the gateway's own
    certificate and key, as files), and the remote LAN prefixes behind it (its traffic
    selectors, RFC 7296 2.9)."""

    address: IPAddress
    identity: str
    selectors: tuple[IPNetwork, ...]
    local_identity: str | None = None  # None: the gateway's node name
    auth: IpsecAuth = IpsecAuth.PSK
    psk: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class IpsecSettings:
    """IKEv2 and ESP choices, as strongSwan proposal strings (algorithms joined by ``-``, e.g.
    ``aes256-sha256-modp2048`` for IKE, ``aes256gcm16`` or ``aes128-sha1-modp2048`` for ESP; a DH
    group in the ESP proposal asks for PFS)."""

    scope: IpsecScope = IpsecScope.SITE_TO_SITE
    auth: IpsecAuth = IpsecAuth.PSK
    ike: str = "aes256-sha256-modp2048"
    esp: str = "aes256gcm16"
    psk: str | None = None  # None: a random key per lab
    remote: RemotePeer | None = None  # a real peer in place of the second site


@dataclass(frozen=True)
class TlsSettings:
    """DICOM TLS (PS3.15 Annex B) profile and the port the TLS listeners use (2762: the
    registered port of DICOM over TLS, PS3.15 B.1)."""

    profile: str = DEFAULT_PROFILE
    port: int = TLS_PORT
    cipher: str | None = None  # one TLS 1.2 suite of the profile (OpenSSL name): forces TLS 1.2


@dataclass(frozen=True)
class Security:
    mode: SecurityMode = SecurityMode.NONE
    ipsec: IpsecSettings = IpsecSettings()
    tls: TlsSettings = TlsSettings()

    @property
    def label(self) -> str:
        """Short description for tables and result rows."""
        if self.mode is SecurityMode.IPSEC:
            s = self.ipsec
            to = f" to {s.remote.identity}@{s.remote.address}" if s.remote else ""
            auth = s.remote.auth if s.remote else s.auth
            return f"ipsec {s.scope.value}{to} {auth.value} ike={s.ike} esp={s.esp}"
        if self.mode is SecurityMode.TLS:
            cipher = f" cipher {self.tls.cipher}" if self.tls.cipher else ""
            return f"tls {self.tls.profile}{cipher} port {self.tls.port}"
        return "none"


@dataclass(frozen=True)
class WanProfile:
    """Impairments of one direction of the WAN path (netem's vocabulary; delay is one-way, so a
    round trip takes twice the delay). Zero means "not impaired"; ``rate_mbit`` 0 is unlimited and
    ``limit`` 0 means "sized from rate x delay" (lab.model.wan.queue_limit)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    loss_corr_pct: float = 0.0
    rate_mbit: float = 0.0
    reorder_pct: float = 0.0
    duplicate_pct: float = 0.0
    corrupt_pct: float = 0.0
    limit: int = 0

    @property
    def impaired(self) -> bool:
        return self != WanProfile()


@dataclass(frozen=True)
class Wan:
    """The WAN's impairments: ``forward`` from the first site to the second, ``reverse`` back.
    ``name``: the preset or profile name ('' = unimpaired)."""

    name: str = ""
    forward: WanProfile = field(default_factory=WanProfile)
    reverse: WanProfile = field(default_factory=WanProfile)

    @property
    def impaired(self) -> bool:
        return self.forward.impaired or self.reverse.impaired


@dataclass(frozen=True)
class Probe:
    """An expected reachability: ``source`` must get an echo reply from ``target``."""

    source: str
    destination: str
    target: IPAddress

    @property
    def family(self) -> Family:
        return Family.of(self.target)


@dataclass(frozen=True)
class Topology:
    name: str
    source: str
    description: str
    sites: tuple[Site, ...]
    wan_router: str
    segments: tuple[Segment, ...]
    nodes: tuple[Node, ...]
    wires: tuple[Wire, ...]
    security: Security = field(default_factory=Security)
    notes: tuple[str, ...] = ()
    wan: Wan = field(default_factory=Wan)
    #: When the lab's DICOM stores (the PACS, the receivers of C-MOVE results) flush a received
    #: object to disk: "none" (never: safe from a crash of the program) or "object" (before
    #: answering its C-STORE: safe from a power cut). See lab.dicom.pacs --sync.
    archive_sync: str = "none"

    @property
    def remote(self) -> RemotePeer | None:
        """The real IKE peer this lab's one site is attached to, if any."""
        return self.security.ipsec.remote

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(name)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def families(self) -> frozenset[Family]:
        return frozenset(f for s in self.segments for f in s.families)
