"""A lab site attached to a real network: the checks and the model parts of a gateway ``uplink``
and a ``security.ipsec.remote`` peer.

Such a topology has one site. Its gateway reaches the real network through a host interface
(``uplink``), and runs IKEv2 (RFC 7296) with a real remote gateway instead of the lab's second
site, whose nodes are therefore never built: the remote's LAN prefixes (``remote_ts``) are the
tunnel's far traffic selectors and are routed over the uplink, guarded like the lab's own tunnel
(nothing reaches them in cleartext). Everything here is checked before anything is created::

    sites:
      a:
        lan: {family: ipv4, ipv4: 198.18.10.0/24}
        gateway:
          uplink: {interface: eth1, mode: macvlan, address: 198.18.200.2/24,
                   gateway: 198.18.200.1}
        hosts: [{name: modality, role: modality}]
    security:
      mode: ipsec
      ipsec:
        remote: {address: 198.18.200.1, identity: remote-gw, auth: psk, psk: KEY,
                 remote_ts: [198.18.20.0/24]}
"""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

from lab.model.topology import (
    Family,
    Interface,
    IPAddress,
    IPInterface,
    IPNetwork,
    IpsecAuth,
    RemotePeer,
    Route,
    Uplink,
    UplinkMode,
)
from lab.topology.schema import IFNAME_MAX, RemoteSpec, TopologySpec, UplinkSpec

#: The name of a gateway's interface to the real network, inside its namespace.
UPLINK_IFNAME = "uplink"


def uplink_segment(site: str) -> str:
    return f"uplink-{site}"


def _address(text: str, path: str, problems: list[str]) -> IPAddress | None:
    try:
        return ip_address(text)
    except ValueError:
        problems.append(f"{path}: {text!r} is not an IP address")
        return None


def _uplink_problems(site: str, up: UplinkSpec) -> list[str]:
    path = f"sites.{site}.gateway.uplink"
    problems: list[str] = []
    if not up.interface or len(up.interface) > IFNAME_MAX or "/" in up.interface \
            or up.interface in (".", ".."):
        problems.append(f"{path}.interface: {up.interface!r} is not a Linux interface name "
                        f"(1 to {IFNAME_MAX} characters, no '/')")
    if "/" not in up.address:
        problems.append(f"{path}.address: {up.address!r} needs its prefix length "
                        "(e.g. 198.18.200.2/24)")
        return problems
    try:
        addr = ip_interface(up.address)
    except ValueError:
        problems.append(f"{path}.address: {up.address!r} is not an address with a prefix")
        return problems
    gw = _address(up.gateway, f"{path}.gateway", problems)
    if gw is not None and (gw.version != addr.version or gw not in addr.network
                           or gw == addr.ip):
        problems.append(f"{path}.gateway: {up.gateway!r} is not another address of the "
                        f"uplink's network {addr.network}")
    return problems


def _remote_problems(spec: TopologySpec, remote: RemoteSpec) -> list[str]:
    path = "security.ipsec.remote"
    problems: list[str] = []
    sec = spec.security
    if sec.mode != "ipsec":
        problems.append(f"security.mode: a remote peer ({path}) needs mode ipsec, got "
                        f"{sec.mode!r}")
    if sec.ipsec.scope != "site-to-site":
        problems.append(f"security.ipsec.scope: a remote peer is a site-to-site tunnel, got "
                        f"{sec.ipsec.scope!r}")
    if sec.ipsec.psk is not None:
        problems.append(f"security.ipsec.psk: with a remote peer the key goes in {path}.psk")
    if "auth" in sec.ipsec.model_fields_set and sec.ipsec.auth != remote.auth:
        problems.append(f"security.ipsec.auth: {sec.ipsec.auth!r} differs from {path}.auth "
                        f"{remote.auth!r} (with a remote peer, {path}.auth decides)")
    if len(spec.sites) != 1:
        problems.append(f"sites: a topology with a remote peer has exactly one site (the far "
                        f"site is the remote's), got {len(spec.sites)}")
    if spec.wan is not None:
        problems.append("wan: a site attached to a remote peer has no lab WAN; remove the "
                        "section")
    problems += _remote_credential_problems(remote)
    peer = _address(remote.address, f"{path}.address", problems)
    lans = [ip_network(p, strict=False) for s in spec.sites.values()
            for p in (s.lan.ipv4, s.lan.ipv6) if p and _is_network(p)]
    for i, text in enumerate(remote.remote_ts):
        if not _is_network(text):
            problems.append(f"{path}.remote_ts[{i}]: {text!r} is not a network prefix "
                            "(host bits must be zero, e.g. 198.18.20.0/24)")
            continue
        net = ip_network(text)
        for lan in lans:
            if lan.version == net.version and lan.overlaps(net):
                problems.append(f"{path}.remote_ts[{i}]: {text} overlaps the site LAN {lan}")
    for site, s in spec.sites.items():
        up = s.gateway.uplink
        if up is None:
            problems.append(f"sites.{site}.gateway.uplink: required with a remote peer (the "
                            "host interface that reaches it)")
        elif peer is not None and _is_interface(up.address) \
                and ip_interface(up.address).version != peer.version:
            problems.append(f"{path}.address: {remote.address} is not of the uplink's address "
                            f"family (sites.{site}.gateway.uplink.address {up.address})")
    return problems


