"""lab.host.processes.stop on real child processes: SIGTERM first, SIGKILL only for those still
alive after the grace period, and only once they are really gone does it return."""

from __future__ import annotations

import subprocess
import sys
import time

from lab.host.processes import stop

IGNORE_TERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "print('ready', flush=True); time.sleep(60)")


def test_a_process_that_obeys_sigterm_is_not_killed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = time.monotonic()
    assert stop([proc.pid], grace=5.0) == []
    assert proc.wait(timeout=5) == -15  # SIGTERM
    assert time.monotonic() - start < 3.0  # returned as soon as it was gone, not after grace


def test_one_that_ignores_it_is_killed_after_the_grace() -> None:
    proc = subprocess.Popen([sys.executable, "-c", IGNORE_TERM], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    start = time.monotonic()
    assert stop([proc.pid], grace=0.3) == [proc.pid]
    assert time.monotonic() - start >= 0.3
    assert proc.wait(timeout=5) == -9  # SIGKILL
