"""lab.host.wait: a Deadline counts down on the clock it is given; until() returns the first
true value, asks once more at the deadline, and otherwise raises a WaitTimeout (a LabError)
that names what was awaited and for how long. Checked on a simulated clock (exact sleeps) and
on the real one."""

from __future__ import annotations

import threading
import time

import pytest

from lab.errors import LabError, WaitTimeout
from lab.host.wait import Deadline, until


class Clock:
    """A clock that moves only when slept on, recording each sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_deadline_counts_down_and_expires() -> None:
    clock = Clock()
    d = Deadline(2.0, clock)
    assert d.remaining() == 2.0 and not d.expired
    clock.sleep(1.5)
    assert d.remaining() == pytest.approx(0.5) and not d.expired
    clock.sleep(1.0)
    assert d.remaining() == 0.0 and d.expired


def test_until_returns_the_first_true_value() -> None:
    clock = Clock()
    answers = iter([None, 0, "", "ready", "later"])
    value = until(lambda: next(answers), 5.0, 0.1, what="x", clock=clock, sleep=clock.sleep)
    assert value == "ready"
    assert clock.sleeps == [0.1, 0.1, 0.1]


def test_until_times_out_naming_what_and_how_long() -> None:
    clock = Clock()
    calls: list[float] = []

    def never() -> bool:
        calls.append(clock.now)
        return False

    with pytest.raises(WaitTimeout) as info:
        until(never, 1.0, 0.3, what="charon's vici socket in gw-a", clock=clock,
              sleep=clock.sleep, detail=lambda: "log: no such file")
    err = info.value
    assert isinstance(err, LabError)
    assert (err.what, err.timeout) == ("charon's vici socket in gw-a", 1.0)
    assert str(err) == "charon's vici socket in gw-a: not within 1 s\nlog: no such file"
    # sleeps never overshoot the deadline, and the predicate is asked at the deadline itself
    assert clock.sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert calls[-1] == pytest.approx(101.0)


def test_true_at_the_deadline_is_not_a_timeout() -> None:
    clock = Clock()
    value = until(lambda: clock.now >= 101.0 and "made it", 1.0, 0.25, what="x", clock=clock,
                  sleep=clock.sleep)
    assert value == "made it"


def test_a_predicate_may_give_up_early() -> None:
    def dead() -> bool:
        raise LabError("the daemon exited with status 1")

    with pytest.raises(LabError, match="exited"):
        until(dead, 60.0, what="x")


def test_on_the_real_clock() -> None:
    flag = threading.Event()
    threading.Timer(0.1, flag.set).start()
    start = time.monotonic()
    assert until(flag.is_set, 5.0, 0.01, what="the flag") is True
    assert 0.09 <= time.monotonic() - start < 2.0
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"^nothing: not within 0.2 s$"):
        until(lambda: False, 0.2, 0.05, what="nothing")
    assert 0.2 <= time.monotonic() - start < 1.5
