"""The WAN DICOM benchmark's bound (lab.bench.wan_dicom.bound_seconds): bytes at the preset's
rate plus the setup round trips, and Mathis et al.'s rate when the preset loses packets."""

from __future__ import annotations

import math

import pytest

from lab.bench.wan_dicom import PRESETS, SETUP_RTTS, bound_seconds
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
