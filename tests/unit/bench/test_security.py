"""The security benchmark's raw transport into files (lab.bench.tlsbulk --into) and its table."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab.bench import security
from lab.bench.security import Measure


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bulk_into_files_keeps_every_byte_in_files_of_the_object_size(tmp_path: Path) -> None:
    """The receiver writes the stream into new files of --object-bytes (the last one shorter),
    and still reports what it received and how fast."""
    port, into = _free_port(), tmp_path / "into"
    server = subprocess.Popen([sys.executable, "-m", "lab.bench.tlsbulk", "serve",
                               f"--port={port}", f"--into={into}", "--object-bytes=300000"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert '"listening"' in server.stdout.readline()
        subprocess.run([sys.executable, "-m", "lab.bench.tlsbulk", "send", "--host=127.0.0.1",
                        f"--port={port}", "--mbytes=1.0"], check=True, timeout=60)
        report = json.loads(server.stdout.readline())
    finally:
        server.wait(timeout=30)
    sizes = sorted((f.stat().st_size for f in into.iterdir()), reverse=True)
    assert report["bytes"] == sum(sizes) == 1_000_000
    assert sizes == [300000, 300000, 300000, 100000]
    assert report["mbit_per_s"] > 0


def test_the_table_judges_c_store_against_both_raw_figures(capsys: pytest.CaptureFixture[str],
                                                           ) -> None:
    runs = {"plain": [Measure(1000.0, 800.0, "-", 900.0, 950.0)],
            "tls x": [Measure(2000.0, 700.0, "-", 1000.0, 1100.0)]}
    security.print_security(runs, 1)
    out = capsys.readouterr().out
    short, long = (line for line in out.splitlines() if line.strip().startswith("tls x"))
    assert "2000.0" in short and "1100.0" in short and "0.35" in short and "0.64" in short
    assert "raw MISSES, files MISSES" in short
    assert "0.50" in long and "0.91" in long and "raw MISSES, files meets" in long
