"""WAN profiles: presets, units, composition of links into directions, queue sizing, --wan."""

from __future__ import annotations

import pytest

from lab.model.topology import Wan, WanProfile
from lab.model.wan import (
    MIN_LIMIT,
    PRESETS,
    ProfileError,
    as_dict,
    compose,
    describe,
    from_dict,
    parse_link,
    parse_option,
    parse_profile,
    queue_limit,
)


def test_presets_are_what_their_names_say() -> None:
    """name -> (rate Mbit/s, one-way delay ms, loss %)."""
    expected = {
        "lan-1g": (1000, 0, 0),
        "metro-100m-5ms": (100, 5, 0),
        "dsl-20m-30ms": (20, 30, 0),
        "transcontinental-100m-80ms": (100, 80, 0),
        "satellite-10m-300ms": (10, 300, 0),
        "lossy-4g-20m-50ms-1pct": (20, 50, 1),
    }
    got = {n: (p.rate_mbit, p.delay_ms, p.loss_pct) for n, (_, p) in PRESETS.items()}
    assert got == expected


@pytest.mark.parametrize(("value", "field", "expected"), [
    ({"delay": "30ms"}, "delay_ms", 30.0),
    ({"delay": "250us"}, "delay_ms", 0.25),
    ({"delay": "0.3s"}, "delay_ms", 300.0),
    ({"delay": 12}, "delay_ms", 12.0),
    ({"jitter": "2ms"}, "jitter_ms", 2.0),
    ({"loss": "1.5%"}, "loss_pct", 1.5),
    ({"loss": 3}, "loss_pct", 3.0),
    ({"loss_correlation": "25%"}, "loss_corr_pct", 25.0),
    ({"rate": "20mbit"}, "rate_mbit", 20.0),
    ({"rate": "512kbit"}, "rate_mbit", 0.512),
    ({"rate": "1gbit"}, "rate_mbit", 1000.0),
    ({"rate": 100}, "rate_mbit", 100.0),
    ({"reorder": "1%"}, "reorder_pct", 1.0),
    ({"duplicate": "0.5%"}, "duplicate_pct", 0.5),
    ({"corrupt": "0.1%"}, "corrupt_pct", 0.1),
    ({"limit": 500}, "limit", 500),
])
def test_units(value: dict[str, object], field: str, expected: float) -> None:
    assert getattr(parse_profile(value, "p"), field) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "path", "fragment"), [
    ({"delay": "30 parsecs"}, "wan.profile.delay", "'30 parsecs'"),
    ({"loss": "150%"}, "wan.profile.loss", "'150%'"),
    ({"rate": "fast"}, "wan.profile.rate", "'fast'"),
    ({"limit": 0}, "wan.profile.limit", "0"),
    ({"limit": True}, "wan.profile.limit", "True"),
    ({"delay": True}, "wan.profile.delay", "True"),
    ({"latency": "5ms"}, "wan.profile.latency", "unknown key"),
    ({"preset": "moon-1k-1s"}, "wan.profile.preset", "'moon-1k-1s'"),
    ("moon-1k-1s", "wan.profile", "'moon-1k-1s'"),
    (42, "wan.profile", "int"),
])
def test_errors_name_field_and_value(value: object, path: str, fragment: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(value, "wan.profile")
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:")
    assert fragment in problem


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile({"delay": "x", "loss": "y", "colour": "red"}, "p")
    assert len(info.value.problems) == 3


def test_preset_with_changes() -> None:
    p = parse_profile({"preset": "dsl-20m-30ms", "loss": "2%"}, "p")
    assert (p.delay_ms, p.rate_mbit, p.loss_pct) == (30, 20, 2)


def test_link_per_direction() -> None:
    up, down = parse_link({"up": {"delay": "5ms"}, "down": "dsl-20m-30ms"}, "l")
    assert up == WanProfile(delay_ms=5)
    assert down == PRESETS["dsl-20m-30ms"][1]
    same = parse_link("metro-100m-5ms", "l")
    assert same[0] == same[1] == PRESETS["metro-100m-5ms"][1]
    with pytest.raises(ProfileError, match=r"l\.delay: unknown key next to up/down"):
        parse_link({"up": {}, "delay": "5ms"}, "l")


def test_compose_adds_delays_and_keeps_the_slowest_rate() -> None:
    a = WanProfile(delay_ms=10, jitter_ms=1, loss_pct=10, rate_mbit=100, limit=300)
    b = WanProfile(delay_ms=5, jitter_ms=2, loss_pct=10, rate_mbit=20)
    c = compose([a, b, WanProfile()])
    assert (c.delay_ms, c.jitter_ms, c.rate_mbit, c.limit) == (15, 3, 20, 300)
    assert c.loss_pct == pytest.approx(19.0)  # 1 - 0.9 * 0.9
    assert compose([]) == WanProfile()


def test_queue_limit_from_rate_and_delay() -> None:
    assert queue_limit(WanProfile()) == MIN_LIMIT
    assert queue_limit(WanProfile(limit=77)) == 77
    # 100 Mbit/s x 80 ms = 1 MB = 667 packets of 1500 bytes; twice that
    assert queue_limit(WanProfile(delay_ms=80, rate_mbit=100)) == 1334
    # no rate: sized for 1 Gbit/s
    assert queue_limit(WanProfile(delay_ms=300)) == 50000


def test_option() -> None:
    assert parse_option("none") == Wan()
    w = parse_option("satellite-10m-300ms")
    assert w.name == "satellite-10m-300ms" and w.forward == w.reverse
    w = parse_option("delay=40ms, rate=10mbit")
    assert (w.forward.delay_ms, w.reverse.rate_mbit) == (40, 10)
    with pytest.raises(ProfileError, match=r"--wan\.delay"):
        parse_option("delay=soon")
    with pytest.raises(ProfileError, match="--wan: unknown preset"):
        parse_option("fast")


def test_round_trip_and_description() -> None:
    w = Wan("x", WanProfile(delay_ms=3, loss_pct=1), WanProfile(rate_mbit=5))
    assert from_dict(as_dict(w)) == w
    assert describe(w.forward) == "delay 3ms, loss 1%"
    assert describe(WanProfile()) == "unimpaired"
