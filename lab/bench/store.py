"""``scripts/bench --only store``: C-STORE of one 100-object CT study from the modality to the
PACS over the unimpaired path of one IPv4 lab (lab ``bench-store``), by the lab's SCU to the lab's
PACS and by DCMTK's storescu to DCMTK's storescp, plus the cross pairs and a second lab PACS run
with ``--sync object`` (an fdatasync per object, which storescp never does); printed as DCMTK
time / lab time of the whole process (targets: the lab's SCU against storescu, both to
storescp, at least 1.0; the lab's SCU and PACS, as a lab runs it, against storescu and
storescp, at least 0.5), with the CPU time each receiver spent on the study, which says where
a difference comes from."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.backends.base import Lab
from lab.dicom import MODALITY_AE, PACS_AE, PACS_PORT
from lab.dicom.data.generate import generate_study
from lab.dicom.reports import ReportError, parse_output
from lab.errors import LabError
from lab.host import processes, programs
from lab.host.wait import until
from lab.model.topology import Family, Role
from lab.runtime import lifecycle
from lab.topology import resolve_path

STORE_LAB = "bench-store"
STORE_TOPOLOGY = "ipv4"  # DCMTK 3.6.7 has no IPv6
STORE_OBJECTS = 100
STORE_PDU = 131072  # the largest PDU DCMTK 3.6.7 accepts; used by every sender and receiver
DCMTK_PORT = 11114  # DCMTK's storescp, beside the lab's PACS on 11112 in the same node
SYNC_PORT = 11115  # a second lab PACS in the same node, run with --sync object
#: The targets for DCMTK time / lab time, the whole process (wall clock; 1 = as fast as DCMTK).
#: Issue 15: the lab's C-STORE SCU at least as fast as storescu, start included ("1.0 today,
#: keep it": the SCUs' figure, both to storescp, when it was filed). Issue 3: the lab's SCU and
#: PACS at least half as fast as storescu and storescp (stock pynetdicom measured ~0.1).
STORE_RATIO_TARGET = 1.0
PAIR_RATIO_TARGET = 0.5
#: DCMTK log lines carry a timestamp (seconds since the epoch, then milliseconds with fraction),
#: so its association setup and transfer can be timed like the lab SCU's JSON report does.
_DCMTK_LOG_CONFIG = """\
log4cplus.rootLogger = INFO, console
log4cplus.appender.console = log4cplus::ConsoleAppender
log4cplus.appender.console.logToStderr = true
log4cplus.appender.console.ImmediateFlush = true
log4cplus.appender.console.layout = log4cplus::PatternLayout
log4cplus.appender.console.layout.ConversionPattern = %D{%s.%Q} %m%n
"""
_DCMTK_LINE = re.compile(r"^(\d+)\.(\d+(?:\.\d+)?) (.*)$")


def dcmtk_tool(name: str) -> str:
    """The path of DCMTK's ``name`` (storescu, storescp, ...).

    Looked up in the system directories only, and checked to be DCMTK's: pynetdicom installs
    programs of the same names (storescu, storescp, echoscu, findscu, movescu) into the
    virtualenv, which comes first on PATH when the lab's environment is active."""
    program = programs.BY_NAME[name]
    for place in program.places:
        path = Path(place)
        if not os.access(path, os.X_OK):
            continue
        res = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
        if "dcmtk" in (res.stdout + res.stderr).lower():
            return str(path)
    raise LabError(f"DCMTK's {name} is not installed ({programs.install_command([program])})")


@dataclass(frozen=True)
class StoreTiming:
    """One C-STORE of the study. ``wall``: the whole command in the node (nsenter, program start,
    association, transfer, release, exit); ``setup``: A-ASSOCIATE-RQ sent to A-ASSOCIATE-AC
    received; ``transfer``: first C-STORE-RQ sent to last C-STORE-RSP received; ``receiver_cpu``:
    the CPU time (user and system, every thread) the receiving process spent meanwhile."""

    wall: float
    setup: float
    transfer: float
    receiver_cpu: float = 0.0


@dataclass(frozen=True)
class Pair:
    label: str
    sender: str  # "lab" or "dcmtk"
    port: int  # the receiver: the lab's PACS or DCMTK's storescp


