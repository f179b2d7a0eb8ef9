"""``scripts/bench --only security``: what protection costs, measured side by side.

For each configuration (plain, then IPsec per ESP algorithm, then DICOM TLS per profile and
cipher) one IPv4 lab is built with that security, and over the same path from the modality
to the PACS the benchmark measures the raw transport's throughput (iperf3 for TCP, server
side; for TLS a bulk TLS stream with the same profile and cipher, lab.bench.tlsbulk) and
DICOM C-STORE throughput (the lab's SCU to the lab's PACS) of two studies: a short one (40
CT objects, 21 MB), where association setup and the first round trips weigh, and a long one
(400 objects, 210 MB), the steady state. A second raw figure sends the same bulk stream (TLS,
or plain TCP) to a receiver that writes it into new files of the study's object size, as any
storage receiver must keep what it gets: the bulk receiver otherwise throws the bytes away,
and writing them costs this machine about as much as TLS itself (loopback: 9.8 Gbit/s of bulk
TLS, 5.1 into files). It prints one table per study with, per configuration, C-STORE / raw
(the target: at least 0.8, i.e. DICOM uses the protected path well), C-STORE / raw into files
(what DICOM and the lab's programs cost beyond storing the bytes) and protected / plain C-STORE
throughput (the cost of the choice).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import topology as topology_file
from lab.backends.base import Lab
from lab.bench.store import listener
from lab.dicom.data.generate import generate_study
from lab.errors import LabError
from lab.host import processes
from lab.model.topology import Family, Role
from lab.runtime import lifecycle
from lab.runtime.services import tls_arguments
from lab.topology import resolve_path

LAB = "bench-sec"
TOPOLOGY = "ipv4"
OBJECTS = 40  # the short study: 40 CT objects, about 21 MB
LONG_OBJECTS = 400  # the long study: 400 CT objects, about 210 MB
IPERF_PORT = 5201
IPERF_SECONDS = 3
RATIO_TARGET = 0.8

#: (label, --security value). ESP algorithms of the paper's comparison and today's defaults.
CASES: tuple[tuple[str, str], ...] = (
    ("plain", "none"),
    ("ipsec aes256gcm16", "ipsec,esp=aes256gcm16"),
    ("ipsec aes128gcm16", "ipsec,esp=aes128gcm16"),
    ("ipsec chacha20poly1305", "ipsec,esp=chacha20poly1305"),
    ("ipsec aes128-sha256", "ipsec,esp=aes128-sha256"),
    ("ipsec aes256-sha1", "ipsec,esp=aes256-sha1"),
    ("ipsec 3des-sha1", "ipsec,esp=3des-sha1"),
    ("ipsec blowfish-sha256", "ipsec,esp=blowfish-sha256"),
    ("tls bcp195-rfc8996", "tls"),
    ("tls extended DHE-RSA-AES128", "tls,profile=extended,cipher=DHE-RSA-AES128-GCM-SHA256"),
    ("tls aes (retired)", "tls,profile=aes"),
)


@dataclass(frozen=True)
class Measure:
    tcp_mbit: float  # raw transport: iperf3 or lab.bench.tlsbulk, received at the server
    store_mbit: float  # C-STORE bytes / transfer seconds, short study
    path: str  # ESP path or "-"
    long_mbit: float = 0.0  # the same, long study
    files_mbit: float = 0.0  # raw transport into new files of the study's object size


def _node(lab: Lab, role: Role) -> str:
    return next(n.name for n in lab.topology.nodes if n.role is role)


@contextmanager
def _lab(security: str, name: str = LAB) -> Iterator[Lab]:
    overrides = {"security": topology_file.security_override(security)}
    lab = lifecycle.up(resolve_path(TOPOLOGY), name, overrides=overrides)
    try:
        yield lab
    finally:
        lifecycle.down(name)


def iperf_mbit(lab: Lab, seconds: int = IPERF_SECONDS) -> float:
    """TCP throughput modality -> pacs as iperf3's server received it (Mbit/s)."""
    pacs, modality = _node(lab, Role.PACS), _node(lab, Role.MODALITY)
    host = str(lab.topology.node(pacs).addresses(Family.IPV4)[0].ip)
    with listener(lab, pacs, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], IPERF_PORT):
        res = lab.exec(modality, ["iperf3", "-c", host, "-p", str(IPERF_PORT),
                               "-t", str(seconds), "-J"], check=False, timeout=seconds + 30)
        try:
            doc = json.loads(res.stdout)
            return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e6
        except (ValueError, KeyError):
            raise LabError(f"iperf3 failed: {(res.stdout + res.stderr)[-1500:]}") from None


