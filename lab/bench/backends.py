"""``scripts/bench --only docker``: ``up`` and ``down`` of one topology on the docker backend
against the netns backend, measured side by side (alternating, so both see the same machine
state), with the images already built: the figure is the backend's cost, not the image build.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from lab.backends.docker.backend import build_images
from lab.errors import LabError
from lab.topology import resolve_path

BACKENDS = ("netns", "docker")
PHASES = ("up", "up+services", "down")


def _timed(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv[2:])} failed: {proc.stderr.strip()[-1500:]}")
    return time.perf_counter() - start


def bench_backends(topology: str, repeat: int) -> dict[str, dict[str, float]]:
    """Median wall time of ``teleradlab up`` (with its pings; without and with the DICOM
    services) and ``down``, per backend, through the command line as a user runs it."""
    build_images()  # warm images: building is not what is measured
    cli = [sys.executable, "-m", "lab"]
    path = str(resolve_path(topology))
    times: dict[str, dict[str, list[float]]] = {b: {p: [] for p in PHASES} for b in BACKENDS}
    for i in range(repeat):
        for backend in BACKENDS:
            name = f"bench-{backend}{i}"
            up = [*cli, "up", path, "--name", name, "--backend", backend]
            times[backend]["up"].append(_timed([*up, "--no-services"]))
            times[backend]["down"].append(_timed([*cli, "down", name]))
            times[backend]["up+services"].append(_timed(up))
            _timed([*cli, "down", name])
    return {b: {p: statistics.median(v) for p, v in ph.items()} for b, ph in times.items()}


def print_backends(topology: str, repeat: int) -> None:
    print(f"docker against netns, topology {topology}, warm images, median of {repeat}:")
    res = bench_backends(topology, repeat)
    print(f"  {'':12} {'netns':>9} {'docker':>9}   docker / netns")
    for phase in PHASES:
        n, d = res["netns"][phase], res["docker"][phase]
        print(f"  {phase:12} {n:8.3f}s {d:8.3f}s   {d / n:6.2f}")
