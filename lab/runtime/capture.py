"""Packet captures of a running lab for teaching: one pcapng file per node, made by ``dumpcap``
inside the node, with what Wireshark needs to decrypt it embedded in the file.

- DICOM TLS: while a capture runs, the environment variable :data:`KEYLOG_ENV` names a key-log
  file, so the DICOM programs a run starts in the nodes (the SCU's associations: C-ECHO,
  C-STORE, C-FIND, the C-MOVE request) append their TLS secrets to it in the NSS key-log format
  (:mod:`lab.dicom.ul.tlsopts`). When the capture stops, ``editcap --inject-secrets tls,FILE``
  writes them into a Decryption Secrets Block of the pcapng file (pcapng specification,
  draft-ietf-opsawg-pcapng, "Decryption Secrets Block", secrets type 0x544c534b, TLS key log),
  and Wireshark/tshark open the file decrypted with no setting to make. The archive's own
  associations (C-MOVE sub-operations) come from a PACS started at ``up``, before the capture:
  their secrets are not in the log, and they stay encrypted.
- IPsec: with strongSwan's ``kernel-libipsec`` (this lab's userspace ESP) the SA keys stay in
  charon (Debian's strongSwan exports none), so the ESP payload cannot be decrypted. The
  teaching choice is ``esp=null-sha256``: ESP with the NULL cipher (RFC 2410, RFC 4303 2.4),
  integrity only, which Wireshark decodes with its ESP heuristic (:data:`ESP_NULL_OPTION`).
  Kernel ESP (XFRM) would let the keys be written as Wireshark's ``esp_sa`` table: not done.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyroute2 import IPRoute

from lab.backends.base import Lab
from lab.dicom.ul.tlsopts import KEYLOG_ENV
from lab.errors import LabError
from lab.host import processes, shell
from lab.host.files import write_bytes
from lab.host.wait import Deadline
from lab.model.plan import EspPath
from lab.model.topology import Role

__all__ = ["ESP_NULL_OPTION", "KEYLOG_ENV", "CaptureResult", "Target", "capturing",
           "default_targets", "notes", "parse_target", "tshark_options"]

#: The tshark / Wireshark preference that decodes NULL-encrypted ESP payloads (Preferences >
#: Protocols > ESP > "Attempt to detect/decode NULL encrypted ESP payloads").
ESP_NULL_OPTION = "esp.enable_null_encryption_decode_heuristic:TRUE"
#: The throwaway RSA key file of the DICOM-in-TLS dissector mapping (:func:`tshark_options`).
DISSECTOR_KEY = "wireshark-dicom-tls.key"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
#: dumpcap stops by itself after this long, should the lab's owner forget it (seconds).
MAX_SECONDS = 3600


@dataclass(frozen=True)
class Target:
    """Where to capture: a node and the interfaces in it (all of one file)."""

    node: str
    interfaces: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.node}:{','.join(self.interfaces)}"


@dataclass
class CaptureResult:
    """What a capture wrote: a pcapng per node, and whether TLS secrets were embedded."""

    files: dict[str, Path] = field(default_factory=dict)
    #: with secrets embedded: each file as the wire saw it, without them (``NAME-wire.pcapng``)
    wire: dict[str, Path] = field(default_factory=dict)
    keylog: Path | None = None
    secrets_embedded: bool = False
    notes: list[str] = field(default_factory=list)
    tshark: list[str] = field(default_factory=list)  # options that open the files readable


def default_targets(lab: Lab) -> list[Target]:
    """The WAN router's interface towards the first site: everything crossing the WAN, once."""
    for node in lab.topology.nodes:
        if node.role is Role.WAN:
            return [Target(node.name, (node.interfaces[0].name,))]
    raise LabError(f"lab {lab.name} has no WAN router; name the nodes to capture on (--node)")


def parse_target(lab: Lab, text: str) -> Target:
    """``NODE`` (its interfaces of the topology) or ``NODE:IFACE[,IFACE...]`` (any interface
    the node has, e.g. a gateway's ``ipsec0``); LabError naming the node or interface if
    unknown."""
    name, _, ifaces = text.partition(":")
    names = [n.name for n in lab.topology.nodes]
    if name not in names:
        raise LabError(f"--node {text}: lab {lab.name} has no node {name!r} "
                       f"(nodes: {', '.join(names)})")
    node = lab.topology.node(name)
    if not ifaces:
        return Target(name, tuple(i.name for i in node.interfaces))
    live = _live_interfaces(lab, name)
    wanted = tuple(i for i in ifaces.split(",") if i)
    unknown = [i for i in wanted if i not in live]
    if unknown or not wanted:
        raise LabError(f"--node {text}: node {name} has no interface "
                       f"{', '.join(map(repr, unknown or ['']))} (it has: {', '.join(live)})")
    return Target(name, wanted)


def _live_interfaces(lab: Lab, node: str) -> list[str]:
    with IPRoute(netns=str(lab.netns_path(node)), flags=0) as ipr:
        return sorted(str(link.get("ifname")) for link in ipr.get_links()
                      if link.get("ifname") != "lo")


