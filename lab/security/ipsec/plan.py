"""The IPsec part of a lab's security plan, worked out from the model alone (pure functions):
which two nodes run IKE, on which addresses, protecting which traffic selectors
(:func:`endpoints`, called by :func:`lab.security.plan.resolve`), and the firewall guard that keeps
cleartext from crossing the WAN when the tunnel is missing."""

from __future__ import annotations

from ipaddress import ip_network

from lab.errors import IpsecError
from lab.model.plan import Endpoint, EspPath, IpsecPlan
from lab.model.routing import components
from lab.model.topology import (
    Family,
    IPAddress,
    IPNetwork,
    IpsecScope,
    Node,
    RemotePeer,
    Role,
    SegmentKind,
    Topology,
)
from lab.security.ipsec.charon import BYPASS_MARK, TUN_DEVICE

CONNECTION = "teleradlab"


#: The name a real remote gateway goes by in plans, guards' comments and messages.
REMOTE_NODE = "remote"


def _site_to_remote(topology: Topology, remote: RemotePeer) -> tuple[Endpoint, Endpoint]:
    """The one site's gateway, over its uplink, to the real remote gateway: the site's LAN
    prefixes against the remote's (RFC 7296 2.9)."""
    site = topology.sites[0]
    gw = topology.node(site.gateway)
    uplink = next(i for i in gw.interfaces if i.uplink is not None)
    address = uplink.address(Family.of(remote.address))
    if address is None:
        raise IpsecError(f"topology {topology.name}: the uplink of {gw.name} has no "
                         f"{Family.of(remote.address).label} address to reach {remote.address}")
    lan = topology.segment(site.lan)
    local = Endpoint(gw.name, address.ip, remote.local_identity or gw.name, lan.prefixes)
    return local, Endpoint(REMOTE_NODE, remote.address, remote.identity, remote.selectors,
                           local=False)


def _site_to_site(topology: Topology) -> tuple[Endpoint, Endpoint]:
    """Gateway to gateway over the WAN (IPv6 when both have it, the paper's preferred
    family), selectors the site LAN prefixes of every family."""
    gws = [topology.node(s.gateway) for s in topology.sites]
    wan_segments = {s.name for s in topology.segments if s.kind is SegmentKind.WAN}
    outer = None
    for family in (Family.IPV6, Family.IPV4):
        addrs = [_gateway_wan(gw, wan_segments, family) for gw in gws]
        if all(addrs):
            outer = [a for a in addrs if a is not None]
            break
    if outer is None:
        raise IpsecError(f"topology {topology.name}: the gateways share no WAN address family, "
                         "so IKE cannot run between them")
    ends = []
    for site, gw, addr in zip(topology.sites, gws, outer, strict=True):
        lan = topology.segment(site.lan)
        ends.append(Endpoint(gw.name, addr, gw.name, lan.prefixes))
    return ends[0], ends[1]


def _gateway_wan(gw: Node, wan_segments: set[str], family: Family) -> IPAddress | None:
    for iface in gw.interfaces:
        addr = iface.address(family)
        if iface.segment in wan_segments and addr is not None:
            return addr.ip
    return None


def _host_to_host(topology: Topology) -> tuple[Endpoint, Endpoint]:
    """Modality to PACS end to end: tunnel mode with single-host selectors (the form kernel-
    libipsec can do; kernel ESP could use transport mode). Needs a family in which the two
    reach each other without a tunnel."""
    try:
        modality = next(n for n in topology.nodes if n.role is Role.MODALITY)
        pacs = next(n for n in topology.nodes if n.role is Role.PACS)
    except StopIteration:
        raise IpsecError(f"topology {topology.name}: host-to-host IPsec needs a modality and a "
                         "pacs node") from None
    for family in (Family.IPV6, Family.IPV4):
        together = any({modality.name, pacs.name} <= group
                       for group in components(topology.nodes, family))
        if together:
            a, b = modality.addresses(family)[0].ip, pacs.addresses(family)[0].ip
            host = 32 if family is Family.IPV4 else 128
            return (Endpoint(modality.name, a, modality.name, (_net(a, host),)),
                    Endpoint(pacs.name, b, pacs.name, (_net(b, host),)))
    raise IpsecError(
        f"topology {topology.name}: host-to-host IPsec needs the modality and the PACS to reach "
        "each other without a tunnel, and here they do not (their sites' family is not carried "
        "by the WAN); use scope: site-to-site, which tunnels the sites' family across the WAN")


def _net(addr: IPAddress, length: int) -> IPNetwork:
    return ip_network(f"{addr}/{length}")


def hosts_routed(topology: Topology) -> bool:
    """Whether the modality and the PACS reach each other in some family without a tunnel."""
    ends = {n.name for n in topology.nodes if n.role in (Role.MODALITY, Role.PACS)}
    return any(ends <= group for family in (Family.IPV4, Family.IPV6)
               for group in components(topology.nodes, family))


def endpoints(topology: Topology, scope: IpsecScope) -> tuple[Endpoint, Endpoint]:
    """The two IKE peers of ``scope`` in ``topology`` (initiator first); IpsecError when the
    topology cannot do it."""
    if topology.remote is not None:
        return _site_to_remote(topology, topology.remote)
    if scope is IpsecScope.SITE_TO_SITE:
        return _site_to_site(topology)
    return _host_to_host(topology)


def guard_ruleset(plan: IpsecPlan, node: str) -> str:
    """nftables rules for ``node`` that drop traffic for the peer's selectors unless it goes
    through IPsec: fail closed, so nothing crosses in cleartext when an SA is missing.

    With kernel-libipsec protected packets must leave through the TUN device; with kernel ESP
    the route must carry an XFRM bundle (``rt ipsec``). charon's own packets carry the bypass
    mark (host-to-host selectors include the peer's address)."""
    peer = plan.peer(node)
    hook = "forward" if plan.scope is IpsecScope.SITE_TO_SITE else "output"
    libipsec = plan.esp_path is EspPath.LIBIPSEC
    protected = f'oifname != "{TUN_DEVICE}"' if libipsec else "rt ipsec missing"
    lines = []
    for net in peer.selectors:
        match = "ip daddr" if Family.of(net) is Family.IPV4 else "ip6 daddr"
        lines.append(f"    {match} {net} meta mark != {BYPASS_MARK:#x} {protected} "
                     f'counter drop comment "cleartext to {peer.node}\'s side"')
    hooks = [hook] if hook == "output" else ["forward", "output"]
    chains = "\n".join(
        f"  chain {h} {{\n    type filter hook {h} priority 0; policy accept;\n"
        + "\n".join(lines) + "\n  }" for h in hooks)
    return f"table inet teleradlab_ipsec {{\n{chains}\n}}\n"
