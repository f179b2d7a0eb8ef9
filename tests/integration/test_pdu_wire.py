"""--pdu really bounds the P-DATA PDUs on the wire (seen by tshark's DICOM dissector)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.dicom.generate import generate_study

from .conftest import REPO, teleradlab

LAB = "pw-pdu"


@pytest.fixture
def lab() -> Iterator[str]:
    teleradlab("down", LAB, check=False)
    teleradlab("up", "ipv4", "--name", LAB)
    yield LAB
    teleradlab("down", LAB)


def _pdu_lengths(pcap: Path, pdu_type: int = 4, check: bool = True) -> list[int]:
    """Lengths of the PDUs of a type in the capture (4: P-DATA-TF, 6: A-RELEASE-RP)."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", "tcp.port==11112,dicom", "-Y",
         f"dicom.pdu.type == {pdu_type}", "-T", "fields", "-e", "dicom.pdu.len"],
        capture_output=True, text=True, check=check, timeout=60,
    ).stdout
    return [int(v) for line in out.split() for v in line.split(",") if v]


def _wait_for_release(pcap: Path, seconds: float = 20) -> None:
    """Until the capture file holds the association's A-RELEASE-RP: tshark, stopped earlier,
    drops what it has not read yet (seen once on a loaded machine: the last two P-DATA PDUs)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pcap.exists() and _pdu_lengths(pcap, 6, check=False):  # read while being written
            return
        time.sleep(0.2)
    raise AssertionError("the capture never showed the association's release")


@pytest.mark.parametrize("pdu", [16384, 0])
def test_pdu_bounds_pdata_on_the_wire(lab: str, pdu: int, tmp_path: Path) -> None:
    study = generate_study("CT", Path("/tmp") / f"{LAB}-{pdu}", objects=1)
    pcap = Path("/tmp") / f"{LAB}-{pdu}.pcap"
    pcap.unlink(missing_ok=True)
    capture = subprocess.Popen(
        [sys.executable, "-m", "lab", "exec", "--lab", lab, "pacs", "--", "tshark", "-i", "gw-b",
         "-f", "tcp port 11112", "-w", str(pcap)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert capture.stderr is not None
        deadline = time.monotonic() + 30
        while "Capturing on" not in capture.stderr.readline():
            assert time.monotonic() < deadline and capture.poll() is None, "tshark did not start"
        teleradlab("exec", "--lab", lab, "modality", "--", sys.executable, "-m", "lab.dicom.scu",
                   "store", "--host=198.18.2.10", f"--pdu={pdu}", str(study.files[0]))
        _wait_for_release(pcap)
    finally:
        capture.send_signal(signal.SIGTERM)
        capture.wait(timeout=30)
    lengths = _pdu_lengths(pcap)
    dataset = study.files[0].stat().st_size
    assert lengths, "no P-DATA PDU captured"
    if pdu:
        assert max(lengths) == pdu and len(lengths) > dataset // pdu
    else:
        assert max(lengths) > dataset - 1024  # the whole dataset in one PDU
