"""What a run records about itself: results.csv (its rows so far) and run.json (provenance,
the data paths its numbers went through, the options and any error), written after a failure
too, so that a partial run still says what it measured and why it stopped."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lab.backends.base import Lab
from lab.security.ipsec.tunnel import read_state
from lab.study.results import provenance, write_csv, write_json

if TYPE_CHECKING:
    from lab.study.run import RunOptions, RunResult


#: How the lab's DICOM stores keep what they receive, by the topology's archive.sync.
STORE_PATHS = {
    "none": "written to the page cache, no fsync (archive.sync none: safe from a crash of the "
            "archive program, not from a power cut)",
    "object": "fdatasync of every object before its C-STORE is answered (archive.sync object)",
}



def write_record(opts: RunOptions, lab: Lab, result: RunResult, started: float,
           error: str) -> None:
    """Results so far (all of them, or those before a failure) and provenance, with the error."""
    write_csv(opts.out / "results.csv", result.rows)
    write_json(opts.out / "run.json", provenance({
        "topology": lab.topology.name, "topology_file": lab.topology.source, "lab": lab.name,
        "backend": lab.backend.name, "started": started, "finished": time.time(),
        "data_paths": {"esp": _esp_description(lab),
                       "wan": result.wan.get("path") or "unimpaired veth",
                       "store": STORE_PATHS[lab.topology.archive_sync]},
        "security": lab.plan.label, "wan": result.wan, "notes": result.notes,
        "options": {k: str(v) for k, v in vars(opts).items()},
        "skipped_inputs": [{"file": str(p), "reason": why} for p, why in result.skipped],
        "rows": len(result.rows), "all_ok": result.ok and not error, "error": error,
    }))


def _esp_description(lab: Lab) -> Any:
    ipsec = lab.plan.ipsec
    state = read_state(lab.paths) if ipsec is not None else None
    if ipsec is None or state is None:
        return "none (DICOM TLS end to end)" if lab.plan.tls else "none (no IPsec)"
    return {"path": ipsec.esp_path.value, "ike": state.ike_algorithms,
            "esp": state.esp_algorithms, "ike_setup_seconds": state.setup_seconds,
            "scope": ipsec.scope.value, "auth": ipsec.auth.value,
            "carries_tls": ipsec.carries_tls}


