"""What a running lab is doing right now, sampled for ``teleradlab watch``: per interface the
kernel's byte counters and queue, per IPsec CHILD_SA strongSwan's counters, the DICOM services'
open associations and objects stored, the DICOM client programs running, the WAN profile.

Everything is read, nothing is estimated:

- links: netlink ``IFLA_STATS64`` of every interface in every node, and the queue (packets,
  bytes, drops) of its qdiscs (``TCA_STATS2``/``TCA_STATS_QUEUE``). With the userspace WAN
  emulator the WAN's queue lives in the emulator, not in a qdisc: it does not show here.
- SAs: VICI ``list-sas`` on every node running charon (bytes and packets in and out).
- DICOM: the services a lab starts (:mod:`lab.runtime.services`): established TCP connections to
  their port (one per association in progress), found in ``/proc/PID/net/tcp{,6}`` of the
  service's process (which shows its network namespace), and the objects they stored, counted
  from the ``stored UID (N bytes)`` lines of their log (the archive logs each object it
  accepted, PS3.4 B.2.3 success); and the ``lab.dicom.scu``/``qrscu`` processes running.

Rates are differences of two samples over the time between them (:func:`rates`).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pyroute2 import IPRoute

from lab.backends.base import Lab
from lab.host.processes import describe, pids_in_netns, tcp_sockets
from lab.model.wan import as_dict
from lab.model.wan import describe as describe_profile
from lab.runtime.services import Service, dicom_services
from lab.security.ipsec.charon import VICI_SOCKET, connect, vici_error
from lab.wan import apply as wan_apply

_STORED = re.compile(r" stored \S+ \((\d+) bytes\)")
_ASSOCIATION = re.compile(r" association from ")
_CLIENTS = ("lab.dicom.scu", "lab.dicom.qrscu")


@dataclass(frozen=True)
class LinkSample:
    node: str
    interface: str
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    dropped: int  # rx + tx drops counted by the interface
    queue_packets: int  # in its qdiscs now
    queue_bytes: int
    queue_drops: int  # dropped by its qdiscs so far


@dataclass(frozen=True)
class SaSample:
    node: str
    name: str
    state: str
    spi_in: str
    spi_out: str
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    algorithms: str


@dataclass(frozen=True)
class ServiceSample:
    node: str
    service: str  # pacs | receiver
    ae: str
    port: int
    associations_open: int  # established TCP connections to the port
    peers: tuple[str, ...]
    associations_total: int  # accepted since the service started (its log)
    objects_stored: int  # since the service started (its log)
    bytes_stored: int
    #: stored since the oldest of the open associations was accepted (the log names no
    #: association in its "stored" lines: exact for one association open, and for several
    #: opened together)
    objects_in_open: int = 0


@dataclass(frozen=True)
class ClientSample:
    node: str
    pid: int
    program: str  # scu | qrscu
    operation: str  # echo | store | find | move ...


@dataclass
class Snapshot:
    lab: str
    time: float
    security: str
    wan: dict[str, Any]
    links: list[LinkSample] = field(default_factory=list)
    sas: list[SaSample] = field(default_factory=list)
    services: list[ServiceSample] = field(default_factory=list)
    clients: list[ClientSample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read, and why


LinkReader = Callable[[Lab, str], list[LinkSample]]
SaReader = Callable[[Lab, str], list[SaSample]]
ServiceReader = Callable[[Lab, Service], ServiceSample]
ClientReader = Callable[[Lab, str], list[ClientSample]]


def read_links(lab: Lab, node: str) -> list[LinkSample]:
    """Counters and queues of every interface of ``node`` but loopback (netlink)."""
    with IPRoute(netns=str(lab.netns_path(node)), flags=0) as ipr:
        queues: dict[int, tuple[int, int, int]] = {}
        for q in ipr.get_qdiscs():
            stats2 = q.get_attr("TCA_STATS2")
            queue = stats2.get_attr("TCA_STATS_QUEUE") if stats2 else None
            if queue:
                was = queues.get(q["index"], (0, 0, 0))
                queues[q["index"]] = (was[0] + queue["qlen"], was[1] + queue["backlog"],
                                      was[2] + queue["drops"])
        out = []
        for link in ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME"))
            stats = link.get_attr("IFLA_STATS64")
            if name == "lo" or not stats:
                continue
            qlen, backlog, qdrops = queues.get(link["index"], (0, 0, 0))
            out.append(LinkSample(node, name, stats["rx_bytes"], stats["tx_bytes"],
                                  stats["rx_packets"], stats["tx_packets"],
                                  stats["rx_dropped"] + stats["tx_dropped"], qlen, backlog,
                                  qdrops))
    return out


def read_sas(lab: Lab, node: str) -> list[SaSample]:
    """The CHILD_SAs charon in ``node`` reports (VICI list-sas)."""
    session = connect(lab.paths.node_run(node) / VICI_SOCKET)
    out = []
    for entry in session.list_sas():
        for ike in entry.values():
            for child in ike.get("child-sas", {}).values():
                def get(key: str, default: str = "0", c: dict[str, Any] = child) -> str:
                    value = c.get(key, default)
                    return value.decode() if isinstance(value, bytes) else str(value)
                algs = "/".join(get(k, "") for k in ("encr-alg", "integ-alg") if k in child)
                out.append(SaSample(node, get("name", "?"), get("state", "?"),
                                    get("spi-in", ""), get("spi-out", ""),
                                    int(get("bytes-in")), int(get("bytes-out")),
                                    int(get("packets-in")), int(get("packets-out")), algs))
    return out


def _service_pid(lab: Lab, svc: Service) -> int | None:
    for pid in pids_in_netns(lab.netns_path(svc.node)):
        info = describe(pid)
        if info and "lab.dicom.pacs" in info.command and f"--port={svc.port}" in info.command:
            return pid
    return None


def _endpoint(text: str) -> str:
    """``/proc/net/tcp``'s ``HEX_ADDRESS:HEX_PORT`` (the address in 32-bit words of host byte
    order, little-endian here) as ``address port``; IPv4-mapped IPv6 shown as IPv4."""
    addr, port = text.split(":")
    raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, len(addr), 8))
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return f"{ip} {int(port, 16)}"


def established(pid: int, port: int) -> list[str]:
    """Remote ends (``address port``) of the established TCP connections to local ``port``,
    from ``/proc/PID/net/tcp`` and ``tcp6`` (state 01 = ESTABLISHED)."""
    return [_endpoint(remote) for state, local, remote in tcp_sockets(pid)
            if state == "01" and local == port]


def log_counts(text: str, open_now: int) -> tuple[int, int, int, int]:
    """From a service's log: associations accepted, objects stored, their bytes, and the
    objects stored since the ``open_now``-th last association was accepted (0 if none is
    open)."""
    objects = size = 0
    started: list[int] = []  # objects stored before each association was accepted
    for line in text.splitlines():
        stored = _STORED.search(line)
        if stored:
            objects += 1
            size += int(stored.group(1))
        elif _ASSOCIATION.search(line):
            started.append(objects)
    in_open = objects - started[-open_now] if 0 < open_now <= len(started) else 0
    return len(started), objects, size, in_open


def read_service(lab: Lab, svc: Service) -> ServiceSample:
    """The open associations of ``svc`` (if its process is found) and what its log says."""
    pid = _service_pid(lab, svc)
    peers = established(pid, svc.port) if pid else []
    text = svc.log.read_text(errors="replace") if svc.log.is_file() else ""
    associations, objects, size, in_open = log_counts(text, len(peers))
    return ServiceSample(svc.node, svc.name, svc.ae, svc.port, len(peers), tuple(peers),
                         associations, objects, size, in_open)


def read_clients(lab: Lab, node: str) -> list[ClientSample]:
    """The lab's DICOM client programs running in ``node`` and their operation."""
    out = []
    for pid in pids_in_netns(lab.netns_path(node)):
        info = describe(pid)
        if info is None:
            continue
        words = info.command.split()
        for program in _CLIENTS:
            if program in words:
                rest = words[words.index(program) + 1:]
                op = next((w for w in rest if not w.startswith("-")), "")
                out.append(ClientSample(node, pid, program.rsplit(".", 1)[1], op))
    return out


