"""Long-running programs a lab starts in its nodes: the PACS archive and the modality's receiver
of C-MOVE results. They are ordinary processes in the nodes' namespaces, so ``status`` lists
them and ``down``/``clean`` stop them by process id."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lab.backends.base import Lab
from lab.dicom import MODALITY_AE, PACS_AE
from lab.errors import LabError
from lab.host.wait import Deadline, until
from lab.model.plan import SecurityPlan
from lab.model.topology import Family, Role, Topology
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


def tls_arguments(lab: Lab, node: str, *, client: bool = False) -> tuple[str, ...]:
    """``--tls-*`` options for a DICOM program in ``node`` (none without DICOM TLS in the plan):
    the profile, the node's certificate from the lab CA (RSA where the plan says the profile
    needs RSA) and the lab CA as the only trust anchor; for a ``client`` the one TLS 1.2 suite
    the topology pins, if any (the client offers it; servers keep the profile's list)."""
    tls = lab.plan.tls
    if tls is None:
        return ()
    pki = ensure_lab_pki(lab.paths, lab.topology)
    cred = pki.tls(lab.topology.node(node), rsa=tls.rsa)
    cipher = (f"--tls-cipher={tls.cipher}",) if tls.cipher and client else ()
    return (f"--tls-profile={tls.profile}", f"--tls-cert={cred.cert_path}",
            f"--tls-key={cred.key_path}", f"--tls-ca={pki.ca_cert}", *cipher)


def move_destinations(topology: Topology, plan: SecurityPlan) -> dict[str, str]:
    """C-MOVE destinations the PACS knows, as ``AE -> HOST:PORT``: each receiver under its AE
    title (its IPv6 address when it has one), and as ``AE-V4`` / ``AE-V6`` for one family; the
    receivers' port is the plan's (the TLS port with DICOM TLS)."""
    out: dict[str, str] = {}
    port = plan.receiver_port
    for node_name, ae in receivers(topology).items():
        node = topology.node(node_name)
        for family in (Family.IPV4, Family.IPV6):
            addr = node.addresses(family)
            if addr:
                where = f"{addr[0].ip}:{port}"
                out[f"{ae}-V{family.version}"] = where
                out[ae] = where  # the last family wins: IPv6 when present
    return out


def dicom_services(lab: Lab) -> list[Service]:
    """The PACS on every pacs node and a C-MOVE receiver on the modality and workstations
    (speaking DICOM TLS when the topology asks for it), flushing what they store as the
    topology's ``archive.sync`` says: by default not at all, like DCMTK's storescp, since a
    lab's stores go with the lab (``down``) and a flush per object would time this machine's
    disk in every C-STORE measured."""
    topology, paths = lab.topology, lab.paths
    python = (sys.executable, "-m")
    services = []
    destinations = [f"--destination={ae}={w}"
                    for ae, w in move_destinations(topology, lab.plan).items()]
    ae_of = receivers(topology)
    pacs_port, receiver_port = lab.plan.pacs_port, lab.plan.receiver_port
    sync = f"--sync={topology.archive_sync}"
    for node in topology.nodes:
        base = paths.node_data(node.name)
        tls = tls_arguments(lab, node.name) if (
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


def start(lab: Lab, services: list[Service]) -> None:
    """Start every service and return once each listens (all within START_TIMEOUT); LabError
    with its log otherwise."""
    procs = []
    for svc in services:
        svc.log.parent.mkdir(parents=True, exist_ok=True)
        procs.append((svc, lab.spawn(svc.node, list(svc.argv), log_path=svc.log)))
    deadline = Deadline(START_TIMEOUT)
    for svc, proc in procs:
        until(partial(_listening, lab, svc, proc), deadline.remaining(),
              what=f"{svc.name} on {svc.node} listening on port {svc.port}",
              detail=partial(_log_tail, svc))


def _listening(lab: Lab, svc: Service, proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``svc`` listens yet; LabError with its log if it has exited."""
    if proc.poll() is not None:
        raise LabError(f"{svc.name} on {svc.node} exited (port {svc.port}); {_log_tail(svc)}")
    return lab.backend.listening(lab.name, svc.node, proc.pid, svc.port)


def _log_tail(svc: Service) -> str:
    tail = svc.log.read_text(errors="replace")[-2000:] if svc.log.exists() else ""
    return f"its log {svc.log}:\n{tail}"
