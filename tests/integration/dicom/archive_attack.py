"""The archive under attack (test_archive_*): ``python -m lab.dicom.pacs`` as a process on a free
loopback port with its memory and CPU time read from /proc, the timers and limits the tests give
it, and legitimate clients that are independent implementations (DCMTK's echoscu and findscu,
pynetdicom), never the lab's own SCU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE

from .archive_wire import A_ABORT, ARCHIVE_AE, HOST, STUDY_FIND, VERIFICATION, Outcome

REPO = Path(__file__).resolve().parents[3]
DCMTK = Path("/usr/bin")
#: The contract: the archive's memory stays under this whatever the peers send.
MEMORY_LIMIT_KB = 300 * 1024
#: Above this the archive is killed at once, to protect the machine (and the test fails).
GUARD_KB = 2 * 1024 * 1024
#: A legitimate client is answered within this, under every attack.
LEGIT_SECONDS = 1.0


# --- the archive as a process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _supported_options() -> str:
    return subprocess.run([sys.executable, "-m", "lab.dicom.pacs", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60).stdout


@dataclass(repr=False)
class Archive:
    """``python -m lab.dicom.pacs`` on a free loopback port; its memory watched all along."""

    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    log: Path
    peak_kb: int = 0
    guard_tripped: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def __repr__(self) -> str:
        return f"Archive(pid={self.pid}, port={self.port}, peak={self.peak_kb // 1024} MB)"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _status(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {key} for {self.pid}")

    def rss_kb(self) -> int:
        return self._status("VmRSS")

    def hwm_kb(self) -> int:
        """Peak resident memory (VmHWM), or the watcher's peak once the process is gone."""
        with contextlib.suppress(OSError, AssertionError):
            self.peak_kb = max(self.peak_kb, self._status("VmHWM"))
        return self.peak_kb

    def cpu_seconds(self) -> float:
        """User + system CPU time the archive has used (/proc/PID/stat utime, stime)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _cpu_or_nan(self) -> float:
        try:
            return self.cpu_seconds()
        except OSError:
            return float("nan")

    def watch(self) -> None:
        """Sample the memory every 10 ms; kill the archive above GUARD_KB."""
        while not self._stop.wait(0.01):
            try:
                rss = self.rss_kb()
            except (OSError, AssertionError):
                return
            self.peak_kb = max(self.peak_kb, rss)
            if rss > GUARD_KB:
                self.guard_tripped = True
                self.proc.send_signal(signal.SIGKILL)
                return

    def errors(self) -> list[str]:
        """The exceptions that escaped any of the archive's threads (their tracebacks' last
        line, as printed in its log)."""
        out = []
        for chunk in self.log.read_text(errors="replace").split(
                "Traceback (most recent call last):")[1:]:
            lines = [ln for ln in chunk.splitlines()[1:] if ln and not ln[0].isspace()
                     and not ln[0].isdigit() and not ln.startswith(("During", "The above"))]
            out.append(lines[0][:300] if lines else chunk[:300])
        return out

    def problems(self) -> list[str]:
        """What is wrong with the archive now: dead, ever above the memory limit, a thread
        crashed."""
        out = []
        peak = self.hwm_kb()
        if self.guard_tripped:
            out.append(f"archive killed above {GUARD_KB // 1024} MB")
        elif not self.alive():
            out.append(f"archive died ({self.proc.returncode}): {self.log_tail(500)}")
        if peak >= MEMORY_LIMIT_KB:
            out.append(f"archive peaked at {peak // 1024} MB (limit {MEMORY_LIMIT_KB // 1024} MB)")
        errors = self.errors()
        if errors:
            out.append(f"{len(errors)} tracebacks in the archive's log, e.g. {errors[:4]}")
        return out

    def check_health(self, *more: str) -> None:
        """Alive, never above the memory limit, no thread crashed (and ``more`` problems found
        by the caller): all reported at once."""
        found = [*more, *self.problems()]
        print(f"archive peak memory {self.peak_kb // 1024} MB, CPU {self._cpu_or_nan():.2f} s")
        assert not found, "\n".join(found)

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@contextlib.contextmanager
def running_archive(tmp: Path, *options: str) -> Iterator[Archive]:
    """The archive serving a fresh store under ``tmp`` on 127.0.0.1, with ``options``.

    The options of the hardened archive's contract (``--artim``, ``--idle-timeout``, ...) are
    passed as given: an archive that does not know one fails to start. With
    TL_ATTACK_LEGACY=1 in the environment, options the archive's ``--help`` does not list are
    dropped instead (to measure how an older archive fares under the same attacks)."""
    argv = list(options)
    if os.environ.get("TL_ATTACK_LEGACY"):
        known = _supported_options()
        kept: list[str] = []
        for i, opt in enumerate(argv):
            if opt.startswith("--") and opt in known:
                has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
                kept += [opt, argv[i + 1]] if has_value else [opt]
        argv = kept
    port = free_port()
    root = tmp / "store"
    log = tmp / "archive.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.dicom.pacs", "--root", str(root), "--port", str(port),
             "--bind", HOST, "--ae", ARCHIVE_AE, "-v", *argv],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    archive = Archive(proc, port, root, log)
    watcher = threading.Thread(target=archive.watch, daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert archive.alive(), f"archive did not start: {archive.log_tail()}"
            if "listening" in log.read_text(errors="replace"):
                break
            assert time.monotonic() < deadline, f"archive not listening: {archive.log_tail()}"
            time.sleep(0.05)
        yield archive
    finally:
        archive._stop.set()
        watcher.join(5)
        archive.hwm_kb()
        if archive.alive():
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# --- legitimate clients: independent implementations ------------------------------------------


@dataclass(frozen=True)
class Served:
    """A legitimate client's operation: whether it succeeded, in how long, what it said."""

    ok: bool
    seconds: float
    detail: str = ""


