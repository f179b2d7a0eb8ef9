"""The store benchmark's table (lab.bench.store): each pair's medians, the receivers' CPU time,
and DCMTK time / lab time judged against the target."""

from __future__ import annotations

import os
import time

import pytest

from lab.bench.store import PAIRS, STORE_RATIO_TARGET, StoreTiming, _cpu_seconds, print_store


def _results(lab_wall: float) -> dict[str, list[StoreTiming]]:
    out = {p.label: [StoreTiming(0.1, 0.002, 0.06, 0.04)] * 3 for p in PAIRS}
    out[PAIRS[0].label] = [StoreTiming(lab_wall, 0.002, lab_wall - 0.04, 0.09)] * 3
    return out


@pytest.mark.parametrize(("lab_wall", "verdict"), [(0.1, "meets"), (0.2, "MISSES")])
def test_the_table_judges_the_whole_process(capsys: pytest.CaptureFixture[str],
                                            lab_wall: float, verdict: str) -> None:
    print_store(_results(lab_wall), 52_000_000, 3)
    out = capsys.readouterr().out
    wall_line = next(line for line in out.splitlines() if "wall clock" in line)
    assert f"{0.1 / lab_wall:5.2f}" in wall_line and f">= {STORE_RATIO_TARGET}" in wall_line
    assert verdict in wall_line
    lab_row = next(line for line in out.splitlines() if line.strip().startswith(PAIRS[0].label))
    assert lab_row.split()[-1] == "0.090"  # the receiver's CPU time, last column


def test_cpu_seconds_counts_this_process() -> None:
    before = _cpu_seconds(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    assert _cpu_seconds(os.getpid()) - before >= 0.1
