"""The DIMSE operations of a probe, all of them read-only: C-ECHO round trips (PS3.7 9.1.5),
a Study Root C-FIND at study level whose key matches nothing (PS3.4 C.6.2.1), and, only when
asked, a C-MOVE of that same nothing to a named destination (PS3.4 C.4.2): the peer must
still check the destination, so its answer tells whether it knows that AE title (0xA801,
"move destination unknown", PS3.4 C.4.2.1.5), while no object moves.
"""

from __future__ import annotations

import time

from pydicom.dataset import Dataset

from lab.dicom.ul import command as cmd
from lab.dicom.ul import qr_requestor as qr
from lab.dicom.ul.requestor import Requestor
from lab.errors import LabError
from lab.model.dicom import name_uid
from lab.probe.association import PROBE_MAX_PDU, Failed, Target, associate, release
from lab.probe.findings import DicomFindings, Operation

IMPLICIT_LE = "1.2.840.10008.1.2"
#: A Study Instance UID no archive holds: the lab's name-based UID of this phrase.
NO_SUCH_STUDY = name_uid("teleradlab probe: a study that matches nothing")


def nothing() -> Dataset:
    """A study-level Identifier whose unique key matches no study (PS3.4 C.6.2.1.2)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = NO_SUCH_STUDY
    ds.PatientID = ""
    ds.StudyDate = ""
    return ds


def echoes(assoc: Requestor, count: int) -> tuple[list[float], int]:
    """``count`` C-ECHO round trips (ms) on one association, and the last status."""
    times, status = [], -1
    for message_id in range(1, count + 1):
        start = time.perf_counter()
        status = assoc.echo(message_id)
        times.append(round(1000 * (time.perf_counter() - start), 3))
    return times, status


def query(assoc: Requestor, sop_class: str, command: bytes) -> Operation:
    """One C-FIND or C-MOVE of :func:`nothing`: its final status and the pending responses."""
    if not any(assoc.abstract.get(cid) == sop_class for cid in assoc.accepted):
        return Operation(offered=False, error=f"{sop_class} was not accepted")
    matches = 0
    try:
        for response in qr.request(assoc, sop_class, command, nothing(), PROBE_MAX_PDU):
            if response.pending:
                matches += 1
            else:
                return Operation(offered=True, status=response.status, matches=matches)
    except (LabError, OSError) as exc:
        return Operation(offered=True, matches=matches, error=str(exc))
    return Operation(offered=True, matches=matches, error="no final response")


def probe_dicom(target: Target, *, echo_count: int, move_to: str | None) -> DicomFindings:
    """Associate proposing Verification and Study Root Q/R (Find, and Move when ``move_to``
    is given), time ``echo_count`` C-ECHOs, try C-FIND, and C-MOVE on an association of its
    own (a failed C-MOVE must not hide the C-FIND's answer). Failed if the first association
    was not established."""
    syntaxes = ("1.2.840.10008.1.2.1", IMPLICIT_LE)
    contexts = [(cmd.VERIFICATION, (IMPLICIT_LE,)), (qr.FIND["study"], syntaxes)]
    assoc, found, _ = associate(target, contexts)
    out = DicomFindings(association=found, move_destination=move_to)
    try:
        if cmd.VERIFICATION in {assoc.abstract[c] for c in assoc.accepted}:
            try:
                out.echo_ms, out.echo_status = echoes(assoc, echo_count)
            except (LabError, OSError) as exc:
                out.echo_error = f"C-ECHO failed: {exc}"
                return out
        out.find = query(assoc, qr.FIND["study"], qr.find_rq(1, qr.FIND["study"]))
    finally:
        release(assoc)
    if move_to:
        out.move = _move(target, move_to)
    return out


def _move(target: Target, destination: str) -> Operation:
    try:
        assoc, _, _ = associate(target, [(qr.MOVE["study"], ("1.2.840.10008.1.2.1", IMPLICIT_LE))])
    except Failed as exc:
        return Operation(offered=False, error=str(exc))
    try:
        return query(assoc, qr.MOVE["study"], qr.move_rq(1, qr.MOVE["study"], destination))
    finally:
        release(assoc)