def charon_nodes(lab: Lab) -> list[str]:
    ipsec = lab.plan.ipsec
    return [] if ipsec is None else [ipsec.initiator.node, ipsec.responder.node]


def sample(lab: Lab, *, links: LinkReader = read_links, sas: SaReader = read_sas,
           service: ServiceReader = read_service, clients: ClientReader = read_clients
           ) -> Snapshot:
    """One snapshot of ``lab``. A part that cannot be read is named in ``problems`` (the rest
    is still shown): a watch must survive a service restarting under it."""
    wan = wan_apply.read_state(lab.paths)
    profile = as_dict(wan.wan) | {"path": wan.path or "unimpaired",
                                  "forward_text": describe_profile(wan.wan.forward),
                                  "reverse_text": describe_profile(wan.wan.reverse)}
    snap = Snapshot(lab.name, time.time(), lab.plan.label, profile)
    for node in lab.topology.nodes:
        try:
            snap.links += links(lab, node.name)
            snap.clients += clients(lab, node.name)
        except OSError as exc:
            snap.problems.append(f"{node.name}: {exc}")
    for node_name in charon_nodes(lab):
        try:
            snap.sas += sas(lab, node_name)
        except Exception as exc:  # vici raises its own exception types
            snap.problems.append(f"charon on {node_name}: {vici_error(exc)}")
    for svc in dicom_services(lab):
        snap.services.append(service(lab, svc))
    return snap


