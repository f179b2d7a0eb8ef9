"""What a running lab looks like right now, read from the kernel (netlink, /proc), not from the
topology file: interfaces, their state and addresses, and the processes in each node."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pyroute2 import IPRoute

from lab.backends.base import Lab
from lab.host.processes import describe, pids_in_netns
from lab.runtime.state import LabRecord
from lab.security.ipsec.tunnel import read_state


@dataclass(frozen=True)
class LiveInterface:
    name: str
    state: str
    mtu: int
    addresses: tuple[str, ...]
    master: str | None


@dataclass(frozen=True)
class LiveNode:
    name: str
    role: str
    site: str | None
    namespace: str
    present: bool
    interfaces: tuple[LiveInterface, ...]
    processes: tuple[tuple[int, str], ...]


def _interfaces(netns: str) -> tuple[LiveInterface, ...]:
    with IPRoute(netns=netns, flags=0) as ipr:
        links = ipr.get_links()
        names = {link["index"]: link.get("ifname") for link in links}
        addrs: dict[int, list[str]] = {}
        for a in ipr.get_addr():
            addrs.setdefault(a["index"], []).append(f"{a.get('address')}/{a['prefixlen']}")
    out = []
    for link in links:
        if link.get("ifname") == "lo":
            continue
        master = link.get("master")
        out.append(
            LiveInterface(
                name=str(link.get("ifname")),
                state=str(link.get("operstate")).lower(),
                mtu=int(link.get("mtu")),
                addresses=tuple(addrs.get(link["index"], [])),
                master=names.get(master) if master else None,
            )
        )
    return tuple(out)


def live_nodes(lab: Lab) -> list[LiveNode]:
    out = []
    for node in lab.topology.nodes:
        path = lab.backend.netns_path(lab.name, node.name)
        present = path.exists()
        procs = []
        if present:
            for pid in pids_in_netns(path):
                info = describe(pid)
                if info is not None:
                    procs.append((info.pid, info.command))
        out.append(
            LiveNode(
                name=node.name,
                role=node.role.value,
                site=node.site,
                namespace=str(path),
                present=present,
                interfaces=_interfaces(str(path)) if present else (),
                processes=tuple(procs),
            )
        )
    return out


def status_document(lab: Lab, record: LabRecord) -> dict[str, Any]:
    """The ``status --json`` document of one lab (``record``: its record, for when and from
    what it was built)."""
    return {
        "lab": lab.name,
        "backend": record.backend,
        "topology": record.topology,
        "created": record.created_text,
        "description": lab.topology.description,
        "notes": list(lab.topology.notes),
        "security": security_summary(lab),
        "nodes": [asdict(n) for n in live_nodes(lab)],
    }


def security_summary(lab: Lab) -> str:
    """What protects the lab: its security plan, and for IPsec what was negotiated."""
    text = lab.plan.label
    state = read_state(lab.paths)
    if lab.plan.ipsec is not None and state is not None:
        carried = ", carrying DICOM TLS between the sites" if lab.plan.ipsec.carries_tls else ""
        text += (f"; IPsec up ({lab.plan.ipsec.esp_path} ESP, IKE {state.ike_algorithms}, ESP "
                 f"{state.esp_algorithms}, set up in {state.setup_seconds * 1000:.0f} ms"
                 f"{carried})")
    return text