def tls_bulk_mbit(lab: Lab, mbytes: float = 200.0, object_bytes: int = 0) -> float:
    """Raw TLS throughput modality -> pacs with the lab's own TLS settings (lab.bench.tlsbulk),
    measured at the receiver: the TLS counterpart of iperf3's TCP figure (plain TCP when the
    lab has no TLS). ``object_bytes``: the receiver writes the stream into new files of that
    size, as a storage receiver must keep what it receives (they are removed afterwards)."""
    pacs, modality = _node(lab, Role.PACS), _node(lab, Role.MODALITY)
    host = str(lab.topology.node(pacs).addresses(Family.IPV4)[0].ip)
    log = lab.paths.node_data(pacs) / "tlsbulk.log"
    log.unlink(missing_ok=True)
    into = lab.paths.node_data(pacs) / "tlsbulk-into"
    shutil.rmtree(into, ignore_errors=True)
    sink = [f"--into={into}", f"--object-bytes={object_bytes}"] if object_bytes else []
    server = lab.spawn(pacs, [
        sys.executable, "-m", "lab.bench.tlsbulk", "serve", f"--port={IPERF_PORT}", *sink,
        *tls_arguments(lab, pacs)], log_path=log)
    try:
        deadline = time.monotonic() + 20
        while '"listening"' not in (log.read_text() if log.exists() else ""):
            if server.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"lab.bench.tlsbulk did not start: {log.read_text()[-1500:]}")
            time.sleep(0.05)
        lab.exec(modality, [
            sys.executable, "-m", "lab.bench.tlsbulk", "send", f"--host={host}",
            f"--port={IPERF_PORT}", f"--mbytes={mbytes}", *_client_tls(lab, modality)],
            timeout=300)
        server.wait(timeout=60)
        doc = json.loads(log.read_text().strip().splitlines()[-1])
        return float(doc["mbit_per_s"])
    finally:
        if server.poll() is None:
            processes.stop([server.pid])
        server.wait(timeout=10)
        shutil.rmtree(into, ignore_errors=True)


def _client_tls(lab: Lab, node: str) -> tuple[str, ...]:
    return tls_arguments(lab, node, client=True)


def store_mbit(lab: Lab, files: Sequence[Path], file_list: Path) -> float:
    pacs, modality = _node(lab, Role.PACS), _node(lab, Role.MODALITY)
    host = str(lab.topology.node(pacs).addresses(Family.IPV4)[0].ip)
    tls = _client_tls(lab, modality)
    res = lab.exec(modality, [
        sys.executable, "-m", "lab.dicom.scu", "store", f"--host={host}",
        f"--port={lab.plan.pacs_port}", f"--file-list={file_list}", *tls],
        check=False, timeout=600)
    try:
        doc = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        doc = {}
    if not doc.get("ok"):
        raise LabError(f"C-STORE failed: {res.stdout[-1000:]}{res.stderr[-1000:]}")
    size = sum(f.stat().st_size for f in files)
    return size * 8 / float(doc["seconds"]) / 1e6


