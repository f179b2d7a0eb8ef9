"""The WAN DICOM benchmark's bound (lab.bench.wan_dicom.bound_seconds): bytes at the preset's
rate plus the setup round trips, and Mathis et al.'s rate when the preset loses packets."""

from __future__ import annotations

import math

import pytest

from lab.bench.wan_dicom import (
    PRESETS,
    SETUP_RTTS,
    UNIMPAIRED,
    Measured,
    PresetResult,
    bound_seconds,
    print_preset,
)
from lab.errors import LabError


def test_bound_is_bytes_at_the_rate_plus_setup_round_trips() -> None:
    # 52.5 MB at 100 Mbit/s is 4.2 s; 3 round trips of 160 ms
    assert bound_seconds("transcontinental-100m-80ms", 52_500_000) == pytest.approx(
        4.2 + SETUP_RTTS * 0.16)
    assert bound_seconds("satellite-10m-300ms", 52_500_000) == pytest.approx(
        42.0 + SETUP_RTTS * 0.6)


def test_a_lossy_preset_is_bound_by_mathis_when_it_is_below_the_rate() -> None:
    # 1% loss, 100 ms RTT: 1448 * 8 / (0.1 * 0.1) * sqrt(1.5) = 1.42 Mbit/s, below 20 Mbit/s
    rate = 1448 * 8 / (0.1 * 0.1) * math.sqrt(1.5)
    assert bound_seconds("lossy-4g-20m-50ms-1pct", 1_000_000) == pytest.approx(
        8e6 / rate + SETUP_RTTS * 0.1)


def test_every_preset_has_a_bound_and_an_unimpaired_path_none() -> None:
    assert all(bound_seconds(p, 1) > 0 for p in PRESETS)
    with pytest.raises(LabError):
        bound_seconds("none", 1)


def test_without_mathis_the_lossy_preset_is_bound_by_its_rate() -> None:
    assert bound_seconds("lossy-4g-20m-50ms-1pct", 1_000_000, loss=False) == pytest.approx(
        8e6 / 20e6 + SETUP_RTTS * 0.1)


def _result(preset: str, bound: float | None, move: float, dmove: float, finds: tuple[float, float],
            ) -> PresetResult:
    rows = (Measured("DCMTK storescu -> storescp", 20.0, 20.5),
            Measured("lab, window 1", 20.0, 20.4), Measured("lab, window 4", 6.0, 6.3, 4),
            Measured("lab, window 16", 5.0, 5.3, 16),
            Measured("lab C-MOVE back (archive window 16)", move, move + 0.3),
            Measured("DCMTK movescu <- dcmqrscp", dmove, dmove),
            Measured("lab, 2 associations", 11.0, 11.2, 1, 2),
            Measured("findscu STUDY -> lab PACS", finds[0], finds[0]),
            Measured("findscu STUDY -> dcmqrscp", finds[1], finds[1]),
            Measured("findscu IMAGE -> lab PACS", finds[0] * 5, finds[0] * 5),
            Measured("findscu IMAGE -> dcmqrscp", finds[1] * 5, finds[1] * 5))
    return PresetResult(preset, 52_500_000, bound, rows, 1)


def test_the_verdicts_read_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    print_preset(_result("transcontinental-100m-80ms", 4.5, 5.5, 25.0, (0.001, 0.002)))
    out = capsys.readouterr().out
    assert "best window 16 (granted 16): 1.11 x the bound, target <= 1.3 (meets)" in out
    assert "4.00 x faster than DCMTK, target >= 4.0 (meets)" in out
    assert "no transfer can be" not in out
    assert "C-MOVE / C-STORE at the same window (16): 1.10, target <= 1.2 (meets)" in out
    assert "movescu<-dcmqrscp / lab C-MOVE: 4.55, target >= 1 (meets)" in out
    assert out.count("dcmqrscp / lab  2.00, target >= 1 unimpaired (for information)") == 2


def test_the_unimpaired_path_has_no_bound_and_says_what_misses(
        capsys: pytest.CaptureFixture[str]) -> None:
    print_preset(_result(UNIMPAIRED, None, 6.5, 6.0, (0.002, 0.001)))
    out = capsys.readouterr().out
    assert "no bound (unimpaired)" in out and "x bound" not in out
    assert "C-MOVE / C-STORE at the same window (16): 1.30, target <= 1.2 (MISSES)" in out
    assert "movescu<-dcmqrscp / lab C-MOVE: 0.92, target >= 1 (MISSES)" in out
    assert out.count("dcmqrscp / lab  0.50, target >= 1 unimpaired (MISSES)") == 2


def test_a_path_where_dcmtk_is_near_the_bound_says_the_speed_up_cannot_be_had(
        capsys: pytest.CaptureFixture[str]) -> None:
    print_preset(_result("satellite-10m-300ms", 10.0, 5.5, 25.0, (0.001, 0.002)))
    out = capsys.readouterr().out
    assert "(no transfer can be 4.0 x faster than DCMTK here: DCMTK itself takes 2.00 x" in out
