"""The embedded default backend: each node is a Linux network namespace plus its own persistent
mount and UTS namespaces, wired with veth pairs and (on gateways) a bridge. Needs root and
iproute2/util-linux only; no daemon.

Inside a node, ``/run`` is the node's own directory (so two strongSwan daemons never share a pid
file or vici socket), ``/etc/hosts`` names every lab node, ``/sys`` shows the node's interfaces and
``hostname`` is the node's name. The host sees each node's ``/run`` at
``/run/teleradlab/labs/<lab>/nodes/<node>/run``, so a daemon's unix socket can be reached from the
orchestrator without entering the node.

Netlink work (links, addresses, routes) goes through pyroute2; the per-node setup that must run
inside the namespaces (mounts, sysctls, hostname) is one small shell script per node, run in
parallel.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyroute2 import IPRoute, netns

from lab.backends import uplink
from lab.backends.base import TCP_WMEM, Backend, Progress, no_progress
from lab.errors import LabError, LabNotFoundError
from lab.host import shell
from lab.host.mounts import bind_private_dir, global_lock, umount_detach
from lab.host.processes import pids_in_netns, stop
from lab.host.wait import until
from lab.model.names import NETNS_DIR, PREFIX, RUN_ROOT, LabPaths, netns_name, split_netns_name
from lab.model.topology import Family, Node, Topology, UplinkMode, Wire

IFA_F_NODAD = 0x02
IN6_ADDR_GEN_MODE_NONE = 1
INIT_TIMEOUT = 20.0
WIRE_INDEX_BASE = 100
LINKS_UP_TIMEOUT = 5.0


def hosts_file(topology: Topology, node: str) -> str:
    """/etc/hosts for a node: every lab node by name, every one of its addresses."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for n in topology.nodes:
        names = f"{n.name}\t# this node" if n.name == node else n.name
        lines += [f"{a.ip}\t{names}" for a in n.addresses()]
    return "\n".join(lines) + "\n"


def init_script(paths: LabPaths, node: Node) -> str:
    """Runs once inside the node's new namespaces (see ``_start_init``)."""
    q = shlex.quote
    sysctls = ["net/ipv6/conf/all/accept_dad=0", "net/ipv6/conf/default/accept_dad=0"]
    if node.forwarding:
        sysctls += ["net/ipv4/ip_forward=1", "net/ipv6/conf/all/forwarding=1"]
    else:  # an end host: room for autotuning to fill the longest WAN preset (TCP_WMEM)
        sysctls += [f"net/ipv4/tcp_wmem={TCP_WMEM}"]
    writes = "\n".join(f"echo {v} > /proc/sys/{k}" for k, v in (s.split("=") for s in sysctls))
    return f"""set -e
hostname {q(node.name)}
{writes}
# Drop the copies of other namespaces' bind mounts, so this node pins none of them.
if mountpoint -q {NETNS_DIR}; then umount -R -l {NETNS_DIR}; fi
umount -R -l {q(str(paths.ns_dir))}
mount --bind {q(str(paths.node_hosts(node.name)))} /etc/hosts
umount -l /sys
mount -t sysfs sysfs /sys
mount --bind {q(str(paths.node_run(node.name)))} /run
"""