def select_cases(patterns: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The cases whose label contains one of ``patterns`` (all of them without any); LabError
    if a pattern matches none."""
    if not patterns:
        return CASES
    for pattern in patterns:
        if not any(pattern in label for label, _ in CASES):
            raise LabError(f"no security case matches {pattern!r}; cases: "
                           f"{', '.join(label for label, _ in CASES)}")
    return tuple(c for c in CASES if any(p in c[0] for p in patterns))


def _study(work: Path, name: str, objects: int) -> tuple[list[Path], Path]:
    study = generate_study("CT", work / name, objects=objects)
    file_list = work / f"{name}.txt"
    file_list.write_text("\n".join(map(str, study.files)) + "\n")
    return list(study.files), file_list


def bench_security(repeat: int, progress: Callable[[str], None] = lambda _: None,
                   cases: Sequence[tuple[str, str]] = CASES, lab_name: str = LAB,
                   ) -> dict[str, list[Measure]]:
    work = Path(tempfile.mkdtemp(prefix="teleradlab-bench-sec-", dir="/tmp"))
    try:
        short = _study(work, "short", OBJECTS)
        long = _study(work, "long", LONG_OBJECTS)
        object_bytes = sum(f.stat().st_size for f in long[0]) // LONG_OBJECTS
        results: dict[str, list[Measure]] = {}
        for label, security in cases:
            progress(f"{label}: building the lab")
            with _lab(security, lab_name) as lab:
                path = lab.plan.ipsec.esp_path.value if lab.plan.ipsec else "-"
                runs = []
                for rep in range(1, repeat + 1):
                    progress(f"{label}: raw transport and C-STORE, repetition {rep}/{repeat}")
                    raw = (tls_bulk_mbit(lab) if lab.plan.tls is not None
                           else iperf_mbit(lab))
                    files = tls_bulk_mbit(lab, object_bytes=object_bytes)
                    runs.append(Measure(raw, store_mbit(lab, *short), path,
                                        store_mbit(lab, *long), files))
                results[label] = runs
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_security(results: dict[str, list[Measure]], repeat: int) -> None:
    """Two tables, the short study's and the long study's (see the module's doc)."""
    for long in (False, True):
        study = (f"{LONG_OBJECTS}-object CT study (about 210 MB, the steady state)" if long
                 else f"{OBJECTS}-object CT study (about 21 MB)")
        print(f"Protection cost: {TOPOLOGY} lab, modality -> pacs, unimpaired, median of "
              f"{repeat}; raw = iperf3 {IPERF_SECONDS} s (TCP) or lab.bench.tlsbulk 200 MB "
              f"(TLS); C-STORE = {study}:")
        _table(results, long)
    print(f"  C-STORE/raw target for protected paths: >= {RATIO_TARGET} (DICOM over the "
          "protected path vs the raw transport over the same path: iperf3 TCP, and for TLS a bulk "
          "TLS stream\n  with the same profile and cipher, lab.bench.tlsbulk). 'to files': the "
          "same bulk stream (TLS or TCP) written by the receiver into new files of the study's "
          "object size,\n  as every storage receiver must: what the path can carry into a store "
          "on this machine, so C-STORE/files is what DICOM and the lab's programs cost on top.\n"
          "  'vs plain': protected C-STORE throughput / plain C-STORE throughput (the cost of "
          "each choice).")


def _table(results: dict[str, list[Measure]], long: bool) -> None:
    def store(m: Measure) -> float:
        return m.long_mbit if long else m.store_mbit

    print(f"  {'configuration':28} {'ESP path':9} {'raw Mbit/s':>10} {'to files':>9} "
          f"{'C-STORE Mbit/s':>14} {'C-STORE/raw':>11} {'/files':>6} {'vs plain':>8}")
    plain = statistics.median(map(store, results["plain"])) if "plain" in results else 0.0
    for label, runs in results.items():
        tcp = statistics.median(m.tcp_mbit for m in runs)
        files = statistics.median(m.files_mbit for m in runs)
        mbit = statistics.median(map(store, runs))
        ratio = mbit / tcp if tcp else 0.0
        to_files = mbit / files if files else 0.0
        mark = "" if label == "plain" else "  " + ", ".join(
            f"{what} {'meets' if r >= RATIO_TARGET else 'MISSES'}"
            for what, r in (("raw", ratio), ("files", to_files)))
        versus = f"{mbit / plain:8.2f}" if plain else "       -"
        print(f"  {label:28} {runs[0].path:9} {tcp:10.1f} {files:9.1f} {mbit:14.1f} "
              f"{ratio:11.2f} {to_files:6.2f} {versus}{mark}")