def _remote_credential_problems(remote: RemoteSpec) -> list[str]:
    path = "security.ipsec.remote"
    problems = []
    files = {"ca": remote.ca, "cert": remote.cert, "key": remote.key}
    if remote.auth == "psk":
        if remote.psk is None:
            problems.append(f"{path}.psk: required with auth psk (the key the remote has)")
        problems += [f"{path}.{k}: only with auth cert" for k, v in files.items() if v]
    else:
        if remote.psk is not None:
            problems.append(f"{path}.psk: only with auth psk")
        problems += [f"{path}.{k}: required with auth cert (a PEM file)"
                     for k, v in files.items() if not v]
    return problems


def _is_network(text: str) -> bool:
    try:
        ip_network(text)
    except ValueError:
        return False
    return True


def _is_interface(text: str) -> bool:
    try:
        ip_interface(text)
    except ValueError:
        return False
    return True


def problems(spec: TopologySpec) -> list[str]:
    """Every problem of the uplinks and the remote peer, by field path."""
    remote = spec.security.ipsec.remote
    found: list[str] = []
    for site, s in spec.sites.items():
        if s.gateway.uplink is None:
            continue
        if remote is None:
            found.append(f"sites.{site}.gateway.uplink: an uplink needs a remote peer "
                         "(security.ipsec.remote) to talk to")
        found += _uplink_problems(site, s.gateway.uplink)
    if remote is not None:
        found += _remote_problems(spec, remote)
    return found


def uplink_interface(up: UplinkSpec, site: str) -> Interface:
    """The gateway's interface to the real network (checked by :func:`problems`)."""
    addr: IPInterface = ip_interface(up.address)
    return Interface(UPLINK_IFNAME, uplink_segment(site), (addr,), up.mtu,
                     uplink=Uplink(up.interface, UplinkMode(up.mode)))


def uplink_routes(up: UplinkSpec, remote: RemotePeer) -> tuple[Route, ...]:
    """The remote LAN prefixes (and the remote gateway, when off the uplink's network) through
    the uplink's next hop; the tunnel's own routes (charon's table) take precedence."""
    addr, via = ip_interface(up.address), ip_address(up.gateway)
    nets = [n for n in remote.selectors if n.version == via.version]
    if remote.address not in addr.network:
        nets.append(ip_network(f"{remote.address}/{remote.address.max_prefixlen}"))
    return tuple(Route(n, via, UPLINK_IFNAME) for n in nets)


def remote_peer(remote: RemoteSpec, base: Path) -> RemotePeer:
    """The model of ``remote`` (checked by :func:`problems`); files relative to ``base``."""

    def file(value: str | None) -> str | None:
        return None if value is None else str((base / value) if not Path(value).is_absolute()
                                              else Path(value))

    selectors: tuple[IPNetwork, ...] = tuple(ip_network(t) for t in remote.remote_ts)
    return RemotePeer(ip_address(remote.address), remote.identity, selectors,
                      remote.local_identity, IpsecAuth(remote.auth), remote.psk,
                      file(remote.ca), file(remote.cert), file(remote.key))


def families(remote: RemotePeer) -> frozenset[Family]:
    """The inner families the remote's selectors carry."""
    return frozenset(Family.of(n) for n in remote.selectors)
