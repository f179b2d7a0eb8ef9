"""Prefixes and addresses: defaults, explicit values, and their consistency checks.

Defaults come from ranges reserved for exactly this use and never routed on the Internet:
IPv4 198.18.0.0/15 (RFC 2544, benchmarking) and IPv6 2001:db8::/32 (RFC 3849, documentation).
Site number *i* (1 or 2, in file order) gets LAN 198.18.i.0/24 and 2001:db8:i::/64, and its WAN
link 198.19.i.0/24 and 2001:db8:ff0i::/64. On a LAN the gateway takes the first address and the
*n*-th host (from 0) the address 10 + n (IPv4, ``.10``) or 0x10 + n (IPv6, ``::10``, so both
read alike); on a WAN link the WAN router takes the first address and
the gateway the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)

from lab.model.topology import Family, IPInterface, IPNetwork
from lab.topology.schema import TopologySpec, WanSpec, families_of

#: Smallest MTU an IPv6 link may have (RFC 8200, section 5).
IPV6_MIN_MTU = 1280
FIRST_HOST_OFFSET = {Family.IPV4: 10, Family.IPV6: 0x10}


class AllocationError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Allocation:
    """Resolved prefixes per segment and addresses per (node, segment)."""

    prefixes: dict[str, tuple[IPNetwork, ...]] = field(default_factory=dict)
    addresses: dict[tuple[str, str], tuple[IPInterface, ...]] = field(default_factory=dict)
    mtu: dict[str, int] = field(default_factory=dict)


def default_prefix(family: Family, kind: str, index: int) -> IPNetwork:
    if family is Family.IPV4:
        return IPv4Network(f"198.{18 if kind == 'lan' else 19}.{index}.0/24")
    return IPv6Network(f"2001:db8:{index}::/64" if kind == "lan" else f"2001:db8:ff0{index}::/64")


class _Allocator:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.result = Allocation()
        self._prefix_paths: list[tuple[IPNetwork, str]] = []

    def prefix(
        self,
        path: str,
        value: str | None,
        family: Family,
        allowed: tuple[Family, ...],
        fallback: IPNetwork,
    ) -> IPNetwork | None:
        """Parse one segment prefix; record problems; return None if it is not usable."""
        if value is None:
            net: IPNetwork = fallback
        elif family not in allowed:
            self.problems.append(
                f"{path}: {value!r} is an {family.label} prefix but this segment "
                f"is {'/'.join(f.label for f in allowed)}-only"
            )
            return None
        else:
            try:
                net = ip_network(value, strict=True)
            except ValueError as exc:
                self.problems.append(
                    f"{path}: {value!r} is not a valid {family.label} prefix ({exc})"
                )
                return None
            if Family.of(net) is not family:
                self.problems.append(f"{path}: {value!r} is not an {family.label} prefix")
                return None
        if family not in allowed:
            return None
        if net.num_addresses < 4:
            self.problems.append(f"{path}: {value!r} is too small (need at least 4 addresses)")
            return None
        for other, other_path in self._prefix_paths:
            if net.version == other.version and net.overlaps(other):
                what = repr(str(net)) if value is not None else f"the default prefix {net}"
                self.problems.append(f"{path}: {what} overlaps {other_path} ({other})")
                return None
        self._prefix_paths.append((net, path if value is not None else f"{path} (default)"))
        return net

    def address(
        self,
        path: str,
        value: str | None,
        net: IPNetwork | None,
        family: Family,
        offset: int,
        taken: dict[str, str],
    ) -> IPInterface | None:
        """Resolve one node address on a segment (explicit or by offset in the prefix)."""
        if net is None:
            if value is not None:
                self.problems.append(
                    f"{path}: {value!r} given but the segment has no "
                    f"{family.label} (its family does not include it)"
                )
            return None
        if value is None:
            if offset >= net.num_addresses - 1:
                self.problems.append(f"{path}: prefix {net} has no room for a default address")
                return None
            ip = net.network_address + offset
        else:
            try:
                ip = ip_address(value)
            except ValueError:
                self.problems.append(f"{path}: {value!r} is not a valid {family.label} address")
                return None
            if ip.version != net.version:
                self.problems.append(f"{path}: {value!r} is not an {family.label} address")
                return None
            if ip not in net:
                self.problems.append(f"{path}: {value!r} is outside the segment prefix {net}")
                return None
            if ip == net.network_address or (
                isinstance(ip, IPv4Address) and ip == net.broadcast_address
            ):
                self.problems.append(
                    f"{path}: {value!r} is the network or broadcast address of {net}"
                )
                return None
        if str(ip) in taken:
            what = "address" if value is not None else "default address"
            self.problems.append(f"{path}: {what} {ip} is already used by {taken[str(ip)]}")
            return None
        taken[str(ip)] = path if value is not None else f"{path} (default)"
        return ip_interface(f"{ip}/{net.prefixlen}")


def _segment(
    al: _Allocator,
    seg: str,
    path: str,
    values: dict[str, str | None],
    allowed: tuple[Family, ...],
    kind: str,
    index: int,
    mtu: tuple[str, int],
) -> dict[Family, IPNetwork | None]:
    """Resolve a segment's prefixes. A family the segment carries but whose prefix is invalid
    maps to None, so that its addresses are skipped rather than reported a second time."""
    nets: dict[Family, IPNetwork | None] = {}
    for family in Family:
        net = al.prefix(
            f"{path}.{family}", values[family], family, allowed, default_prefix(family, kind, index)
        )
        if net is not None or family in allowed:
            nets[family] = net
    mtu_path, mtu_value = mtu
    problem = (
        f"{mtu_path}: {mtu_value} is below the IPv6 minimum link MTU of {IPV6_MIN_MTU} (RFC 8200)"
    )
    # The WAN's one mtu applies to both links: report it once.
    if Family.IPV6 in nets and mtu_value < IPV6_MIN_MTU and problem not in al.problems:
        al.problems.append(problem)
    al.result.prefixes[seg] = tuple(n for f in Family if (n := nets.get(f)) is not None)
    al.result.mtu[seg] = mtu_value
    return nets


def _assign(
    al: _Allocator,
    node: str,
    seg: str,
    path: str,
    values: dict[str, str | None],
    nets: dict[Family, IPNetwork | None],
    offset: int | dict[Family, int],
    taken: dict[Family, dict[str, str]],
) -> None:
    addrs = []
    for family in Family:
        if family in nets and nets[family] is None:
            continue  # the segment's prefix for this family is invalid, already reported
        off = offset[family] if isinstance(offset, dict) else offset
        a = al.address(
            f"{path}.{family}", values[family], nets.get(family), family, off, taken[family]
        )
        if a is not None:
            addrs.append(a)
    al.result.addresses[(node, seg)] = tuple(addrs)


def allocate(spec: TopologySpec) -> Allocation:
    """Resolve every prefix and address, or raise AllocationError listing every problem."""
    al = _Allocator()
    for index, (site, s) in enumerate(spec.sites.items(), start=1):
        lan_families = families_of(s.lan.family)
        lan = f"lan-{site}"
        nets = _segment(
            al,
            lan,
            f"sites.{site}.lan",
            {"ipv4": s.lan.ipv4, "ipv6": s.lan.ipv6},
            lan_families,
            "lan",
            index,
            (f"sites.{site}.lan.mtu", s.lan.mtu),
        )
        taken: dict[Family, dict[str, str]] = {f: {} for f in Family}
        gw = s.gateway.name or f"gw-{site}"
        _assign(
            al,
            gw,
            lan,
            f"sites.{site}.gateway",
            {"ipv4": s.gateway.ipv4, "ipv6": s.gateway.ipv6},
            nets,
            1,
            taken,
        )
        for n, host in enumerate(s.hosts):
            _assign(
                al,
                host.name,
                lan,
                f"sites.{site}.hosts[{n}]",
                {"ipv4": host.ipv4, "ipv6": host.ipv6},
                nets,
                {f: o + n for f, o in FIRST_HOST_OFFSET.items()},
                taken,
            )
        if spec.wan is not None:
            _wan_link(al, spec.wan, site, gw, index)
    if al.problems:
        raise AllocationError(al.problems)
    return al.result


def _wan_link(al: _Allocator, wan_spec: WanSpec, site: str, gw: str, index: int) -> None:
    """The WAN link of ``site``: its prefixes, the router's and the gateway's addresses."""
    wan_families = families_of(wan_spec.family)
    link = wan_spec.links.get(site)
    wan = f"wan-{site}"
    wnets = _segment(
        al,
        wan,
        f"wan.links.{site}",
        {"ipv4": link.ipv4 if link else None, "ipv6": link.ipv6 if link else None},
        wan_families,
        "wan",
        index,
        ("wan.mtu", wan_spec.mtu),
    )
    wtaken: dict[Family, dict[str, str]] = {f: {} for f in Family}
    none: dict[str, str | None] = {"ipv4": None, "ipv6": None}
    _assign(
        al,
        wan_spec.router,
        wan,
        f"wan.links.{site} ({wan_spec.router})",
        none,
        wnets,
        1,
        wtaken,
    )
    _assign(al, gw, wan, f"wan.links.{site} ({gw})", none, wnets, 2, wtaken)
