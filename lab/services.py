"""Long-running programs a lab starts in its nodes: the PACS archive and the modality's receiver
of C-MOVE results. They are ordinary processes in the nodes' namespaces, so ``status`` lists
them and ``down``/``clean`` stop them by process id."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.backends.base import Backend
from lab.dicom import MODALITY_AE, MODALITY_STORE_PORT, PACS_AE, PACS_PORT
from lab.errors import LabError
from lab.model import Family, Role, Topology
from lab.names import LabPaths

START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Service:
    node: str
    name: str
    ae: str
    port: int
    argv: tuple[str, ...]
    store: Path  # where it keeps what it receives (on the host's file system)
    log: Path


def receivers(topology: Topology) -> dict[str, str]:
    """Nodes that run a receiver of C-MOVE results, and its AE title: the (first) modality as
    ``MODALITY``, every workstation under its node name in capitals."""
    out: dict[str, str] = {}
    for node in topology.nodes:
        if node.role is Role.MODALITY and MODALITY_AE not in out.values():
            out[node.name] = MODALITY_AE
        elif node.role in (Role.MODALITY, Role.WORKSTATION):
            out[node.name] = node.name.upper()
    return out


def move_destinations(topology: Topology) -> dict[str, str]:
    """C-MOVE destinations the PACS knows, as ``AE -> HOST:PORT``: each receiver under its AE
    title (its IPv6 address when it has one), and as ``AE-V4`` / ``AE-V6`` for one family."""
    out: dict[str, str] = {}
    for node_name, ae in receivers(topology).items():
        node = topology.node(node_name)
        for family in (Family.IPV4, Family.IPV6):
            addr = node.addresses(family)
            if addr:
                where = f"{addr[0].ip}:{MODALITY_STORE_PORT}"
                out[f"{ae}-V{family.version}"] = where
                out[ae] = where  # the last family wins: IPv6 when present
    return out


def dicom_services(topology: Topology, paths: LabPaths) -> list[Service]:
    """The PACS on every pacs node and a C-MOVE receiver on the modality and workstations."""
    python = (sys.executable, "-m")
    services = []
    destinations = [f"--destination={ae}={w}" for ae, w in move_destinations(topology).items()]
    ae_of = receivers(topology)
    for node in topology.nodes:
        base = paths.node_data(node.name)
        if node.role is Role.PACS:
            argv = (
                *python,
                "lab.dicom.pacs",
                f"--root={base / 'store'}",
                f"--ae={PACS_AE}",
                f"--port={PACS_PORT}",
                "-v",
                *destinations,
            )
            services.append(
                Service(
                    node.name, "pacs", PACS_AE, PACS_PORT, argv, base / "store", base / "pacs.log"
                )
            )
        elif node.name in ae_of:
            argv = (
                *python,
                "lab.dicom.pacs",
                f"--root={base / 'received'}",
                f"--ae={ae_of[node.name]}",
                f"--port={MODALITY_STORE_PORT}",
                "--storage-only",
                "-v",
            )
            services.append(
                Service(
                    node.name,
                    "receiver",
                    ae_of[node.name],
                    MODALITY_STORE_PORT,
                    argv,
                    base / "received",
                    base / "receiver.log",
                )
            )
    return services


def _listening(pid: int, port: int) -> bool:
    """Is a TCP socket listening on ``port`` in the network namespace of ``pid``?"""
    for table in ("tcp6", "tcp"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def start(backend: Backend, lab: str, services: list[Service]) -> None:
    """Start every service and return once each listens; LabError with its log otherwise."""
    procs = []
    for svc in services:
        svc.log.parent.mkdir(parents=True, exist_ok=True)
        procs.append((svc, backend.spawn(lab, svc.node, list(svc.argv), log_path=svc.log)))
    deadline = time.monotonic() + START_TIMEOUT
    for svc, proc in procs:
        while not _listening(proc.pid, svc.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = svc.log.read_text(errors="replace")[-2000:] if svc.log.exists() else ""
                why = "exited" if proc.poll() is not None else "did not start listening"
                raise LabError(
                    f"{svc.name} on {svc.node} {why} (port {svc.port}); its log {svc.log}:\n{tail}"
                )
            time.sleep(0.05)