def _dcmtk(argv: list[str], seconds: float) -> Served:
    env = {**os.environ, "TCP_NODELAY": "1"}
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds, env=env)
    except subprocess.TimeoutExpired:
        return Served(False, time.monotonic() - started, f"{argv[0]}: timed out")
    took = time.monotonic() - started
    return Served(proc.returncode == 0, took, (proc.stdout + proc.stderr)[-500:])


def dcmtk_echo(port: int, seconds: float = 5.0) -> Served:
    """C-ECHO by DCMTK's echoscu (IPv4)."""
    return _dcmtk([str(DCMTK / "echoscu"), "-aet", "LEGIT", "-aec", ARCHIVE_AE, "-to", "5",
                   "-ta", "5", "-td", "5", HOST, str(port)], seconds)


def dcmtk_find(port: int, seconds: float = 5.0) -> Served:
    """A Study Root STUDY-level C-FIND by DCMTK's findscu."""
    return _dcmtk([str(DCMTK / "findscu"), "-S", "-aet", "LEGIT", "-aec", ARCHIVE_AE,
                   "-to", "5", "-ta", "5", "-td", "5", "-k", "QueryRetrieveLevel=STUDY",
                   "-k", "StudyInstanceUID=", "-k", "PatientID=", HOST, str(port)], seconds)


def legit_round(port: int) -> list[Served]:
    """One C-ECHO and one C-FIND, each by DCMTK."""
    return [dcmtk_echo(port), dcmtk_find(port)]


def _pynetdicom_ae() -> AE:
    ae = AE(ae_title="LEGITPY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    return ae


def pynetdicom_echo(port: int) -> Served:
    ae = _pynetdicom_ae()
    ae.add_requested_context(VERIFICATION)
    started = time.monotonic()
    assoc = ae.associate(HOST, port, ae_title=ARCHIVE_AE)
    if not assoc.is_established:
        return Served(False, time.monotonic() - started, "association refused")
    status = assoc.send_c_echo()
    assoc.release()
    ok = status is not None and status.get("Status") == 0
    return Served(ok, time.monotonic() - started, str(status))


def _find(assoc: object, level: str, **keys: str) -> list[Dataset]:
    query = Dataset()
    query.QueryRetrieveLevel = level
    for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID"):
        setattr(query, name, keys.get(name, ""))
    found, final = [], None
    for status, identifier in assoc.send_c_find(query, STUDY_FIND):  # type: ignore[attr-defined]
        if status is None or "Status" not in status:
            raise AssertionError(f"C-FIND {level}: no response")
        final = int(status.Status)
        if final in (0xFF00, 0xFF01) and identifier is not None:
            found.append(identifier)
    assert final == 0, f"C-FIND {level} {keys} ended with status {final}"
    return found


def stored_instances(port: int) -> set[tuple[str, str, str]]:
    """Every (study, series, SOP instance) the archive answers for, walking the Study Root
    hierarchy by C-FIND (pynetdicom): STUDY level with universal matching, then each study's
    series, then each series' images."""
    ae = _pynetdicom_ae()
    ae.add_requested_context(STUDY_FIND)
    assoc = ae.associate(HOST, port, ae_title=ARCHIVE_AE)
    assert assoc.is_established, "C-FIND association refused"
    out: set[tuple[str, str, str]] = set()
    try:
        for study in _find(assoc, "STUDY"):
            st = str(study.StudyInstanceUID)
            for series in _find(assoc, "SERIES", StudyInstanceUID=st):
                se = str(series.SeriesInstanceUID)
                for image in _find(assoc, "IMAGE", StudyInstanceUID=st, SeriesInstanceUID=se):
                    out.add((st, se, str(image.SOPInstanceUID)))
    finally:
        assoc.release()
    return out


# --- what the tests share ----------------------------------------------------------------------

ARTIM = 2.0
IDLE = 3.0
#: Short timers, so that a wait the contract allows ends in seconds.
TIMERS = ("--artim", "2", "--idle-timeout", "3")
#: How much later than its timer the archive may act (scheduling on a loaded 2-core machine).
SLACK = 2.0
#: CPU time an archive may use in 3 s beside a half-closed connection (an idle archive uses 0;
#: a 0.5 ms polling loop about 0.1 s).
IDLE_CPU = 0.06
ROOT_UID = "1.2.826.0.1.3680043.10.1099"


#: The maximum PDU length the tests' archive announces (--pdu).
PDU_MAX = 65536


def attacked_archive(tmp: Path) -> contextlib.AbstractContextManager[Archive]:
    """The archive as most attack tests run it: short timers, a 64 KiB maximum PDU length."""
    return running_archive(tmp, *TIMERS, "--pdu", str(PDU_MAX))


def assert_legit_served(port: int, rounds: int = 1) -> list[Served]:
    """A legitimate client (DCMTK) gets its C-ECHO and C-FIND, each within LEGIT_SECONDS."""
    served = []
    for _ in range(rounds):
        for s in legit_round(port):
            assert s.ok and s.seconds <= LEGIT_SECONDS, \
                f"legitimate client not served within {LEGIT_SECONDS} s: {s}"
            served.append(s)
    return served


def abort_source_problem(got: Outcome, established: bool) -> str | None:
    """An A-ABORT on an established association comes from the service provider (source 2,
    PS3.8 9.3.8, action AA-8); while one is set up, AA-1 may send source 0 too."""
    allowed = (2,) if established else (0, 2)
    if got.kind == A_ABORT and (len(got.body) < 4 or got.body[2] not in allowed):
        return f"A-ABORT with source {got.body[2:3].hex()}, expected one of {allowed}"
    return None
