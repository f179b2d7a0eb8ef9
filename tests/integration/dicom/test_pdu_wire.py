"""--pdu really bounds the P-DATA PDUs on the wire, counted in a packet capture.

The capture cannot lose what was sent without the test knowing: dumpcap writes it with a large
kernel buffer; it is stopped once the file holds the association's A-RELEASE-RP (every earlier
packet of the interface is then in the file too), or after 15 s at most, and read only after
dumpcap has ended (its file flushed and closed). The PDUs are counted by walking the requestor's
reassembled TCP stream PDU by PDU (PS3.8 9.3.1), which must hold every byte from the
A-ASSOCIATE-RQ to the A-RELEASE-RQ without a hole. A capture in which the kernel dropped packets
(dumpcap's own count), or whose closed file still lacks the release, is taken again.
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.dicom.data.generate import generate_study

from ..capture import tcp_streams
from ..conftest import REPO, teleradlab

LAB = "pw-pdu"
PORT = 11112
#: dumpcap's kernel buffer (MiB): a whole object's packets fit, however late dumpcap reads them.
BUFFER_MIB = 64
A_ASSOCIATE_RQ, P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP = 1, 4, 5, 6


@pytest.fixture
def lab() -> Iterator[str]:
    teleradlab("down", LAB, check=False)
    teleradlab("up", "ipv4", "--name", LAB)
    yield LAB
    teleradlab("down", LAB)


def pdus(stream: bytes) -> list[tuple[int, int]]:
    """(type, length) of every PDU of one direction of an association, walked from its first
    byte (PS3.8 9.3.1: type, reserved byte, 4-byte length); AssertionError if the stream does
    not end exactly at the end of a PDU."""
    out, pos = [], 0
    while pos + 6 <= len(stream):
        kind, length = struct.unpack_from(">BxL", stream, pos)
        assert 1 <= kind <= 7, f"byte {pos} is not a PDU header: {stream[pos:pos + 6].hex()}"
        out.append((kind, length))
        pos += 6 + length
    assert pos == len(stream), f"the stream ends inside a PDU ({pos} != {len(stream)})"
    return out


def _streams_or_none(pcap: Path) -> dict[tuple[str, str], bytes] | None:
    """The reassembled streams of a capture still being written (None if unreadable yet)."""
    try:
        return tcp_streams(pcap, PORT)
    except (subprocess.CalledProcessError, AssertionError):
        return None


def _released(pcap: Path) -> bool:
    """Whether the acceptor's direction of the capture holds an A-RELEASE-RP."""
    streams = _streams_or_none(pcap) if pcap.exists() else None
    for (_, src), data in (streams or {}).items():
        if src == str(PORT) and data[:1] == bytes([2]) and bytes([A_RELEASE_RP, 0]) in data:
            try:
                return pdus(data)[-1][0] == A_RELEASE_RP
            except AssertionError:  # the file ends in the middle of a packet
                continue
    return False


def _capture_store(lab: str, pdu: int, study_file: Path, pcap: Path) -> int | None:
    """Capture one C-STORE of ``study_file`` in the PACS node; the packets the kernel dropped,
    or None if the finished capture does not hold the release (then it is taken again)."""
    pcap.unlink(missing_ok=True)
    capture = subprocess.Popen(
        [sys.executable, "-m", "lab", "exec", "--lab", lab, "pacs", "--", "dumpcap", "-i", "gw-b",
         "-f", f"tcp port {PORT}", "-B", str(BUFFER_MIB), "-w", str(pcap)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert capture.stderr is not None
    try:
        deadline = time.monotonic() + 30
        while "Capturing on" not in capture.stderr.readline():
            assert time.monotonic() < deadline and capture.poll() is None, "dumpcap did not start"
        teleradlab("exec", "--lab", lab, "modality", "--", sys.executable, "-m", "lab.dicom.scu",
                   "store", "--host=198.18.2.10", f"--pdu={pdu}", str(study_file))
        # dumpcap may hold the last packets in its output buffer while it runs: wait for the
        # release in the file a while, then stop it anyway and judge the file it closed.
        deadline = time.monotonic() + 15
        while not _released(pcap) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        capture.send_signal(signal.SIGTERM)
        _, tail = capture.communicate(timeout=30)
    dropped = re.search(r"received/dropped on interface .*: \d+/(\d+)", tail)
    assert dropped, f"dumpcap did not report its counts: {tail}"
    return int(dropped.group(1)) if _released(pcap) else None


def _pdata_lengths(lab: str, pdu: int, study_file: Path, pcap: Path) -> list[int]:
    """The P-DATA-TF lengths the SCU sent in one C-STORE, from a capture that lost nothing."""
    for _ in range(3):
        if _capture_store(lab, pdu, study_file, pcap) == 0:
            break
    else:
        pytest.fail("three captures out of three dropped packets or lacked the release")
    sent = [data for (_, src), data in tcp_streams(pcap, PORT, complete=True).items()
            if src != str(PORT)]
    assert len(sent) == 1, f"{len(sent)} associations captured"
    walked = pdus(sent[0])
    assert walked[0][0] == A_ASSOCIATE_RQ and walked[-1][0] == A_RELEASE_RQ
    return [length for kind, length in walked if kind == P_DATA_TF]


@pytest.mark.parametrize("pdu", [16384, 0])
def test_pdu_bounds_pdata_on_the_wire(lab: str, pdu: int) -> None:
    study = generate_study("CT", Path("/tmp") / f"{LAB}-{pdu}", objects=1)
    lengths = _pdata_lengths(lab, pdu, study.files[0], Path("/tmp") / f"{LAB}-{pdu}.pcap")
    dataset = study.files[0].stat().st_size
    assert lengths, "no P-DATA PDU captured"
    if pdu:
        assert max(lengths) == pdu and len(lengths) > dataset // pdu
    else:
        assert max(lengths) > dataset - 1024  # the whole dataset in one PDU