def dumpcap_argv(target: Target, path: Path, seconds: int = MAX_SECONDS) -> list[str]:
    """dumpcap writing pcapng (its default format) from every interface of ``target``, stopping
    by itself after ``seconds``."""
    argv = ["dumpcap", "-q"]
    for iface in target.interfaces:
        argv += ["-i", iface]
    return [*argv, "-a", f"duration:{seconds}", "-w", str(path)]


def tshark_options(lab: Lab, folder: Path) -> list[str]:
    """tshark (or wireshark) options that make a capture of ``lab`` readable: the DICOM
    dissector on the lab's ports in clear (they are not all DICOM's registered 104), on its
    TLS port inside the decrypted TLS, and with NULL-encrypted ESP the ESP payload decoded.

    Wireshark 4.0 maps a TLS port to an inner dissector only through its RSA keys table
    (``ssl_keys``), whose entries need an RSA key file: :func:`write_dissector_key` writes a
    throwaway one into ``folder`` (it decrypts nothing; the key log embedded in the file does)."""
    out: list[str] = []
    clear = {lab.plan.pacs_port, lab.plan.receiver_port}
    if lab.plan.tls is not None:
        clear.discard(lab.plan.tls.port)
        key = folder / DISSECTOR_KEY
        out += ["-o", f'uat:ssl_keys:"0.0.0.0","{lab.plan.tls.port}","dicom","{key}",""']
    for port in sorted(clear):
        out += ["-d", f"tcp.port=={port},dicom"]
    if _esp_null(lab):
        out += ["-o", ESP_NULL_OPTION]
    return out


