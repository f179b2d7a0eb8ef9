"""Pings run inside the nodes (iputils ``ping``), in parallel batches: the one way the lab asks
"does A reach B". A backend-level helper (it needs only the Lab handle's
:meth:`Backend.node_argv`), so that both
the runtime's reachability check (:mod:`lab.runtime.reach`) and the IPsec tunnel check
(:mod:`lab.security.ipsec.tunnel`) use it without the security layer importing the runtime."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from lab.backends.base import Lab
from lab.host import shell
from lab.model.topology import Probe

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


def run_probes(lab: Lab, todo: Sequence[Probe]) -> list[ProbeResult]:
    results: list[ProbeResult] = []
    pending = list(todo)
    while pending:
        batch, pending = pending[:PARALLEL], pending[PARALLEL:]
        procs = [
            (p, shell.spawn(lab.backend.node_argv(lab.name, p.source, ping_argv(p)), capture=True))
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
