"""Gateways attached to a real network through a host interface (netns backend).

A macvlan (Linux's "MAC-based VLAN": a second MAC address on the host interface, in bridge
mode) is created directly inside the gateway's network namespace: the kernel's RTM_NEWLINK takes
the parent's index in the caller's namespace and ``IFLA_NET_NS_FD`` for the new device's home,
so the device never exists in the host's namespace, not even for a moment, and goes with the
gateway's namespace when the lab is removed (``down``, or ``clean`` after a crash): there is
nothing on the host to find or restore. The host keeps its interface, its addresses and routes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from lab.errors import LabError
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
            state = ipr.get_links(found[0])[0].get("operstate")
            if state not in USABLE_STATES:
                problems.append(f"{node.name}: host interface {name!r} (its uplink) is "
                                f"{state}; bring it up first")
    if problems:
        raise LabError("cannot attach the lab to the real network:\n  " + "\n  ".join(problems))


def create_uplinks(paths: LabPaths, topology: Topology) -> None:
    """A macvlan on each named host interface, created inside the gateway's namespace under
    the interface name of the model; the backend's configuration then addresses it."""
    with IPRoute() as ipr:
        for node, iface in uplinks(topology):
            assert iface.uplink is not None
            if iface.uplink.mode is not UplinkMode.MACVLAN:
                raise LabError(f"{node.name}: uplink mode {iface.uplink.mode} is not supported")
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
