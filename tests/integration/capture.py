"""Packet captures inside a lab node with tshark, for tests that prove what crossed the wire."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .conftest import REPO

#: The generated studies' patient name (lab.dicom.data.generate: TELERAD^SYNTH<seed>): what must
#: never be readable on a protected WAN.
PATIENT = b"TELERAD^SYNTH"


@contextmanager
def capture(lab: str, node: str, pcap: Path, interface: str = "any",
            bpf: str = "") -> Iterator[Path]:
    """tshark in ``node`` writing ``pcap`` while the body runs; stopped by its process id."""
    pcap.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "lab", "exec", "--lab", lab, node, "--", "tshark", "-q",
            "-i", interface, "-w", str(pcap)] + (["-f", bpf] if bpf else [])
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while "Capturing on" not in proc.stderr.readline():
            assert time.monotonic() < deadline and proc.poll() is None, "tshark did not start"
        yield pcap
        time.sleep(0.5)  # the last packets reach the file
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def frames(pcap: Path, *fields: str, display: str = "") -> list[list[str]]:
    """One list of field values per frame (tshark -T fields)."""
    argv = ["tshark", "-r", str(pcap), "-d", "tcp.port==2762,tls", "-T", "fields",
            "-E", "separator=|"]
    if display:
        argv += ["-Y", display]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("|") for line in out.splitlines()]


def tcp_streams(pcap: Path, port: int, *, complete: bool = False,
                ) -> dict[tuple[str, str], bytes]:
    """The bytes each direction of each TCP connection on ``port`` carried, in sequence order
    (our own reassembly: retransmitted segments counted once). ``complete``: AssertionError if
    a direction has a hole (a segment the capture missed), instead of joining what is there."""
    segments: dict[tuple[str, str], dict[int, bytes]] = {}
    for stream, src, seq, payload in frames(pcap, "tcp.stream", "tcp.srcport", "tcp.seq",
                                            "tcp.payload", display=f"tcp.port == {port} && "
                                            "tcp.len > 0"):
        chunk = bytes.fromhex(payload.replace(":", ""))
        by_seq = segments.setdefault((stream, src), {})
        if len(chunk) > len(by_seq.get(int(seq), b"")):  # a shorter retransmission adds nothing
            by_seq[int(seq)] = chunk
    out = {}
    for key, by_seq in segments.items():
        data, expected = b"", None
        for seq in sorted(by_seq):
            chunk = by_seq[seq]
            if expected is not None and seq < expected:  # overlap: keep the new part only
                chunk = chunk[expected - seq:]
            assert not complete or expected is None or seq <= expected, (
                f"stream {key}: bytes {expected}..{seq} missing from the capture")
            data += chunk
            expected = seq + len(by_seq[seq]) if expected is None else max(
                expected, seq + len(by_seq[seq]))
        out[key] = data
    return out


def tls_records(data: bytes) -> list[tuple[int, int]]:
    """Walk ``data`` as a sequence of TLS records (RFC 8446 5.1: type, legacy version, length)
    and return (type, length) of each; AssertionError at the first byte that is not a record."""
    records, i = [], 0
    while i + 5 <= len(data):
        kind, major, minor = data[i], data[i + 1], data[i + 2]
        length = int.from_bytes(data[i + 3:i + 5], "big")
        assert kind in (20, 21, 22, 23) and major == 3 and minor <= 4 and length <= 2**14 + 256, (
            f"not a TLS record at byte {i}: {data[i:i + 16].hex()}")
        records.append((kind, length))
        i += 5 + length
    return records


def contains(pcap: Path, needle: bytes) -> bool:
    """Whether ``needle`` appears anywhere in the captured bytes (headers and payloads)."""
    return needle in pcap.read_bytes()
