"""``scripts/bench``: speed targets, measured side by side in one run on this machine.

Each figure is a median over repetitions; targets are printed beside the measurement with their
ratio, never asserted in unit tests (these machines are noisy).

- lifecycle: ``teleradlab up`` (with its reachability pings) and ``down`` of a two-site lab.
- docker: ``up``/``down`` on the docker backend against netns, side by side (lab.bench.backends).
- store: C-STORE of a 100-object CT study (a new one per repetition) from the modality to the
  PACS over the unimpaired path of one IPv4 lab (lab ``bench-store``), by the lab's SCU to the
  lab's PACS and by DCMTK's storescu to DCMTK's storescp (plus the two cross pairs, which show
  which end costs what, and the lab's SCU to a second lab PACS run with ``--sync object``,
  which flushes every object before answering, as storescp and a lab's own PACS do not; see
  lab/bench/store.py).
- security: per protection (plain, IPsec per ESP algorithm, TLS per profile), raw transport
  (iperf3, or bulk TLS; and the same bulk stream written into new files, as a store must) and
  C-STORE throughput of a short and a long study over the same path, their ratios and the cost
  against plain (see lab/bench/security.py); ``--case`` runs some
  configurations only, ``--security-lab`` names the lab it builds.
- sweep: the shipped quick sweep, total time and per-case overhead (lab.bench.sweep).
- wan: WAN fidelity on the path in use and the userspace emulator's capacity (lab.bench.wan).
- wan-dicom: a 100-object CT study across the unimpaired path and each WAN preset, DCMTK
  against the lab with and without a window and with parallel associations, each against the
  path's bound, the lab's C-MOVE against its C-STORE and against movescu <- dcmqrscp, and the
  lab PACS's C-FIND answers against dcmqrscp's (lab.bench.wan_dicom); ``--wan-preset`` and
  ``--objects`` narrow it, ``--wan-dicom-lab`` names its lab. Not in the default set (it
  takes minutes).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from lab.bench.backends import print_backends
from lab.bench.security import LAB, bench_security, print_security, select_cases
from lab.bench.store import bench_store, print_store
from lab.bench.sweep import print_sweep
from lab.bench.wan import print_wan
from lab.bench.wan_dicom import LAB as WAN_DICOM_LAB
from lab.bench.wan_dicom import OBJECTS, PATHS, bench_wan_dicom, print_heading, print_preset
from lab.errors import LabError
from lab.runtime import lifecycle
from lab.topology import resolve_path

UP_TARGET_S = 2.0


def _timed(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(list(argv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_lifecycle(topology: str, repeat: int) -> dict[str, float]:
    """Median wall time of ``teleradlab up`` (with its reachability pings) and ``down``: the
    network lab alone (``--no-services``, the lifecycle target) and with the DICOM services."""
    cli = [sys.executable, "-m", "lab"]
    path = str(resolve_path(topology))
    times: dict[str, list[float]] = {"up": [], "up+services": [], "down": []}
    for i in range(repeat):
        name = f"bench{i}"
        subprocess.run([*cli, "down", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times["up"].append(_timed([*cli, "up", path, "--name", name, "--no-services"]))
        times["down"].append(_timed([*cli, "down", name]))
        times["up+services"].append(_timed([*cli, "up", path, "--name", name]))
        _timed([*cli, "down", name])
    return {k: statistics.median(v) for k, v in times.items()}


# --- C-STORE: the lab's SCU and PACS against DCMTK ----------------------------------------------


def print_lifecycle(topology: str, repeat: int) -> None:
    print(f"lab lifecycle, topology {topology}, median of {repeat}:")
    res = bench_lifecycle(topology, repeat)
    ratio = res["up"] / UP_TARGET_S
    verdict = "meets" if res["up"] < UP_TARGET_S else "MISSES"
    print(
        f"  up    {res['up']:6.3f} s   target < {UP_TARGET_S:.1f} s   "
        f"ratio to target {ratio:.2f}  ({verdict} the target)"
    )
    print(f"  down  {res['down']:6.3f} s")
    print(f"  up with the DICOM services (PACS, receivers) started and listening: "
          f"{res['up+services']:6.3f} s")


_MAIN_PID = os.getpid()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds (so the benchmark's lab and storescp are removed), in this process only."""
    if os.getpid() != _MAIN_PID:
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=None,
                        help="repetitions per figure (lifecycle 5, store 5, security 3, docker "
                        "3, wan-dicom 5 unimpaired and 1 per WAN preset)")
    parser.add_argument("--topology", default="ipv6",
                        help="two-site lab of the lifecycle benchmark (ipv6)")
    parser.add_argument("--only", choices=("lifecycle", "store", "security", "sweep", "wan",
                                           "docker", "wan-dicom"),
                        help="run one benchmark (default: all)")
    parser.add_argument("--case", action="append", default=[], metavar="TEXT",
                        help="security: run only the configurations whose label contains TEXT "
                        "(repeatable), e.g. --case 'tls aes' --case aes128-sha256")
    parser.add_argument("--security-lab", default=LAB, metavar="NAME",
                        help=f"security: name of the lab it builds (default {LAB})")
    parser.add_argument("--wan-preset", action="append", choices=PATHS, default=[],
                        help="wan-dicom: this path only (repeatable; default all, 'none' being "
                        "the unimpaired path)")
    parser.add_argument("--objects", type=int, default=OBJECTS,
                        help="wan-dicom: objects of the CT study (default %(default)s)")
    parser.add_argument("--wan-dicom-lab", default=WAN_DICOM_LAB, metavar="NAME",
                        help=f"wan-dicom: name of the lab it builds (default {WAN_DICOM_LAB})")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    signal.signal(signal.SIGTERM, _on_sigterm)
    lifecycle.require_root()
    try:
        if args.only in (None, "lifecycle"):
            print_lifecycle(args.topology, args.repeat or 5)
        if args.only in (None, "store"):
            repeat = args.repeat or 5
            results, size = bench_store(repeat, lambda msg: print(f"  … {msg}", file=sys.stderr))
            print_store(results, size, repeat)
        if args.only in (None, "security"):
            repeat = args.repeat or 3
            sec = bench_security(repeat, lambda msg: print(f"  … {msg}", file=sys.stderr),
                                 select_cases(args.case), args.security_lab)
            print_security(sec, repeat)
        if args.only in (None, "sweep"):
            print_sweep()
        if args.only in (None, "wan"):
            print_wan(lambda msg: print(f"  … {msg}", file=sys.stderr))
        if args.only in (None, "docker"):
            print_backends(args.topology, args.repeat or 3)
        if args.only == "wan-dicom":
            print_heading(args.objects)
            bench_wan_dicom(args.wan_preset or PATHS, args.objects, args.wan_dicom_lab,
                            lambda msg: print(f"  … {msg}", file=sys.stderr, flush=True),
                            print_preset, args.repeat)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
