"""The lab's reachability check: every pair that should reach each other is pinged
(:mod:`lab.backends.probes`), and any silence is an error naming each failure."""

from __future__ import annotations

from collections.abc import Callable

from lab.backends.base import Lab, Progress, no_progress
from lab.backends.probes import ProbeResult, run_probes
from lab.errors import ReachabilityError
from lab.model.routing import probes
from lab.model.topology import Probe


def check(
    lab: Lab,
    progress: Progress = no_progress,
    skip: Callable[[Probe], bool] = lambda _: False,
) -> list[ProbeResult]:
    """Ping every pair that should reach each other (but those ``skip`` rules out);
    ReachabilityError naming each failure."""
    todo = [p for p in probes(lab.topology.nodes) if not skip(p)]
    progress(f"checking reachability ({len(todo)} pings)")
    results = run_probes(lab, todo)
    failed = [r for r in results if not r.ok]
    if failed:
        lines = [
            f"{r.probe.source} -> {r.probe.destination} ({r.probe.target}, "
            f"{r.probe.family.label}): {r.detail}"
            for r in failed
        ]
        raise ReachabilityError(
            f"{len(failed)} of {len(results)} pings got no reply:\n  " + "\n  ".join(lines)
        )
    return results
