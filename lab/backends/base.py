"""The backend interface: what it takes to make a topology real and to work inside its nodes.

Kept small on purpose (design.md, style 2): a backend builds and removes labs, runs commands in
nodes, and says which network namespace a node lives in — everything else (reachability checks,
status, process listing) is written once on top of these.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lab.errors import LabError
from lab.host import processes, shell
from lab.host.shell import Result
from lab.model.names import LabPaths
from lab.model.plan import SecurityPlan
from lab.model.topology import Topology

Progress = Callable[[str], None]

#: Largest send buffer TCP autotuning may grow to in a lab's end hosts (net.ipv4.tcp_wmem,
#: per namespace; Linux's own default is 4 MiB). BBR keeps up to about 2.9 bandwidth-delay
#: products in flight while it probes, and the send buffer holds them with their overhead:
#: on transcontinental-100m-80ms (2 MB BDP) a 100-object CT study with a window of 16 took
#: 6.3 s with 4 MiB and 5.9 s with 16 MiB (bound 4.7 s). Autotuning still sizes each socket.
TCP_WMEM_MAX = 16 * 1024 * 1024
#: net.ipv4.tcp_wmem (min, default, max) of a lab's end hosts, on every backend.
TCP_WMEM = f"4096 16384 {TCP_WMEM_MAX}"


def no_progress(_: str) -> None:
    """A progress callback that shows nothing."""


class Backend(ABC):
    """Builds labs of one kind (network namespaces, docker containers, ...)."""

    name: str
    #: Features of :mod:`lab.host.programs` every lab of this backend needs (feature -> why).
    needs: ClassVar[dict[str, str]] = {"core": "every lab"}
    #: Whether building a lab needs root (namespaces, mounts): checked before anything else.
    needs_root = True

    @abstractmethod
    def up(self, lab: str, topology: Topology, progress: Progress = no_progress) -> None:
        """Create every node, wire, address and route of ``topology`` as lab ``lab``.

        On failure the backend removes what it made before raising."""

    def preflight(self, topology: Topology) -> None:
        """Check, before anything is made, what the host must provide for ``topology`` beyond
        programs: by default a backend attaches no site to a real network (LabError)."""
        for node in topology.nodes:
            for iface in node.interfaces:
                if iface.uplink is not None:
                    raise LabError(f"the {self.name} backend cannot attach {node.name} to the "
                                   f"host interface {iface.uplink.host_interface}; use the "
                                   "netns backend")

    @abstractmethod
    def down(self, lab: str) -> list[str]:
        """Remove everything lab ``lab`` owns, found by name alone (works after a crash; safe to
        repeat). Returns a line per thing removed."""

    @abstractmethod
    def list_owned(self) -> list[str]:
        """Names of the labs of which anything exists on this machine."""

    @abstractmethod
    def node_argv(self, lab: str, node: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside ``node``."""

    @abstractmethod
    def netns_path(self, lab: str, node: str) -> Path:
        """A path naming the node's network namespace (for netlink queries and process lookup)."""

    def listening(self, lab: str, node: str, pid: int, port: int) -> bool:
        """Is a TCP socket listening on ``port`` in the network namespace of ``pid`` (a process
        started in ``node``)? Read from ``/proc/PID/net``, which shows that namespace."""
        return any(state == "0A" and local == port
                   for state, local, _ in processes.tcp_sockets(pid))

    def exec(
        self,
        lab: str,
        node: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> Result:
        """Run ``argv`` inside ``node`` to completion."""
        return shell.run(self.node_argv(lab, node, argv), check=check, timeout=timeout, input=input)

    def spawn(
        self, lab: str, node: str, argv: Sequence[str], *, log_path: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``node`` in the background; ``down`` stops it."""
        return shell.spawn(self.node_argv(lab, node, argv), log_path=log_path)


@dataclass(frozen=True)
class Lab:
    """A lab being built or running: the handle every layer above the backends passes around
    (instead of ``backend, name, topology``), with the security plan resolved at ``up`` and the
    lab's paths on the host."""

    backend: Backend
    name: str
    topology: Topology
    plan: SecurityPlan
    paths: LabPaths

    def exec(self, node: str, argv: Sequence[str], *, check: bool = True,
             timeout: float = 30.0, input: str | None = None) -> Result:
        """Run ``argv`` inside ``node`` to completion."""
        return self.backend.exec(self.name, node, argv, check=check, timeout=timeout,
                                 input=input)

    def spawn(self, node: str, argv: Sequence[str], *,
              log_path: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``node`` in the background; ``down`` stops it."""
        return self.backend.spawn(self.name, node, argv, log_path=log_path)

    def netns_path(self, node: str) -> Path:
        return self.backend.netns_path(self.name, node)
