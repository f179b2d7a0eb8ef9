"""What a topology becomes on docker, as pure data: one network per segment, one container per
node, and the small shell script each container runs first. The docker backend makes this plan
real through the engine's API; ``teleradlab compose`` writes the same plan as a compose file, so
a lab brought up by hand is the lab the backend builds.

Docker and the model differ in three ways, which the node script settles:

- the engine names a container's interfaces ``eth0``, ``eth1``, ... in an order it chooses; the
  script finds each interface by the address the engine gave it and renames it to the model's
  name (``lan``, ``wan``, ``gw-a``), then puts the model's addresses on it (IPv6 without DAD);
- docker 20.10 gives every network an IPv4 subnet, so an IPv6-only segment gets a placeholder
  subnet from ``PLACEHOLDER_POOL`` (inside 198.18.0.0/15, RFC 2544) and the script removes those
  IPv4 addresses again; an IPv4-only segment gets no IPv6 address at all, not even link-local;
- the engine puts an address of every network on its host-side bridge; the plan chooses one the
  topology does not use (the highest in the prefix). Networks are ``internal``: no route out.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network

from lab.backends.base import TCP_WMEM
from lab.backends.docker.images import image_for
from lab.errors import LabError
from lab.model.topology import Family, IPAddress, IPInterface, IPNetwork, Node, Role, Topology

LABEL = "teleradlab.lab"
NODE_LABEL = "teleradlab.node"
PLACEHOLDER_POOL = IPv4Network("198.19.240.0/20")
PLACEHOLDER_PREFIX = 26
READY_FILE = "teleradlab-ready"  # written into the node's /run when its script has finished
IFNAMES_FILE = "teleradlab-ifnames"  # in the node's /run: "MODEL_NAME ENGINE_NAME" per line
PYTHON = "/opt/teleradlab/bin/python"  # the lab's Python inside every image
NODE_PATH = "/opt/teleradlab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class NetworkPlan:
    segment: str
    subnets: tuple[tuple[IPNetwork, IPAddress], ...]  # (subnet, the engine's bridge address)
    ipv6: bool
    mtu: int


@dataclass(frozen=True)
class Attachment:
    segment: str
    ifname: str
    ipv4: IPInterface | None  # what the engine is asked to assign (None: its choice)
    ipv6: IPInterface | None


@dataclass(frozen=True)
class ContainerPlan:
    node: str
    role: Role
    image: str  # an image name of lab.backends.docker.images (host, gateway, wan)
    attachments: tuple[Attachment, ...]
    sysctls: tuple[tuple[str, str], ...]
    tun: bool  # needs /dev/net/tun (strongSwan's kernel-libipsec)
    script: str


@dataclass(frozen=True)
class Plan:
    networks: tuple[NetworkPlan, ...]
    containers: tuple[ContainerPlan, ...]


def _bridge_address(prefix: IPNetwork, used: set[IPAddress], segment: str) -> IPAddress:
    """The highest host address of ``prefix`` that no node uses."""
    last = prefix.broadcast_address - 1  # the engine takes neither end of a prefix
    for offset in range(64):
        candidate = last - offset
        if candidate not in prefix or candidate == prefix.network_address:
            break
        if candidate not in used:
            return candidate
    raise LabError(
        f"segment {segment}: the docker backend needs one free address in {prefix} for the "
        "engine's bridge, and every address is taken (use a larger prefix)"
    )


def placeholders(count: int, taken: Iterable[IPNetwork]) -> list[IPv4Network]:
    """``count`` IPv4 subnets from ``PLACEHOLDER_POOL`` overlapping none of ``taken``."""
    busy = [t for t in taken if t.version == 4]
    free = [s for s in PLACEHOLDER_POOL.subnets(new_prefix=PLACEHOLDER_PREFIX)
            if not any(s.overlaps(t) for t in busy)]
    if len(free) < count:
        raise LabError(f"no free placeholder subnet left in {PLACEHOLDER_POOL} for IPv6-only "
                       "docker networks (remove other docker labs first)")
    return free[:count]


def plan(topology: Topology, taken: Iterable[IPNetwork] = ()) -> Plan:
    """The networks and containers of ``topology``; ``taken``: subnets already in use on the
    engine (placeholders avoid them)."""
    used = {a.ip for n in topology.nodes for a in n.addresses()}
    v6_only = [s for s in topology.segments if s.families == {Family.IPV6}]
    spare = iter(placeholders(len(v6_only), [*taken, *(p for s in topology.segments
                                                       for p in s.prefixes)]))
    networks = []
    for seg in topology.segments:
        prefixes: list[IPNetwork] = list(seg.prefixes)
        if seg in v6_only:
            prefixes.insert(0, next(spare))
        subnets = tuple((p, _bridge_address(p, used, seg.name)) for p in prefixes)
        networks.append(NetworkPlan(seg.name, subnets, Family.IPV6 in seg.families, seg.mtu))
    containers = tuple(_container(topology, node) for node in topology.nodes)
    return Plan(tuple(networks), containers)


def _container(topology: Topology, node: Node) -> ContainerPlan:
    attachments = tuple(
        Attachment(i.segment, i.name, i.address(Family.IPV4), i.address(Family.IPV6))
        for i in node.interfaces
    )
    # The engine makes the interfaces (eth0, eth1, ...) before these apply: name them too.
    sysctls = [(f"net.ipv6.conf.{dev}.accept_dad", "0")
               for dev in ("all", "default", *(f"eth{i}" for i in range(len(attachments))))]
    sysctls.append(("net.ipv6.conf.all.disable_ipv6", "0"))
    if node.forwarding:
        sysctls += [("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")]
    else:  # an end host: room for autotuning to fill the longest WAN preset (as netns does)
        sysctls.append(("net.ipv4.tcp_wmem", TCP_WMEM))
    return ContainerPlan(node.name, node.role, image_for(node.role), attachments, tuple(sysctls),
                         node.role is Role.GATEWAY, node_script(topology, node))


def node_script(topology: Topology, node: Node) -> str:
    """The shell script a node's container runs first: interfaces renamed and addressed as in
    the model, static routes, a ready mark in /run, then it idles until stopped (by SIGKILL: as
    process 1 of its container it ignores SIGTERM)."""
    q = shlex.quote
    lines = [
        "set -eu",
        "# rename ADDRESS NAME: give the interface that has ADDRESS the model's name (and note",
        "# the engine's name, which it needs back to release the interface when removing us)",
        "rename() {",
        '  dev=$(ip -o addr show to "$1" | awk \'{print $2; exit}\')',
        '  [ -n "$dev" ] || { echo "no interface has address $1" >&2; exit 1; }',
        '  [ "$dev" = "$2" ] && return',
        '  ip link set dev "$dev" down; ip link set dev "$dev" name "$2"',
        f'  echo "$2 $dev" >>/run/{IFNAMES_FILE}',
        "}",
    ]
    for iface in node.interfaces:
        name = q(iface.name)
        lines.append(f"rename {iface.addresses[0].ip} {name}")
        families = topology.segment(iface.segment).families
        if Family.IPV6 in families:
            lines.append(f"ip addr flush dev {name} scope global")
        else:
            lines += [f"ip link set dev {name} addrgenmode none", f"ip addr flush dev {name}"]
        lines.append(f"ip link set dev {name} mtu {iface.mtu} up")
        for addr in iface.addresses:
            extra = " nodad" if addr.version == 6 else ""
            lines.append(f"ip addr add {addr.with_prefixlen} dev {name}{extra}")
    for route in node.routes:
        fam = "-6" if route.destination.version == 6 else "-4"
        lines.append(f"ip {fam} route replace {route.destination} via {route.gateway} "
                     f"dev {q(route.interface)}")
    lines += [
        f"touch /run/{READY_FILE}",
        "exec sleep infinity",
    ]
    return "\n".join(lines) + "\n"


def subnets_of(ipam_configs: Iterable[dict[str, str]]) -> list[IPNetwork]:
    """The subnets of a docker network's IPAM configuration."""
    return [ip_network(c["Subnet"]) for c in ipam_configs if c.get("Subnet")]
