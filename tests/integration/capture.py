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
    argv = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|"]
    if display:
        argv += ["-Y", display]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("|") for line in out.splitlines()]


def contains(pcap: Path, needle: bytes) -> bool:
    """Whether ``needle`` appears anywhere in the captured bytes (headers and payloads)."""
    return needle in pcap.read_bytes()
