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
from lab.model.names import LabPaths
from lab.model.tls_profiles import PROFILES, needs_rsa
from lab.model.topology import Family, Role, SecurityMode, Topology
from lab.security.pki.lab_pki import ensure_lab_pki

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


def ports(topology: Topology) -> tuple[int, int]:
    """The PACS's port and the receivers' port: 11112 and 11113 in clear; with DICOM TLS every
    listener uses the TLS port (2762, PS3.15 B.1) and nothing is served in clear."""
    if topology.security.mode is SecurityMode.TLS:
        return topology.security.tls.port, topology.security.tls.port
    return PACS_PORT, MODALITY_STORE_PORT


def tls_arguments(topology: Topology, paths: LabPaths, node: str) -> tuple[str, ...]:
    """``--tls-*`` options for a DICOM program in ``node`` (none without DICOM TLS): the
    profile, the node's certificate from the lab CA (RSA where the profile needs RSA key
    transport) and the lab CA as the only trust anchor."""
    if topology.security.mode is not SecurityMode.TLS:
        return ()
    tls = topology.security.tls
    pki = ensure_lab_pki(paths, topology)
    cred = pki.tls(topology.node(node), rsa=needs_rsa(PROFILES[tls.profile], tls.cipher))
    return (f"--tls-profile={tls.profile}", f"--tls-cert={cred.cert_path}",
            f"--tls-key={cred.key_path}", f"--tls-ca={pki.ca_cert}")


def move_destinations(topology: Topology) -> dict[str, str]:
    """C-MOVE destinations the PACS knows, as ``AE -> HOST:PORT``: each receiver under its AE
    title (its IPv6 address when it has one), and as ``AE-V4`` / ``AE-V6`` for one family."""
    out: dict[str, str] = {}
    port = ports(topology)[1]
    for node_name, ae in receivers(topology).items():
        node = topology.node(node_name)
        for family in (Family.IPV4, Family.IPV6):
            addr = node.addresses(family)
            if addr:
                where = f"{addr[0].ip}:{port}"
                out[f"{ae}-V{family.version}"] = where
                out[ae] = where  # the last family wins: IPv6 when present
    return out


def dicom_services(topology: Topology, paths: LabPaths) -> list[Service]:
    """The PACS on every pacs node and a C-MOVE receiver on the modality and workstations
    (speaking DICOM TLS when the topology asks for it), flushing what they store as the
    topology's ``archive.sync`` says: by default not at all, like DCMTK's storescp, since a
    lab's stores go with the lab (``down``) and a flush per object would time this machine's
    disk in every C-STORE measured."""
    python = (sys.executable, "-m")
    services = []
    destinations = [f"--destination={ae}={w}" for ae, w in move_destinations(topology).items()]
    ae_of = receivers(topology)
    pacs_port, receiver_port = ports(topology)
    sync = f"--sync={topology.archive_sync}"
    for node in topology.nodes:
        base = paths.node_data(node.name)
        tls = tls_arguments(topology, paths, node.name) if (
            node.role is Role.PACS or node.name in ae_of) else ()
        if node.role is Role.PACS:
            argv = (*python, "lab.dicom.pacs", f"--root={base / 'store'}", f"--ae={PACS_AE}",
                    f"--port={pacs_port}", sync, "-v", *destinations, *tls)
            services.append(Service(node.name, "pacs", PACS_AE, pacs_port, argv, base / "store",
                                    base / "pacs.log"))
        elif node.name in ae_of:
            argv = (*python, "lab.dicom.pacs", f"--root={base / 'received'}",
                    f"--ae={ae_of[node.name]}", f"--port={receiver_port}", "--storage-only",
                    sync, "-v", *tls)
            services.append(Service(node.name, "receiver", ae_of[node.name], receiver_port, argv,
                                    base / "received", base / "receiver.log"))
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
