"""Names and places of everything a lab creates, so that a sweep can find it by name alone.

- network namespace of a node: ``tl-<lab>.<node>`` (``/run/netns/``)
- its persistent mount and UTS namespaces: ``/run/teleradlab/ns/tl-<lab>.<node>.{mnt,uts}``
- the lab's state: ``/run/teleradlab/labs/<lab>/`` (topology copy, per-node /run and /etc files)
- the lab's data: ``/var/lib/teleradlab/<lab>/`` (PKI, DICOM stores, service logs), at the same
  path inside every node (nodes see the host's file system except their own /run, /etc/hosts
  and /sys), so programs in nodes and the orchestrator name files alike

Lab and node names never contain a dot, so ``tl-<lab>.<node>`` splits without ambiguity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

PREFIX = "tl-"
LAB_NAME_MAX = 24
LAB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
RUN_ROOT = Path("/run/teleradlab")
NETNS_DIR = Path("/run/netns")
DATA_ROOT = Path("/var/lib/teleradlab")


def check_lab_name(name: str) -> str:
    """Return ``name`` if it is a valid lab name, else raise LabError saying why."""
    if not LAB_NAME_RE.match(name) or len(name) > LAB_NAME_MAX:
        raise LabError(
            f"invalid lab name {name!r}: use 1 to {LAB_NAME_MAX} lower-case letters, digits "
            "or '-', starting with a letter or digit"
        )
    return name


def default_lab_name(topology_name: str) -> str:
    """A lab name derived from a topology file name (``mixed-4over6.yaml`` -> ``mixed-4over6``)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", topology_name.lower()).strip("-")[:LAB_NAME_MAX]
    return cleaned or "lab"


def netns_name(lab: str, node: str) -> str:
    return f"{PREFIX}{lab}.{node}"


def split_netns_name(name: str) -> tuple[str, str] | None:
    """``tl-demo.gw-a`` -> ``("demo", "gw-a")``; None for names the lab does not own."""
    if not name.startswith(PREFIX) or name.count(".") != 1:
        return None
    lab, node = name[len(PREFIX) :].split(".")
    return (lab, node) if lab and node else None


@dataclass(frozen=True)
class LabPaths:
    """Where one lab keeps its state on the host."""

    lab: str
    root: Path = RUN_ROOT
    data_root: Path = DATA_ROOT

    @property
    def ns_dir(self) -> Path:
        return self.root / "ns"

    @property
    def state_dir(self) -> Path:
        return self.root / "labs" / self.lab

    @property
    def info_file(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def topology_copy(self) -> Path:
        return self.state_dir / "topology.yaml"

    @property
    def data_dir(self) -> Path:
        return self.data_root / self.lab

    def node_data(self, node: str) -> Path:
        """A node's data (stores, logs): the same path on the host and inside the node."""
        return self.data_dir / "nodes" / node

    def node_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    def node_run(self, node: str) -> Path:
        """Bind-mounted over /run inside the node: its daemons' pid files and sockets."""
        return self.node_dir(node) / "run"

    def node_hosts(self, node: str) -> Path:
        """Bind-mounted over /etc/hosts inside the node."""
        return self.node_dir(node) / "hosts"

    def netns(self, node: str) -> Path:
        return NETNS_DIR / netns_name(self.lab, node)

    def mnt_ns(self, node: str) -> Path:
        return self.ns_dir / f"{netns_name(self.lab, node)}.mnt"

    def uts_ns(self, node: str) -> Path:
        return self.ns_dir / f"{netns_name(self.lab, node)}.uts"