PAIRS = (
    Pair("lab SCU -> lab PACS", "lab", PACS_PORT),
    Pair("DCMTK storescu -> DCMTK storescp", "dcmtk", DCMTK_PORT),
    Pair("lab SCU -> DCMTK storescp", "lab", DCMTK_PORT),
    Pair("DCMTK storescu -> lab PACS", "dcmtk", PACS_PORT),
    Pair("lab SCU -> lab PACS --sync object", "lab", SYNC_PORT),
)


class StoreBench:
    """Runs the senders inside the modality node of a running lab, timing each one."""

    def __init__(self, lab: Lab, work: Path) -> None:
        self.lab = lab
        self.files: list[str] = []
        self.modality = _node(lab, Role.MODALITY)
        self.pacs = _node(lab, Role.PACS)
        self.host = str(lab.topology.node(self.pacs).addresses(Family.IPV4)[0].ip)
        self.log_config = work / "dcmtk-log.cfg"
        self.log_config.write_text(_DCMTK_LOG_CONFIG)
        self.file_list = work / "files.txt"
        self.storescu_path = dcmtk_tool("storescu")
        self._receivers: dict[int, int] = {}  # port: pid of the receiver listening there

    def use(self, files: Sequence[Path]) -> None:
        """Send these files from now on."""
        self.files = [str(f) for f in files]
        self.file_list.write_text("\n".join(self.files) + "\n")

    def _run(self, argv: Sequence[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
        full = self.lab.backend.node_argv(self.lab.name, self.modality, argv)
        start = time.perf_counter()
        res = subprocess.run(full, capture_output=True, text=True, timeout=600, check=False)
        return time.perf_counter() - start, res

    def lab_scu(self, port: int) -> StoreTiming:
        wall, res = self._run([sys.executable, "-m", "lab.dicom.scu", "store",
                               f"--host={self.host}", f"--port={port}", f"--pdu={STORE_PDU}",
                               f"--file-list={self.file_list}"])
        try:
            report = parse_output("store", res.stdout)
        except ReportError:
            report = None
        if report is None or not report.ok or report.seconds is None:
            raise LabError(f"the lab's SCU failed (status {res.returncode}): "
                           f"{res.stdout.strip()[-1000:]}\n{res.stderr.strip()[-2000:]}")
        return StoreTiming(wall, report.setup_seconds or 0.0, report.seconds)

    def storescu(self, port: int, called: str = PACS_AE) -> StoreTiming:
        argv = ["env", "TCP_NODELAY=1", self.storescu_path, "-lc", str(self.log_config),
                "-aet", MODALITY_AE, "-aec", called, "-xe", "--max-pdu", str(STORE_PDU),
                self.host, str(port), *self.files]
        wall, res = self._run(argv)
        events = _dcmtk_events(res.stderr + res.stdout)
        stored = sum(1 for _, msg in events if msg == "Received Store Response (Success)")
        if res.returncode != 0 or stored != len(self.files):
            raise LabError(f"storescu stored {stored} of {len(self.files)} objects (status "
                           f"{res.returncode}):\n{(res.stderr + res.stdout)[-2000:]}")
        requested = _first(events, "Requesting Association")
        accepted = _first(events, "Association Accepted")
        released = _first(events, "Releasing Association")
        return StoreTiming(wall, accepted - requested, released - accepted)

    def once(self, pair: Pair) -> StoreTiming:
        pid = self._receivers.get(pair.port)
        if pid is None:
            pid = self._receivers[pair.port] = _listener_pid(self.lab, self.pacs, pair.port)
        before = _cpu_seconds(pid)
        timing = self.lab_scu(pair.port) if pair.sender == "lab" else self.storescu(pair.port)
        return dataclasses.replace(timing, receiver_cpu=_cpu_seconds(pid) - before)


def _listener_pid(lab: Lab, node: str, port: int) -> int:
    """The process listening on TCP ``port`` in ``node`` (as ss(8) there names it)."""
    out = lab.exec(node, ["ss", "-Hltnp", f"sport = :{port}"], check=False).stdout
    m = re.search(r"pid=(\d+)", out)
    if m is None:
        raise LabError(f"no process listens on port {port} in {node}: {out.strip()!r}")
    return int(m[1])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, its ended threads included (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _dcmtk_events(log: str) -> list[tuple[float, str]]:
    events = []
    for line in log.splitlines():
        if m := _DCMTK_LINE.match(line):
            events.append((int(m[1]) + float(m[2]) / 1000, m[3].strip()))
    return events


def _first(events: Sequence[tuple[float, str]], prefix: str) -> float:
    for when, msg in events:
        if msg.startswith(prefix):
            return when
    raise LabError(f"storescu's log has no line {prefix!r}")


def _node(lab: Lab, role: Role) -> str:
    for node in lab.topology.nodes:
        if node.role is role:
            return node.name
    raise LabError(f"topology {lab.topology.name} has no {role.value} node")


@contextmanager
def _storescp(lab: Lab, out_dir: Path, log: Path) -> Iterator[None]:
    """DCMTK's storescp in the PACS node on DCMTK_PORT, writing what it receives to ``out_dir``
    byte for byte (+B, as the lab's PACS stores the encoded dataset); stopped by process id."""
    pacs = _node(lab, Role.PACS)
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = ["env", "TCP_NODELAY=1", dcmtk_tool("storescp"), "-aet", PACS_AE, "+xa", "+B",
            "--max-pdu", str(STORE_PDU), "-od", str(out_dir), str(DCMTK_PORT)]
    with listener(lab, pacs, argv, DCMTK_PORT, log):
        yield


@contextmanager
def _sync_pacs(lab: Lab, root: Path, log: Path) -> Iterator[None]:
    """A second lab PACS in the PACS node on SYNC_PORT, storing under ``root`` with an
    fdatasync per object before each answer (``--sync object``); stopped by process id."""
    pacs = _node(lab, Role.PACS)
    argv = [sys.executable, "-m", "lab.dicom.pacs", f"--root={root}", f"--port={SYNC_PORT}",
            "--storage-only", "--sync=object", "-v"]
    with listener(lab, pacs, argv, SYNC_PORT, log):
        yield


@contextmanager
def listener(lab: Lab, node: str, argv: Sequence[str], port: int,
             log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running in ``node`` once a TCP socket listens on ``port`` there (LabError with
    its log otherwise); stopped by process id afterwards."""
    proc = lab.spawn(node, list(argv), log_path=log)

    def why() -> str:
        return log.read_text(errors="replace")[-2000:] if log and log.exists() else ""

    def listening() -> bool:
        if lab.exec(node, ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip():
            return True
        if proc.poll() is not None:
            raise LabError(f"{argv[0]} exited before listening on {port} in {node}: {why()}")
        return False

    try:
        until(listening, 10.0, what=f"{argv[0]} listening on {port} in {node}", detail=why)
        yield proc
    finally:
        if proc.poll() is None:
            processes.stop([proc.pid])
        proc.wait(timeout=10)


@contextmanager
def cli_lab(topology: str, name: str, *options: str) -> Iterator[Lab]:
    """Lab ``name``, built and removed by the real command line (``teleradlab up``/``down``)."""
    cli = [sys.executable, "-m", "lab"]
    res = subprocess.run([*cli, "up", str(resolve_path(topology)), "--name", name, *options],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LabError(f"could not build lab {name}: {res.stderr.strip()[-2000:]}")
    try:
        yield lifecycle.attach(name)
    finally:
        subprocess.run([*cli, "down", name], capture_output=True, check=False)


def bench_store(repeat: int, progress: Callable[[str], None] = lambda _: None,
                ) -> tuple[dict[str, list[StoreTiming]], int]:
    """Every pair of PAIRS, ``repeat`` times (interleaved); returns the timings and the bytes of
    a study.

    Every receiver gets a study it does not hold yet, as in real use: each repetition makes two
    new studies (same profile and sizes, other UIDs), one for DCMTK's storescu to the lab's
    PACS and one for every other pair. storescp's folder is emptied between its pairs, outside
    the timing; without new studies the lab's archives would, inside it, replace (and delete)
    the objects of the previous repetition."""
    dcmtk_tool("storescu")  # fail before building anything
    dcmtk_tool("storescp")
    work = Path(tempfile.mkdtemp(prefix="teleradlab-bench-", dir="/tmp"))  # not /run: nodes
    try:
        results: dict[str, list[StoreTiming]] = {p.label: [] for p in PAIRS}
        size = 0
        with (cli_lab(STORE_TOPOLOGY, STORE_LAB) as lab,
              _storescp(lab, work / "storescp", work / "storescp.log"),
              _sync_pacs(lab, work / "sync-store", work / "sync.log")):
            bench = StoreBench(lab, work)
            for rep in range(1, repeat + 1):
                studies = [generate_study("CT", work / f"study-{rep}-{i}", objects=STORE_OBJECTS,
                                          seed=2 * rep + i) for i in (0, 1)]
                size = studies[0].total_bytes
                for pair in PAIRS:
                    progress(f"repetition {rep}/{repeat}: {pair.label}")
                    dcmtk_to_lab = pair.sender == "dcmtk" and pair.port == PACS_PORT
                    bench.use(studies[1 if dcmtk_to_lab else 0].files)
                    results[pair.label].append(bench.once(pair))
                    _check_storescp(work / "storescp", pair, STORE_OBJECTS)
                for study in studies:
                    shutil.rmtree(study.files[0].parent, ignore_errors=True)
        return results, size
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_storescp(out_dir: Path, pair: Pair, expected: int) -> None:
    """storescp wrote every object (then its folder is emptied for the next sender)."""
    if pair.port != DCMTK_PORT:
        return
    files = list(out_dir.iterdir())
    for f in files:
        f.unlink()
    if len(files) != expected:
        raise LabError(f"{pair.label}: storescp wrote {len(files)} of {expected} objects")


def _median(timings: Sequence[StoreTiming], field: str) -> float:
    return float(statistics.median(getattr(t, field) for t in timings))


def print_store(results: dict[str, list[StoreTiming]], size: int, repeat: int) -> None:
    print(f"C-STORE of one {STORE_OBJECTS}-object CT study ({size / 1e6:.1f} MB), "
          f"{STORE_TOPOLOGY} lab, modality -> pacs, unimpaired, max PDU {STORE_PDU}, "
          f"TCP_NODELAY, median of {repeat}:")
    print(f"  {'sender -> receiver':34} {'wall s':>7} {'assoc s':>8} {'transfer s':>10} "
          f"{'MB/s':>7} {'rcv CPU s':>9}")
    for label, timings in results.items():
        transfer = _median(timings, "transfer")
        print(f"  {label:34} {_median(timings, 'wall'):7.3f} {_median(timings, 'setup'):8.3f} "
              f"{transfer:10.3f} {size / transfer / 1e6:7.1f} "
              f"{_median(timings, 'receiver_cpu'):9.3f}")
    print("  wall: the whole command run in the node (nsenter, program start - for the lab's SCU "
          "a Python\n  interpreter and its imports -, reading the files, association, transfer, "
          "release, exit);\n  assoc: A-ASSOCIATE-RQ to -AC; transfer: first C-STORE-RQ to last "
          "C-STORE-RSP (lab SCU: its JSON\n  'seconds'; DCMTK: timestamps of its log). "
          "The lab's PACS, as a lab runs it, and storescp\n  write what they receive without "
          "flushing it to disk; the PACS run with --sync object\n  makes every object durable "
          "(one fdatasync) before answering its C-STORE.\n  rcv CPU: what the receiving "
          "process (every thread, user and system) spent meanwhile, in clock\n  ticks of "
          "10 ms: its own work per study.")
    dcmtk = results[PAIRS[1].label]
    # Issue 15's "1.0 today, keep it" was the SCUs' figure (README then: the lab's SCU matches
    # storescu to storescp); the lab's SCU and PACS together against storescu and storescp
    # were at 0.57-0.76, judged by issue 3's 0.5.
    comparisons = (
        ("lab SCU vs storescu, both to storescp  (issue 15)", results[PAIRS[2].label], dcmtk,
         STORE_RATIO_TARGET),
        ("lab SCU vs storescu, both to the lab PACS", results[PAIRS[0].label],
         results[PAIRS[3].label], None),
        (f"{PAIRS[0].label} vs {PAIRS[1].label}  (issue 3)", results[PAIRS[0].label], dcmtk,
         PAIR_RATIO_TARGET),
        (f"{PAIRS[4].label} vs {PAIRS[1].label}  (durable before answering; storescp never "
         "flushes)", results[PAIRS[4].label], dcmtk, None),
    )
    for title, lab, other, target in comparisons:
        print(f"  {title}")
        for field, what in (("wall", "wall clock, association included"),
                            ("transfer", "transfer only")):
            ratio = _median(other, field) / _median(lab, field)
            if target is None or field != "wall":
                print(f"    DCMTK / lab time, {what + ':':33} {ratio:5.2f}   (for information)")
            else:
                verdict = "meets" if ratio >= target else "MISSES"
                print(f"    DCMTK / lab time, {what + ':':33} {ratio:5.2f}   target >= {target}  "
                      f"({verdict} the target)")
