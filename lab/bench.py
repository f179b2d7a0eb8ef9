"""``scripts/bench``: speed targets, measured side by side in one run on this machine.

Each figure is a median over repetitions; targets are printed beside the measurement with their
ratio, never asserted in unit tests (these machines are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from lab.topology import resolve_path

UP_TARGET_S = 2.0


def _timed(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(list(argv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_lifecycle(topology: str, repeat: int) -> dict[str, float]:
    """Median wall time of ``teleradlab up`` (with its reachability pings) and ``down``."""
    cli = [sys.executable, "-m", "lab"]
    path = str(resolve_path(topology))
    ups, downs = [], []
    for i in range(repeat):
        name = f"bench{i}"
        subprocess.run([*cli, "down", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ups.append(_timed([*cli, "up", path, "--name", name]))
        downs.append(_timed([*cli, "down", name]))
    return {"up": statistics.median(ups), "down": statistics.median(downs)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per figure (5)")
    parser.add_argument("--topology", default="ipv6", help="two-site lab to time (ipv6)")
    args = parser.parse_args(argv)
    print(f"lab lifecycle, topology {args.topology}, median of {args.repeat}:")
    res = bench_lifecycle(args.topology, args.repeat)
    ratio = res["up"] / UP_TARGET_S
    verdict = "meets" if res["up"] < UP_TARGET_S else "MISSES"
    print(
        f"  up    {res['up']:6.3f} s   target < {UP_TARGET_S:.1f} s   "
        f"ratio to target {ratio:.2f}  ({verdict} the target)"
    )
    print(f"  down  {res['down']:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
