"""200 C-MOVEs back to back, plain and over DICOM TLS, with not one failure.

The archive (``python -m lab.dicom.pacs``) and the modality's receiver of C-MOVE results
(``--storage-only``) run as the lab runs them, here over IPv6 loopback; one SCU process makes
the C-MOVEs (``scu move --repeat``), each on its own association, each making the archive open a
sub-association to the receiver and C-STORE a 20-object study (PS3.4 C.4.2). A lost response
anywhere on that path (request, sub-operations, final response) shows as a failed move: the
defect this guards against lost about one C-MOVE in thirty in the demo, and 2 to 5 of these
200 (pynetdicom's reactor dropping a sub-operation's C-STORE-RSP, a race each object opens).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.dicom.archive.store import study_paths
from lab.dicom.data.generate import generate_study
from lab.security.pki.authority import create_ca

HOST = "::1"
MOVES = 200
OBJECTS = 20
#: Bound on one move's wait for the archive: a lost response fails the move in this long.
MOVE_TIMEOUT = 10


def _port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tls_options(folder: Path) -> dict[str, list[str]]:
    """--tls-* options for the archive, the receiver and the SCU, from a throwaway lab CA."""
    ca = create_ca(folder / "ca", "move soak CA")
    out = {}
    for who, ips in (("pacs", [HOST]), ("receiver", [HOST]), ("scu", [])):
        cred = ca.issue(who, ips=ips, usages={"server", "client"})
        out[who] = ["--tls-profile=bcp195-rfc8996", f"--tls-ca={ca.cert_path}",
                    f"--tls-cert={cred.cert_path}", f"--tls-key={cred.key_path}"]
    return out


def _start(root: Path, port: int, *options: str) -> subprocess.Popen[str]:
    log = root.with_suffix(".log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "lab.dicom.pacs", f"--root={root}",
                             f"--bind={HOST}", f"--port={port}", "--sync=none", *options],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    assert "listening" in proc.stdout.readline(), root.with_suffix(".log").read_text()
    return proc


def _scu(port: int, tls: list[str], *args: str, timeout: float = 60) -> dict[str, object]:
    res = subprocess.run([sys.executable, "-m", "lab.dicom.scu", *args, f"--host={HOST}",
                          f"--port={port}", f"--timeout={MOVE_TIMEOUT}", *tls],
                         capture_output=True, text=True, timeout=timeout, check=False)
    doc: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    assert (res.returncode == 0) == doc["ok"], res.stderr
    return doc


@pytest.fixture
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, list[str],
                                                                             Path]]:
    """(archive port, the SCU's TLS options, receiver's store) for 'plain' or 'tls'."""
    tls = _tls_options(tmp_path) if request.param == "tls" else {}
    receiver_port, pacs_port = _port(), _port()
    procs = [_start(tmp_path / "received", receiver_port, "--ae=MODALITY", "--storage-only",
                    *tls.get("receiver", []))]
    try:
        procs.append(_start(tmp_path / "store", pacs_port,
                            f"--destination=MODALITY=[{HOST}]:{receiver_port}",
                            *tls.get("pacs", [])))
        yield pacs_port, tls.get("scu", []), tmp_path / "received"
    finally:
        _stop(procs)


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    """SIGTERM, then SIGKILL what has not ended 10 s later (an archive waits for its open
    associations, e.g. a C-MOVE sub-association waiting for a lost response); each by its id."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize("archive", ["plain", "tls"], indirect=True)
def test_200_moves_back_to_back(archive: tuple[int, list[str], Path], tmp_path: Path) -> None:
    port, tls, received = archive
    study = generate_study("MR", tmp_path / "mr", objects=OBJECTS, seed=200)
    stored = _scu(port, tls, "store", *map(str, study.files))
    assert stored["ok"] and stored["objects"] == OBJECTS, stored
    start = time.monotonic()
    doc = _scu(port, tls, "move", "--level=STUDY", f"--repeat={MOVES}", "--dest=MODALITY",
               f"--key=StudyInstanceUID={study.study_instance_uid}",
               timeout=MOVES * MOVE_TIMEOUT)
    elapsed = time.monotonic() - start
    assert doc["moves_failed"] == 0 and doc["ok"], (
        f"{doc['moves_failed']} of {MOVES} C-MOVEs failed: {doc['failures']}")
    assert doc["repeat"] == MOVES and doc["completed_total"] == MOVES * OBJECTS, doc
    assert (doc["tls_version"] is not None) == bool(tls), doc
    assert len(study_paths(received, study.study_instance_uid)) == OBJECTS
    print(f"{MOVES} C-MOVEs ({'TLS' if tls else 'plain'}) in {elapsed:.1f} s")
