"""Gateways attached to a real network through a host interface (netns backend).

``mode: macvlan``: a macvlan (Linux's "MAC-based VLAN": a second MAC address on the host
interface, in bridge mode) is created directly inside the gateway's network namespace: the
kernel's RTM_NEWLINK takes the parent's index in the caller's namespace and
``IFLA_NET_NS_FD`` for the new device's home, so the device never exists in the host's
namespace, not even for a moment, and goes with the gateway's namespace when the lab is
removed (``down``, or ``clean`` after a crash): there is nothing on the host to find or
restore. The host keeps its interface, its addresses and routes.

``mode: move``: the host interface itself moves into the gateway's namespace (renamed
``uplink`` in the same netlink request, so it is never half-moved). Before it moves, its name,
MAC address, namespace, MTU, addresses and routes are written to ``uplinks.json`` in the lab's
state folder (:class:`MovedInterface`): ``down`` (and ``clean``, which calls it by the lab's
name after a crash) reads that file alone and moves the interface back under its name, with its
addresses and routes, before the gateway's namespace is deleted. Without that, deleting the
namespace would destroy a virtual interface and hand a physical one back under a made-up name.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from lab.errors import LabError
from lab.host import files
from lab.model.names import LabPaths
from lab.model.topology import Interface, Node, Topology, UplinkMode

#: The ``operstate`` values of a host interface that can carry a macvlan's traffic.
USABLE_STATES = ("UP", "UNKNOWN")


def uplinks(topology: Topology) -> Iterator[tuple[Node, Interface]]:
    """Every (gateway, interface) of ``topology`` that is attached to a host interface."""
    for node in topology.nodes:
        for iface in node.interfaces:
            if iface.uplink is not None:
                yield node, iface


def check_host_interfaces(topology: Topology) -> None:
    """Every named host interface exists in the host's namespace and is up; LabError naming
    the gateway and the interface otherwise (nothing is made before this passes)."""
    problems = []
    with IPRoute() as ipr:
        for node, iface in uplinks(topology):
            assert iface.uplink is not None
            name = iface.uplink.host_interface
            found = ipr.link_lookup(ifname=name)
            if not found:
                problems.append(f"{node.name}: host interface {name!r} (its uplink) does not "
                                "exist in the host's network namespace")
                continue
            if iface.uplink.mode is UplinkMode.MOVE and _carries_default_route(ipr, found[0]):
                problems.append(f"{node.name}: host interface {name!r} carries this host's "
                                "default route; moving it into the lab would cut the host off "
                                "(use mode: macvlan, or a dedicated interface)")
            state = ipr.get_links(found[0])[0].get("operstate")
            if iface.uplink.mode is UplinkMode.MACVLAN and state not in USABLE_STATES:
                problems.append(f"{node.name}: host interface {name!r} (its uplink) is "
                                f"{state}; bring it up first")
    if problems:
        raise LabError("cannot attach the lab to the real network:\n  " + "\n  ".join(problems))


def _carries_default_route(ipr: IPRoute, index: int) -> bool:
    return any(r["dst_len"] == 0 for family in (2, 10)
               for r in ipr.get_routes(family=family, oif=index, table=RT_TABLE_MAIN))


RECORD = "uplinks.json"
#: The host's network namespace: the orchestrator's own (``up``, ``down`` and ``clean`` run
#: there), where a moved interface comes from and goes back; its inode is recorded and checked.
HOST_NETNS = Path("/proc/self/ns/net")
RT_PROTO_KERNEL = 2  # routes the kernel made itself (from an address): not restored
RT_TABLE_MAIN = 254


class Address(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    prefixlen: int
    family: int


class HostRoute(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    family: int
    dst: str | None  # None: a default route
    dst_len: int
    gateway: str | None
    priority: int | None


class MovedInterface(BaseModel):
    """A host interface moved into a gateway: everything needed to put it back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: str  # the gateway it went to
    inside: str  # its name there
    name: str  # its name on the host
    mac: str
    netns_inode: int  # the host namespace it came from
    mtu: int
    up: bool
    addresses: tuple[Address, ...]
    routes: tuple[HostRoute, ...]