class NetnsBackend(Backend):
    name = "netns"

    def __init__(self, root: Path = RUN_ROOT) -> None:
        self.root = root

    def paths(self, lab: str) -> LabPaths:
        return LabPaths(lab, self.root)

    # --- building -------------------------------------------------------------------------

    def up(self, lab: str, topology: Topology, progress: Progress = no_progress) -> None:
        paths = self.paths(lab)
        try:
            progress(f"creating {len(topology.nodes)} nodes")
            self._create_nodes(paths, topology)
            progress(f"wiring {len(topology.wires)} links")
            self._create_wires(paths, topology)
            uplink.create_uplinks(paths, topology)
            progress("assigning addresses and routes")
            for node in topology.nodes:
                with self._netlink(paths, node.name) as ipr:
                    self._configure(node, topology.wires, ipr)
            progress("waiting for every link to come up")
            self._wait_links_up(paths, topology)
        except BaseException:
            self.down(lab)
            raise

    def preflight(self, topology: Topology) -> None:
        """Host interfaces named as uplinks must exist and be up (lab.backends.uplink)."""
        uplink.check_host_interfaces(topology)

    def _create_nodes(self, paths: LabPaths, topology: Topology) -> None:
        with global_lock(self.root):
            bind_private_dir(paths.ns_dir)
            for node in topology.nodes:
                run_dir = paths.node_run(node.name)
                run_dir.mkdir(parents=True, exist_ok=True)
                paths.node_hosts(node.name).write_text(hosts_file(topology, node.name))
                netns.create(netns_name(paths.lab, node.name))
                paths.mnt_ns(node.name).touch()
                paths.uts_ns(node.name).touch()
            procs = [(n.name, self._start_init(paths, n)) for n in topology.nodes]
            failures = []
            for name, proc in procs:
                try:
                    _, err = proc.communicate(timeout=INIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                    failures.append(f"{name}: node setup timed out after {INIT_TIMEOUT:g} s")
                    continue
                if proc.returncode != 0:
                    failures.append(f"{name}: node setup failed: {err.decode(errors='replace')}")
        if failures:
            raise LabError("could not create the nodes:\n  " + "\n  ".join(failures))

    def _start_init(self, paths: LabPaths, node: Node) -> subprocess.Popen[bytes]:
        argv = [
            "nsenter",
            f"--net={paths.netns(node.name)}",
            "--",
            "unshare",
            f"--mount={paths.mnt_ns(node.name)}",
            f"--uts={paths.uts_ns(node.name)}",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            init_script(paths, node),
        ]
        return shell.spawn(argv, capture=True)

    @contextlib.contextmanager
    def _netlink(self, paths: LabPaths, node: str) -> Iterator[IPRoute]:
        """A netlink socket inside the node (pyroute2 opens it from a short-lived forked child),
        closed when the block ends; the backend holds one at a time."""
        ipr = IPRoute(netns=str(paths.netns(node)), flags=0)
        try:
            yield ipr
        finally:
            ipr.close()

    def _create_wires(self, paths: LabPaths, topology: Topology) -> None:
        """Each veth pair is created from one end's namespace with its peer in the other's.

        The first end gets an explicit interface index (``WIRE_INDEX_BASE`` + n) so that the two
        ends never share an index: the kernel handles a veth's carrier change at once only when
        its index differs from its peer's, and defers it up to a second otherwise, which would
        keep bridge ports blocked and make the first pings time out."""
        for node in topology.nodes:
            wires = [(n, w) for n, w in enumerate(topology.wires) if w.a.node == node.name]
            if not wires:
                continue
            with self._netlink(paths, node.name) as ipr:
                for n, wire in wires:
                    mtu = topology.segment(wire.segment).mtu
                    peer = os.open(paths.netns(wire.b.node), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        ipr.link(
                            "add",
                            ifname=wire.a.ifname,
                            index=WIRE_INDEX_BASE + n,
                            kind="veth",
                            mtu=mtu,
                            peer={"ifname": wire.b.ifname, "net_ns_fd": peer, "mtu": mtu},
                        )
                    finally:
                        os.close(peer)

    def _configure(self, node: Node, wires: Sequence[Wire], ipr: IPRoute) -> None:
        """Bridges and their ports, link state, addresses (no DAD) and static routes.

        A LAN bridge behaves as a plain switch (no IGMP/MLD snooping): it floods multicast, so
        neighbour discovery never waits for a querier."""
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        for iface in node.interfaces:
            if iface.bridge:
                # Up before it has ports: a carrier change on a device that is not yet running
                # is deferred by the kernel's link watcher for up to a second.
                ipr.link(
                    "add", ifname=iface.name, kind="bridge", mtu=iface.mtu, br_mcast_snooping=0
                )
                index = _index(ipr, iface.name)
                if not any(a.version == 6 for a in iface.addresses):
                    _no_ipv6_addresses(ipr, index)
                ipr.link("set", index=index, state="up")
        ports = [end for w in wires for end in (w.a, w.b) if end.node == node.name and end.bridge]
        for port in ports:
            index = _index(ipr, port.ifname)
            ipr.link("set", index=index, master=_index(ipr, str(port.bridge)))
            _no_ipv6_addresses(ipr, index)
            ipr.link("set", index=index, state="up")
        for iface in node.interfaces:
            index = _index(ipr, iface.name)
            moved = iface.uplink is not None and iface.uplink.mode is UplinkMode.MOVE
            if not moved and not any(a.version == 6 for a in iface.addresses):
                # (not on a moved host interface: the setting would go home with it)
                _no_ipv6_addresses(ipr, index)
            ipr.link("set", index=index, state="up")
            for addr in iface.addresses:
                ipr.addr(
                    "add",
                    index=index,
                    address=str(addr.ip),
                    prefixlen=addr.network.prefixlen,
                    flags=IFA_F_NODAD,
                )
        for route in node.routes:
            ipr.route(
                "add",
                dst=str(route.destination),
                gateway=str(route.gateway),
                oif=_index(ipr, route.interface),
                family=10 if Family.of(route.destination) is Family.IPV6 else 2,
            )

    def _wait_links_up(self, paths: LabPaths, topology: Topology) -> None:
        """Return once every interface is operationally up, so that the lab is settled (no
        carrier or IPv6 address events still in flight) before anything is measured on it.
        A bridge's own carrier change reaches user space through the kernel's link watcher,
        which batches such events for up to a second."""
        waiting = list(topology.nodes)
        not_up: list[str] = []

        def settled() -> bool:
            nonlocal waiting
            not_up.clear()
            for node in waiting:
                with self._netlink(paths, node.name) as ipr:
                    not_up.extend(
                        f"{node.name}:{link.get('ifname')} ({link.get('operstate')})"
                        for link in ipr.get_links()
                        if link.get("ifname") != "lo"
                        and link.get("operstate") not in ("UP", "UNKNOWN"))
            names = {entry.split(":", 1)[0] for entry in not_up}
            waiting = [n for n in waiting if n.name in names]
            return not not_up

        until(settled, LINKS_UP_TIMEOUT, what="every link up",
              detail=lambda: "still down: " + ", ".join(not_up))

    # --- working inside nodes -------------------------------------------------------------

    def netns_path(self, lab: str, node: str) -> Path:
        return self.paths(lab).netns(node)

    def node_argv(self, lab: str, node: str, argv: Sequence[str]) -> list[str]:
        paths = self.paths(lab)
        if not paths.netns(node).exists() or not paths.mnt_ns(node).exists():
            nodes = sorted(n for lab_, n in _owned_netns() if lab_ == lab)
            if not nodes:
                raise LabNotFoundError(f"no lab named {lab!r} is running")
            raise LabNotFoundError(f"lab {lab!r} has no node {node!r} (nodes: {', '.join(nodes)})")
        cwd = os.getcwd()
        wd = cwd if not cwd.startswith(("/run", "/sys", "/proc")) else "/"
        return [
            "nsenter",
            f"--net={paths.netns(node)}",
            f"--mount={paths.mnt_ns(node)}",
            f"--uts={paths.uts_ns(node)}",
            f"--wdns={wd}",
            "--",
            *argv,
        ]

    # --- finding and removing -------------------------------------------------------------

    def list_owned(self) -> list[str]:
        labs = {lab for lab, _ in _owned_netns()}
        ns_dir = self.root / "ns"
        if ns_dir.is_dir():
            labs |= {
                s[0] for f in ns_dir.iterdir() if (s := split_netns_name(f.name.rsplit(".", 1)[0]))
            }
        labs_dir = self.root / "labs"
        if labs_dir.is_dir():
            labs |= {d.name for d in labs_dir.iterdir() if (d / "nodes").exists()}
        return sorted(labs)

    def down(self, lab: str) -> list[str]:
        paths = self.paths(lab)
        removed: list[str] = []
        nodes = sorted(n for lab_, n in _owned_netns() if lab_ == lab)
        pids = [p for n in nodes for p in pids_in_netns(paths.netns(n))]
        if pids:
            killed = stop(pids)
            removed.append(
                f"stopped {len(pids)} process(es)"
                + (f" ({len(killed)} needed SIGKILL)" if killed else "")
            )
        removed += uplink.restore_moved(paths)
        for n in nodes:
            with contextlib.suppress(FileNotFoundError):
                netns.remove(netns_name(lab, n))
            removed.append(f"network namespace {netns_name(lab, n)}")
        if paths.ns_dir.is_dir():
            for f in sorted(paths.ns_dir.glob(f"{PREFIX}{lab}.*")):
                umount_detach(f)
                f.unlink(missing_ok=True)
                removed.append(f"namespace file {f}")
        nodes_dir = paths.state_dir / "nodes"
        if nodes_dir.exists():
            shutil.rmtree(nodes_dir)
            removed.append(f"node directories {nodes_dir}")
        self._release_shared()
        return removed

    def _release_shared(self) -> None:
        """Remove the shared directories once no lab uses them."""
        with global_lock(self.root):
            ns_dir = self.root / "ns"
            if ns_dir.is_dir() and not any(ns_dir.iterdir()):
                umount_detach(ns_dir)
                ns_dir.rmdir()
            with contextlib.suppress(OSError):
                self.root.rmdir()


def _owned_netns() -> list[tuple[str, str]]:
    if not NETNS_DIR.is_dir():
        return []
    return [s for f in NETNS_DIR.iterdir() if (s := split_netns_name(f.name))]


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"interface {ifname!r} was not created")
    return int(found[0])


def _no_ipv6_addresses(ipr: IPRoute, index: int) -> None:
    """No IPv6 link-local address on this interface: an IPv4-only segment stays IPv4-only."""
    ipr.link(
        "set",
        index=index,
        IFLA_AF_SPEC={
            "attrs": [
                ("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]}),
            ]
        },
    )
