"""The one step of a probe that writes to the peer, only with ``--allow-store N``: C-STORE of a
small synthetic study (``N`` CT objects of the lab's generator, :mod:`lab.dicom.data`,
patient ``TELERAD^PROBE``) on one association, timed, each object sent as its file is
(:meth:`Requestor.store_all`, PS3.4 B.2). The report names the study so that the peer's
administrators can delete it; the probe deletes nothing itself (it has no right to).

The throughput is the DICOM files' bytes over the C-STOREs' time (association set-up
excluded), as the lab's results count it: what the application achieved over this path, not
the link's bottleneck rate, so it does not enter the WAN profile.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lab.dicom.data.generate import generate_study
from lab.dicom.ul.requestor import read_part10
from lab.errors import LabError
from lab.probe.association import Failed, Target, associate, release
from lab.probe.findings import StoreResult

MODALITY = "CT"
PATIENT = "TELERAD^PROBE"


def store_study(target: Target, objects: int, seed: int = 16) -> StoreResult:
    """Generate and C-STORE ``objects`` objects; what happened (never raises for the peer)."""
    with tempfile.TemporaryDirectory(prefix="teleradlab-probe-") as work:
        study = generate_study(MODALITY, Path(work), seed=seed, objects=objects,
                               patient_name=PATIENT)
        files = [read_part10(f) for f in study.files]
        found = StoreResult(objects=objects, bytes=study.total_bytes,
                            study_instance_uid=study.study_instance_uid,
                            patient_id=study.patient_id, patient_name=PATIENT)
        contexts = sorted({(f.sop_class, f.transfer_syntax) for f in files})
        try:
            assoc, _, _ = associate(target, [(a, (ts,)) for a, ts in contexts])
        except Failed as exc:
            found.error = f"association for C-STORE: {exc}"
            return found
        try:
            start = time.perf_counter()
            statuses = assoc.store_all(files, 0)
            found.seconds = round(time.perf_counter() - start, 6)
        except (LabError, OSError) as exc:
            found.error = f"C-STORE failed: {exc}"
            return found
        finally:
            release(assoc)
    found.statuses = statuses
    found.stored = sum(s in (0x0000, 0xB000, 0xB006, 0xB007) for s in statuses)
    if found.seconds:
        found.mbit_s = round(8 * found.bytes / found.seconds / 1e6, 3)
    return found
