"""Waiting with a deadline: one place for the loops that poll until something is ready (a
daemon's socket, a process gone, an interface up) and give up after a timeout.

:class:`Deadline` is a point in time on the monotonic clock (never the wall clock, which NTP
may step); :func:`until` polls a predicate until it returns a true value, and raises
:class:`~lab.errors.WaitTimeout` naming what was awaited and for how long when the deadline
passes. The predicate is asked once more after the last sleep, so a condition that becomes true
just at the deadline is not reported as a failure; and a predicate may raise itself to give up
early (a daemon that died will not start later).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from lab.errors import WaitTimeout

__all__ = ["Deadline", "WaitTimeout", "until"]

T = TypeVar("T")


class Deadline:
    """``seconds`` from now, on ``clock`` (``time.monotonic`` unless a test gives another)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self._end


def until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, *, what: str,
          detail: Callable[[], str] | None = None,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a true value, and return
    that value; after ``timeout`` seconds raise :class:`~lab.errors.WaitTimeout` naming
    ``what`` (and ``detail()``, e.g. the tail of a log, if given)."""
    deadline = Deadline(timeout, clock)
    while True:
        value = predicate()
        if value:
            return value
        if deadline.expired:
            raise WaitTimeout(what, timeout, detail() if detail else "")
        sleep(min(interval, deadline.remaining()))
