"""The lab's SCU (``scu find|move``, on the lab's own Upper Layer) against an independent Q/R
SCP: DCMTK's dcmqrscp (3.6.7: IPv4, no TLS), over loopback. The study is stored into dcmqrscp
by the SCU, found at the study and image levels in both information models (PS3.4 C.6.1, C.6.2),
and moved to the lab's receiver (``pacs --storage-only``), where every object must arrive; an
unknown move destination gets dcmqrscp's failure, not a hang.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.bench.store import dcmtk_tool
from lab.dicom.archive.store import study_paths
from lab.dicom.data.generate import Study, generate_study
from lab.errors import LabError

HOST = "127.0.0.1"
OBJECTS = 3


def _port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _dcmqrscp() -> str:
    try:
        return dcmtk_tool("dcmqrscp")
    except LabError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _config(folder: Path, port: int, receiver_port: int) -> Path:
    """A dcmqrscp configuration: one read-write storage area DCMQR, MODALITY a move
    destination (see DCMTK's dcmqrcnf.txt)."""
    (folder / "db").mkdir()
    cfg = folder / "dcmqrscp.cfg"
    cfg.write_text(f"""NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
modality = (MODALITY, {HOST}, {receiver_port})
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
DCMQR {folder / "db"} RW (200, 1024mb) ANY
AETable END
""")
    return cfg


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(dcmqrscp's port, the receiver's store) while both run."""
    port, receiver_port = _port(), _port()
    # Forking (the default): in --single-process mode dcmqrscp 3.6.7 segfaults once the first
    # association is released, DCMTK's own storescu's as well.
    qr = subprocess.Popen([_dcmqrscp(), "-c", str(_config(tmp_path, port, receiver_port)), "-v"],
                          stdout=(tmp_path / "dcmqrscp.log").open("w"), stderr=subprocess.STDOUT,
                          env={**os.environ, "TCP_NODELAY": "1"})
    receiver = subprocess.Popen(
        [sys.executable, "-m", "lab.dicom.pacs", f"--root={tmp_path / 'received'}",
         f"--bind={HOST}", f"--port={receiver_port}", "--ae=MODALITY", "--storage-only"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert receiver.stdout is not None and "listening" in receiver.stdout.readline()
        yield port, tmp_path / "received"
    finally:
        for proc in (qr, receiver):
            proc.terminate()
            proc.wait(timeout=10)


def scu(port: int, *args: str) -> dict[str, object]:
    res = subprocess.run([sys.executable, "-m", "lab.dicom.scu", *args, f"--host={HOST}",
                          f"--port={port}", "--called=DCMQR", "--timeout=10"],
                         capture_output=True, text=True, timeout=60, check=False)
    doc: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    assert (res.returncode == 0) == doc["ok"], res.stderr
    return doc


def _stored(port: int, tmp_path: Path) -> Study:
    study = generate_study("MR", tmp_path / "mr", objects=OBJECTS, seed=77)
    for _ in range(50):  # dcmqrscp listens a moment after it starts
        doc = scu(port, "store", *map(str, study.files))
        if doc["ok"] or "refused" not in str(doc.get("error", "")):
            break
        time.sleep(0.1)
    assert doc["ok"] and doc["objects"] == OBJECTS, doc
    return study


@pytest.mark.parametrize("model", ["study", "patient"])
def test_find_and_move_against_dcmqrscp(peers: tuple[int, Path], tmp_path: Path,
                                        model: str) -> None:
    port, received = peers
    study = _stored(port, tmp_path)
    key = f"--key=StudyInstanceUID={study.study_instance_uid}"
    patient = f"--key=PatientID={study.patient_id}"
    found = scu(port, "find", f"--model={model}", "--level=STUDY", key, patient,
                "--key=PatientName=")
    assert found["ok"] and found["status"] == 0, found
    matches = found["matches"]
    assert isinstance(matches, list) and len(matches) == 1, found
    assert {k: matches[0].get(k) for k in ("PatientName", "PatientID", "StudyInstanceUID")} == {
        "PatientName": study.patient_name, "PatientID": study.patient_id,
        "StudyInstanceUID": study.study_instance_uid}, found
    images = scu(port, "find", f"--model={model}", "--level=IMAGE", key, patient,
                 f"--key=SeriesInstanceUID={study.series_instance_uid}", "--key=SOPInstanceUID=")
    assert len(images["matches"]) == OBJECTS, images  # type: ignore[arg-type]
    moved = scu(port, "move", f"--model={model}", "--level=STUDY", key, patient)
    assert moved["ok"] and moved["completed"] == OBJECTS and moved["failed"] == 0, moved
    assert len(study_paths(received, study.study_instance_uid)) == OBJECTS
    unknown = scu(port, "move", f"--model={model}", "--level=STUDY", key, patient, "--dest=NOBODY")
    assert not unknown["ok"] and unknown["status"] == 0xA801, unknown  # Move Destination unknown
