"""Receiver-side integrity and authenticity check, run inside the receiving node:
``python -m lab.dicom.verify --manifest M --ca CA --store ROOT --study UID``.

Checks the sender's signature on the manifest against the lab CA, then recomputes the SHA-256
digest of every object of the study in the receiver's store and compares it with the manifest.
Every mismatch is reported per object (never summarised away). Prints one JSON document
(:class:`lab.dicom.reports.VerifyReport`); exits 1 unless everything verified.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.dicom.archive.store import study_paths
from lab.dicom.data.integrity import Status, check_objects, read_signed, summarize, verify_manifest
from lab.dicom.reports import VerifyReport
from lab.errors import LabError


def verify(manifest: Path, ca: Path, store: Path, study: str) -> dict[str, Any]:
    signed = read_signed(manifest)
    signature = verify_manifest(signed, ca)
    checks = check_objects(signed.manifest, study_paths(store, study))
    summary = summarize(checks)
    problems = [
        {"sop_instance_uid": c.sop_instance_uid, "status": str(c.status),
         "path": str(c.path) if c.path else None, "detail": c.detail}
        for c in checks if c.status is not Status.OK
    ]
    if not signature.ok:
        problems.insert(0, {"status": "signature", "detail": signature.reason})
    return {
        "ok": signature.ok and summary.all_ok,
        "signature_ok": signature.ok,
        "signer": signature.signer,
        "objects": summary.total,
        "summary": str(summary),
        "problems": problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.dicom.verify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, required=True, help="signed manifest (JSON)")
    p.add_argument("--ca", type=Path, required=True, help="the lab CA certificate (PEM)")
    p.add_argument("--store", type=Path, required=True, help="the receiver's store directory")
    p.add_argument("--study", required=True, help="Study Instance UID")
    args = p.parse_args(argv)
    try:
        result = verify(args.manifest, args.ca, args.store, args.study)
    except (LabError, OSError, ValueError) as exc:
        result = {"ok": False, "error": str(exc), "problems": [{"status": "error",
                                                                "detail": str(exc)}]}
    report = VerifyReport.build(result)
    print(report.line())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
