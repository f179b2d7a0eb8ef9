"""The store benchmark's table (lab.bench.store): each pair's medians, the receivers' CPU time,
and DCMTK time / lab time judged against the target."""

from __future__ import annotations

import os
import time

import pytest

from lab.bench.store import (
    PAIR_RATIO_TARGET,
    PAIRS,
    STORE_RATIO_TARGET,
    StoreTiming,
    _cpu_seconds,
    print_store,
)


def _results(scu_wall: float, lab_wall: float) -> dict[str, list[StoreTiming]]:
    out = {p.label: [StoreTiming(0.1, 0.002, 0.06, 0.04)] * 3 for p in PAIRS}
    out[PAIRS[2].label] = [StoreTiming(scu_wall, 0.002, scu_wall - 0.04, 0.05)] * 3
    out[PAIRS[0].label] = [StoreTiming(lab_wall, 0.002, lab_wall - 0.04, 0.09)] * 3
    return out


@pytest.mark.parametrize(("scu_wall", "lab_wall", "verdicts"),
                         [(0.1, 0.15, ("meets", "meets")), (0.08, 0.25, ("meets", "MISSES")),
                          (0.125, 0.05, ("MISSES", "meets"))])
def test_the_table_judges_the_whole_process_of_the_scu_and_of_the_pair(
        capsys: pytest.CaptureFixture[str], scu_wall: float, lab_wall: float,
        verdicts: tuple[str, str]) -> None:
    print_store(_results(scu_wall, lab_wall), 52_000_000, 3)
    lines = capsys.readouterr().out.splitlines()
    judged = [line for line in lines if "wall clock" in line and "the target" in line]
    assert len(judged) == 2
    targets = (STORE_RATIO_TARGET, PAIR_RATIO_TARGET)
    for line, wall, target, verdict in zip(judged, (scu_wall, lab_wall), targets, verdicts,
                                           strict=True):
        assert f"{0.1 / wall:5.2f}" in line and f">= {target}" in line
        assert f"({verdict} the target)" in line
    scu_title = lines.index("  lab SCU vs storescu, both to storescp  (issue 15)")
    assert lines[scu_title + 1] == judged[0]
    lab_row = next(line for line in lines if line.strip().startswith(PAIRS[0].label))
    assert lab_row.split()[-1] == "0.090"  # the receiver's CPU time, last column


def test_cpu_seconds_counts_this_process() -> None:
    before = _cpu_seconds(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    assert _cpu_seconds(os.getpid()) - before >= 0.1