def write_dissector_key(folder: Path) -> Path:
    """The throwaway RSA key :func:`tshark_options` names (see there)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / DISSECTOR_KEY
    write_bytes(path, key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return path


def _esp_null(lab: Lab) -> bool:
    ipsec = lab.plan.ipsec
    return ipsec is not None and any(a.keyword == "null" for a in ipsec.esp.algorithms)


def notes(lab: Lab) -> list[str]:
    """What a capture of ``lab`` can and cannot show, in words for the class."""
    out = []
    ipsec = lab.plan.ipsec
    if ipsec is not None:
        if ipsec.esp_path is EspPath.LIBIPSEC:
            out.append("ESP runs in userspace here (strongSwan kernel-libipsec, ESP in UDP port "
                       "4500): its keys stay inside charon and cannot be exported, so Wireshark "
                       "cannot decrypt the ESP payload.")
        else:
            out.append("ESP runs in the kernel: writing its SA keys as Wireshark's esp_sa table "
                       "is not implemented; the ESP payload stays encrypted in the capture.")
        if _esp_null(lab):
            out.append(f"ESP uses the NULL cipher ({ipsec.esp.text}: integrity only, RFC 2410): "
                       f"the DICOM inside ESP is readable with tshark -o {ESP_NULL_OPTION}.")
        else:
            out.append("To see the DICOM inside ESP, build the lab with --security "
                       "ipsec,esp=null-sha256 (ESP with integrity only, no encryption).")
    if lab.plan.tls is not None:
        out.append("DICOM TLS: the secrets of the associations the SCU opens while the capture "
                   "runs are embedded in the file (Wireshark decrypts it with no setting); the "
                   "PACS's own associations (C-MOVE sub-operations) stay encrypted.")
    return out


@contextmanager
def capturing(lab: Lab, targets: Sequence[Target], out: Path,
              seconds: int = MAX_SECONDS) -> Iterator[CaptureResult]:
    """Capture on ``targets`` while the body runs, with :data:`KEYLOG_ENV` set in this process
    (so node programs started meanwhile log their TLS secrets); on exit stop every dumpcap by
    its process id, then embed the secrets. Nothing is left running on failure.

    Network-namespace labs only: a docker node has no dumpcap, and ``docker exec`` would not
    pass the key-log variable to the programs in it."""
    if lab.backend.name == "docker":
        raise LabError(f"lab {lab.name} runs on docker: teleradlab capture works on netns labs "
                       "(the docker WAN router has tcpdump, to capture by hand)")
    out = out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    result = CaptureResult(keylog=out / "tls-keys.log", notes=notes(lab),
                           tshark=tshark_options(lab, out))
    assert result.keylog is not None
    result.keylog.unlink(missing_ok=True)
    started: list[tuple[Target, Path, subprocess.Popen[bytes]]] = []
    previous = os.environ.get(KEYLOG_ENV)
    try:
        for target in targets:
            path = out / f"{lab.name}-{target.node}.pcapng"
            path.unlink(missing_ok=True)
            log = out / f"{lab.name}-{target.node}.dumpcap.log"
            log.unlink(missing_ok=True)
            started.append((target, path, lab.spawn(target.node, dumpcap_argv(target, path,
                                                                               seconds),
                                                    log_path=log)))
        _wait_started(started)
        os.environ[KEYLOG_ENV] = str(result.keylog)
        yield result
        time.sleep(0.3)  # the last packets reach the files
    finally:
        if previous is None:
            os.environ.pop(KEYLOG_ENV, None)
        else:
            os.environ[KEYLOG_ENV] = previous
        _stop(started)
    for target, path, _ in started:
        result.files[target.node] = path
    if result.keylog.is_file() and result.keylog.stat().st_size > 0:
        for node, path in result.files.items():
            result.wire[node] = path.with_name(f"{path.stem}-wire.pcapng")
            shutil.copyfile(path, result.wire[node])
            embed_secrets(path, result.keylog)
        result.secrets_embedded = True
    if lab.plan.tls is not None:
        write_dissector_key(out)


def _wait_started(started: Sequence[tuple[Target, Path, subprocess.Popen[bytes]]]) -> None:
    """Return once every dumpcap has written its file's header; LabError with its log if one
    exits or is slow (the others are stopped by the caller's ``finally``)."""
    deadline = Deadline(START_TIMEOUT)
    for target, path, proc in started:
        while not (path.is_file() and path.stat().st_size > 0):
            log = path.with_suffix(".dumpcap.log")
            if proc.poll() is not None or deadline.expired:
                tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
                raise LabError(f"dumpcap on {target.label} did not start: {tail.strip()}")
            time.sleep(0.05)


def _stop(started: Sequence[tuple[Target, Path, subprocess.Popen[bytes]]]) -> None:
    """SIGINT (dumpcap closes its file cleanly), then SIGTERM/SIGKILL by process id."""
    for _, _, proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = Deadline(STOP_TIMEOUT)
    for _, _, proc in started:
        try:
            proc.wait(timeout=max(0.1, deadline.remaining()))
        except subprocess.TimeoutExpired:
            processes.stop([proc.pid])
            proc.wait(timeout=5)


def embed_secrets(pcap: Path, keylog: Path) -> None:
    """Write the TLS key log into ``pcap`` as a Decryption Secrets Block (in place, through a
    temporary file renamed over it)."""
    tmp = pcap.with_name(pcap.name + ".tmp")
    try:
        shell.run(["editcap", "--inject-secrets", f"tls,{keylog}", str(pcap), str(tmp)],
                  timeout=120)
        tmp.replace(pcap)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Summary:
    """What tshark sees in a capture: frames in all, frames carrying each protocol of
    interest, IP frames outside IPsec (neither ESP nor IKE, nor link-local), IPv6 link-local
    control frames (neighbour discovery, MLD: never routed, so they say nothing of the sites
    beyond the link), DICOM P-DATA-TF PDUs (PS3.8 9.3.5), and the patient names (0010,0010)
    the DICOM dissector shows."""

    frames: int
    esp: int
    outside_ipsec: int
    tls: int
    dicom: int
    p_data: int
    patient_names: tuple[str, ...]
    link_local: int = 0

    @property
    def readable(self) -> bool:
        return bool(self.patient_names)


_PATIENT_NAME = re.compile(r"\(0010,0010\)\s+\d+ Patient's Name\s+\[PN\] (.+?)\s*$", re.M)


def summarize(pcap: Path, options: Sequence[str], timeout: float = 120) -> Summary:
    """Read ``pcap`` with tshark and ``options`` (:func:`tshark_options`): two passes, one for
    the protocols of every frame, one for the DICOM elements of the DICOM frames."""
    base = ["tshark", "-r", str(pcap), *options]
    rows = shell.run([*base, "-T", "fields", "-E", "separator=|", "-e", "frame.protocols",
                      "-e", "dicom.pdu.type", "-e", "ipv6.src", "-e", "ipv6.dst"],
                     timeout=timeout).stdout.splitlines()
    stacks = [[*r.split("|"), "", "", ""][:4] for r in rows if r]

    def count(proto: str) -> int:
        return sum(1 for s in stacks if proto in s[0].split(":"))

    outside = local = 0
    for protocols, _, src, dst in stacks:
        layers = set(protocols.split(":"))
        if not layers & {"ip", "ipv6"} or layers & {"esp", "isakmp"}:
            continue
        if "icmpv6" in layers and _link_local(src, dst):
            local += 1
        else:
            outside += 1
    p_data = sum(s[1].split(",").count("0x04") for s in stacks)
    detail = shell.run([*base, "-Y", "dicom", "-V"], timeout=timeout).stdout
    names = sorted({m.strip() for m in _PATIENT_NAME.findall(detail)} - {"<Empty>"})
    return Summary(len(stacks), count("esp"), outside, count("tls"), count("dicom"), p_data,
                   tuple(names), local)


def _link_local(src: str, dst: str) -> bool:
    """An IPv6 packet that never leaves its link: to a link-scope multicast group (ff02::/16),
    or between link-local (or unspecified: duplicate address detection) addresses."""
    try:
        a, b = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    except ValueError:
        return False
    if b.is_multicast and (int(b) >> 112) & 0xF == 2:  # scope 2: link-local
        return True
    return (a.is_link_local or a.is_unspecified) and (b.is_link_local or b.is_multicast)