class MovedRecord(BaseModel):
    """``uplinks.json``: the host interfaces a lab moved, in the order it moved them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    moved: tuple[MovedInterface, ...] = ()


def create_uplinks(paths: LabPaths, topology: Topology) -> None:
    """Each uplink: a macvlan on the named host interface, created inside the gateway's
    namespace under the model's interface name, or the host interface itself moved there
    (recorded first); the backend's configuration then addresses it."""
    with IPRoute() as ipr:
        for node, iface in uplinks(topology):
            assert iface.uplink is not None
            if iface.uplink.mode is UplinkMode.MOVE:
                _move_in(ipr, paths, node.name, iface)
                continue
            parent = ipr.link_lookup(ifname=iface.uplink.host_interface)
            if not parent:
                raise LabError(f"{node.name}: host interface {iface.uplink.host_interface!r} "
                               "disappeared")
            fd = os.open(paths.netns(node.name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("add", ifname=iface.name, kind="macvlan", link=parent[0],
                         macvlan_mode="bridge", net_ns_fd=fd, mtu=iface.mtu)
            except NetlinkError as exc:
                raise LabError(f"{node.name}: cannot create a macvlan on host interface "
                               f"{iface.uplink.host_interface!r}: {exc.args[-1]}") from None
            finally:
                os.close(fd)


def read_record(paths: LabPaths) -> MovedRecord:
    """The host interfaces the lab moved (none when it moved none)."""
    target = paths.state_dir / RECORD
    if not target.exists():
        return MovedRecord()
    try:
        return MovedRecord.model_validate_json(target.read_text(encoding="utf-8"))
    except (ValueError, ValidationError) as exc:
        raise LabError(f"{target} is damaged ({exc}); the interfaces it names may still be in "
                       "the lab's gateways") from None


def _describe(ipr: IPRoute, index: int, node: str, inside: str) -> MovedInterface:
    link = ipr.get_links(index)[0]
    addrs = tuple(Address(address=a.get_attr("IFA_ADDRESS"), prefixlen=a["prefixlen"],
                          family=a["family"])
                  for a in ipr.get_addr(index=index) if a["scope"] == 0)
    # The routes the kernel makes itself (from the addresses, link-local) come back alone.
    routes = tuple(
        HostRoute(family=r["family"], dst=r.get_attr("RTA_DST"), dst_len=r["dst_len"],
                  gateway=r.get_attr("RTA_GATEWAY"), priority=r.get_attr("RTA_PRIORITY"))
        for family in (2, 10)
        for r in ipr.get_routes(family=family, oif=index, table=RT_TABLE_MAIN)
        if r["proto"] != RT_PROTO_KERNEL
        and not str(r.get_attr("RTA_DST") or "").startswith(("fe80", "ff00")))
    return MovedInterface(node=node, inside=inside, name=link.get_attr("IFLA_IFNAME"),
                          mac=link.get_attr("IFLA_ADDRESS"),
                          netns_inode=os.stat(HOST_NETNS).st_ino, mtu=link.get_attr("IFLA_MTU"),
                          up=bool(link["flags"] & 1), addresses=addrs, routes=routes)


def _move_in(ipr: IPRoute, paths: LabPaths, node: str, iface: Interface) -> None:
    """Record the host interface, then move it into ``node`` under ``iface.name``."""
    assert iface.uplink is not None
    found = ipr.link_lookup(ifname=iface.uplink.host_interface)
    if not found:
        raise LabError(f"{node}: host interface {iface.uplink.host_interface!r} disappeared")
    moved = _describe(ipr, found[0], node, iface.name)
    record = read_record(paths)
    files.write_json(paths.state_dir / RECORD, MovedRecord(moved=(*record.moved, moved)))
    fd = os.open(paths.netns(node), os.O_RDONLY | os.O_CLOEXEC)
    try:
        ipr.link("set", index=found[0], state="down")
        ipr.link("set", index=found[0], net_ns_fd=fd, ifname=iface.name)
    except NetlinkError as exc:
        raise LabError(f"{node}: cannot move host interface {moved.name!r} into the gateway: "
                       f"{exc.args[-1]}") from None
    finally:
        os.close(fd)


def restore_moved(paths: LabPaths) -> list[str]:
    """Put every recorded interface back on the host, by name, with its addresses and routes
    (before the gateways' namespaces go); a line per interface moved back. Safe to repeat: an
    interface already home only gets its settings checked."""
    done = []
    for moved in read_record(paths).moved:
        here = os.stat(HOST_NETNS).st_ino
        if here != moved.netns_inode:
            raise LabError(f"host interface {moved.name} of {moved.node} came from network "
                           f"namespace {moved.netns_inode}, not this one ({here}): run "
                           "'teleradlab down' from the namespace that ran 'up'")
        if _bring_home(paths, moved):
            done.append(f"host interface {moved.name} moved back from {moved.node}")
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=moved.name)
            if found:
                _restore_settings(ipr, found[0], moved)
    return done


def _bring_home(paths: LabPaths, moved: MovedInterface) -> bool:
    """Move the interface from the gateway to the host namespace under its own name; False
    when it is not in the gateway (already home, or the namespace is gone)."""
    ns = paths.netns(moved.node)
    if not ns.exists():
        return False
    with IPRoute(netns=str(ns), flags=0) as inner:
        found = [link["index"] for link in inner.get_links()
                 if link.get_attr("IFLA_ADDRESS") == moved.mac
                 and link.get_attr("IFLA_IFNAME") == moved.inside]
        if not found:
            return False
        fd = os.open(HOST_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            inner.link("set", index=found[0], state="down")
            inner.link("set", index=found[0], net_ns_fd=fd, ifname=moved.name)
        finally:
            os.close(fd)
    return True


def _restore_settings(ipr: IPRoute, index: int, moved: MovedInterface) -> None:
    """MTU, state, addresses and routes as recorded (what is already there is kept)."""
    ipr.link("set", index=index, mtu=moved.mtu, state="up" if moved.up else "down")
    for a in moved.addresses:
        _ignore_exists(ipr.addr, "add", index=index, address=a.address, prefixlen=a.prefixlen)
    for r in moved.routes if moved.up else ():
        spec: dict[str, Any] = {"family": r.family, "oif": index, "dst_len": r.dst_len}
        spec.update({k: v for k, v in (("dst", r.dst), ("gateway", r.gateway),
                                       ("priority", r.priority)) if v is not None})
        _ignore_exists(ipr.route, "add", **spec)


def _ignore_exists(call: Any, *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise
