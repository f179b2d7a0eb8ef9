"""Reachability checks with real pings, run inside the nodes (iputils ``ping``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lab.backends.base import Backend, Progress, no_progress
from lab.errors import ReachabilityError
from lab.host import shell
from lab.model.routing import probes
from lab.model.topology import Probe, Topology

#: At most this many pings run at once (each is a short-lived process).
PARALLEL = 16
#: ping sends every 0.2 s until the first reply, giving up after this many seconds.
DEADLINE_S = 3


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    ok: bool
    detail: str


def ping_argv(probe: Probe) -> list[str]:
    return ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", str(DEADLINE_S), str(probe.target)]


def run_probes(backend: Backend, lab: str, todo: Sequence[Probe]) -> list[ProbeResult]:
    results: list[ProbeResult] = []
    pending = list(todo)
    while pending:
        batch, pending = pending[:PARALLEL], pending[PARALLEL:]
        procs = [
            (p, shell.spawn(backend.node_argv(lab, p.source, ping_argv(p)), capture=True))
            for p in batch
        ]
        for probe, proc in procs:
            try:
                out, err = proc.communicate(timeout=DEADLINE_S + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            text = (err or out).decode(errors="replace").strip().splitlines()
            detail = "no reply" if proc.returncode == 1 else (text[-1] if text else "failed")
            results.append(ProbeResult(probe, proc.returncode == 0, detail))
    return results


def check(
    backend: Backend,
    lab: str,
    topology: Topology,
    progress: Progress = no_progress,
    skip: Callable[[Probe], bool] = lambda _: False,
) -> list[ProbeResult]:
    """Ping every pair that should reach each other (but those ``skip`` rules out);
    ReachabilityError naming each failure."""
    todo = [p for p in probes(topology.nodes) if not skip(p)]
    progress(f"checking reachability ({len(todo)} pings)")
    results = run_probes(backend, lab, todo)
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