def rates(before: Snapshot, after: Snapshot) -> dict[str, dict[str, float]]:
    """Mbit/s between two snapshots: per link ``NODE:IFACE`` (rx, tx) and per SA
    ``NODE:NAME:SPI`` (in, out)."""
    dt = max(after.time - before.time, 1e-6)

    def mbit(b: int, a: int) -> float:
        return round(max(a - b, 0) * 8 / dt / 1e6, 3)

    out: dict[str, dict[str, float]] = {}
    old = {(x.node, x.interface): x for x in before.links}
    for x in after.links:
        was = old.get((x.node, x.interface))
        if was is not None:
            out[f"{x.node}:{x.interface}"] = {"rx_mbit_s": mbit(was.rx_bytes, x.rx_bytes),
                                              "tx_mbit_s": mbit(was.tx_bytes, x.tx_bytes)}
    old_sa = {(s.node, s.spi_in): s for s in before.sas}
    for s in after.sas:
        prev = old_sa.get((s.node, s.spi_in))
        if prev is not None:
            out[f"{s.node}:{s.name}:{s.spi_in}"] = {"in_mbit_s": mbit(prev.bytes_in, s.bytes_in),
                                                    "out_mbit_s": mbit(prev.bytes_out,
                                                                       s.bytes_out)}
    return out


def document(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """``after`` as JSON-ready data, with the rates since ``before`` beside each counter."""
    speed = rates(before, after)
    doc = asdict(after)
    doc["interval_seconds"] = round(after.time - before.time, 3)
    for link in doc["links"]:
        link.update(speed.get(f"{link['node']}:{link['interface']}",
                              {"rx_mbit_s": 0.0, "tx_mbit_s": 0.0}))
    for sa in doc["sas"]:
        sa.update(speed.get(f"{sa['node']}:{sa['name']}:{sa['spi_in']}",
                            {"in_mbit_s": 0.0, "out_mbit_s": 0.0}))
    for svc in doc["services"]:
        svc["peers"] = list(svc["peers"])
    return doc


def documents(lab: Lab, interval: float, read: Callable[[Lab], Snapshot] = sample
              ) -> Iterator[dict[str, Any]]:
    """Endless: one document every ``interval`` seconds, each with its rates since the one
    before (the first over a first ``interval``); take what you need (itertools.islice)."""
    before = read(lab)
    while True:
        time.sleep(interval)
        after = read(lab)
        yield document(before, after)
        before = after
