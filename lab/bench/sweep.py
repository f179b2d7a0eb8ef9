"""The sweep part of ``scripts/bench``: the shipped ``quick`` sweep's total time and what each
case costs beyond its DICOM operations (the overhead lab reuse has to keep small).

Per-case overhead = the case's wall time minus the time its rows spent in DICOM operations
(association setup and the operation itself): program starts in the nodes, study generation,
signing and verification. It is set beside the time one lab build takes, which is what every
case would cost again without reuse.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.study.results import read_csv
from lab.study.sweep import runner, spec

TARGET_S = 600.0  # the target for the quick sweep on this machine
PREFIX = "bench-sweep"


def bench_sweep(prefix: str = PREFIX) -> dict[str, float]:
    sweep = spec.load(spec.resolve_path("quick"))
    with tempfile.TemporaryDirectory(prefix="teleradlab-bench-sweep-") as tmp:
        out = Path(tmp)
        start = time.monotonic()
        res = runner.run_sweep(sweep, out, prefix=prefix,
                               say=lambda msg: print(f"  … {msg}", file=sys.stderr))
        total = time.monotonic() - start
        rows = read_csv(out / "results.csv")
    dicom: dict[str, float] = {}
    for r in rows:
        if r["case_status"] == "done" and r["seconds"]:
            dicom[r["case_id"]] = (dicom.get(r["case_id"], 0.0) + float(r["seconds"])
                                   + float(r["setup_seconds"] or 0))
    walls = [res.case_seconds[c] for c in dicom]
    overheads = [res.case_seconds[c] - dicom[c] for c in dicom]
    builds = [b["seconds"] for b in res.builds if b["ok"]]
    return {"total": total, "cases": res.total, "done": res.done, "failed": res.failed,
            "builds": len(builds), "build": statistics.median(builds) if builds else 0.0,
            "wall": statistics.median(walls) if walls else 0.0,
            "overhead": statistics.median(overheads) if overheads else 0.0}


def print_sweep(prefix: str = PREFIX) -> None:
    m = bench_sweep(prefix)
    print(f"sweep (quick, {m['cases']:.0f} cases: {m['done']:.0f} run, {m['failed']:.0f} "
          f"failed/unavailable; {m['builds']:.0f} labs built)")
    print(f"  total               {m['total']:8.1f} s   target < {TARGET_S:.0f} s  "
          f"(target/measured {TARGET_S / m['total']:.2f})")
    print(f"  per run case        {m['wall']:8.2f} s   median wall time")
    print(f"  per-case overhead   {m['overhead']:8.2f} s   median, beyond DICOM operations")
    if m["build"]:
        print(f"  one lab build       {m['build']:8.2f} s   (saved per case by reuse; "
              f"overhead/build {m['overhead'] / m['build']:.2f})")
