"""Query/Retrieve for the SCU (``python -m lab.dicom.scu find|move``), on pynetdicom: C-FIND and
C-MOVE in the Patient Root and Study Root models (PS3.4 Annex C). Imported only by those
operations, so that storing and echoing start without pynetdicom (:mod:`lab.dicom.requestor`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.pdu_primitives import MaximumLengthNotification
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from lab.dicom import tlsopts
from lab.dicom.netopts import TunedAE
from lab.dicom.requestor import ScuError

FIND = {"patient": PatientRootQueryRetrieveInformationModelFind,
        "study": StudyRootQueryRetrieveInformationModelFind}
MOVE = {"patient": PatientRootQueryRetrieveInformationModelMove,
        "study": StudyRootQueryRetrieveInformationModelMove}


def _ae(args: argparse.Namespace) -> TunedAE:
    ae = TunedAE(ae_title=args.calling)
    ae.maximum_pdu_size = args.pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = args.timeout
    ae.connection_timeout = args.timeout
    return ae


def _associate(ae: TunedAE, args: argparse.Namespace) -> tuple[Any, float]:
    start = time.perf_counter()
    # associate() has its own max_pdu argument (default 16382) that overrides the AE's setting.
    tls = tlsopts.client_context(args)
    assoc = ae.associate(args.host, args.port, ae_title=args.called, max_pdu=args.pdu,
                         tls_args=(tls, args.host) if tls is not None else None)
    setup = time.perf_counter() - start
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise ScuError(f"association with {args.called} at [{args.host}]:{args.port} {why}")
    try:
        _keep_responses(assoc)
        _cap_pdu(assoc, args.pdu)
    except BaseException:
        assoc.abort()
        raise
    return assoc, setup


def _keep_responses(assoc: Any) -> None:
    """Work around a race in pynetdicom 3.0: a send_*() call pauses the association's reactor
    thread through a flag that can still say "paused" from the previous call while the reactor
    is waking up, so the reactor may take the response off the DIMSE queue and drop it as an
    unexpected message, leaving send_*() to wait for the DIMSE timeout and abort. Seen against
    DCMTK's storescp (a fast peer) in about one in ten 100-object C-STOREs on a busy machine.
    While a send_*() waits (the reactor's checkpoint is cleared), a response the reactor takes
    is put back for it."""
    serve = assoc._serve_request

    def serve_or_put_back(msg: Any, context_id: int) -> None:
        if msg.is_valid_request or assoc._reactor_checkpoint.is_set():
            serve(msg, context_id)
        else:
            assoc.dimse.msg_queue.put((context_id, msg))

    assoc._serve_request = serve_or_put_back


def _cap_pdu(assoc: Any, pdu: int) -> None:
    """Send no PDU larger than ``pdu``. pynetdicom refuses to set maximum_length once the
    association is negotiated, but fragments P-DATA by the peer's Maximum Length item
    (PS3.8 D.1) of the A-ASSOCIATE-AC, so that item is lowered in place."""
    peer_max = assoc.acceptor.maximum_length
    if pdu and (peer_max == 0 or pdu < peer_max):
        for item in assoc.acceptor.user_information:
            if isinstance(item, MaximumLengthNotification):
                item.maximum_length_received = pdu


def _identifier(args: argparse.Namespace) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = args.level
    for item in args.key:
        keyword, _, value = item.partition("=")
        setattr(ds, keyword, value)
    return ds


def find(args: argparse.Namespace) -> dict[str, Any]:
    ae = _ae(args)
    ae.add_requested_context(FIND[args.model])
    assoc, setup = _associate(ae, args)
    tls = tlsopts.negotiated(assoc.dul.socket.socket)
    matches: list[dict[str, Any]] = []
    final = None
    try:
        start = time.perf_counter()
        for status, identifier in assoc.send_c_find(_identifier(args), FIND[args.model]):
            if not status:
                raise ScuError("no C-FIND response (timeout or abort)")
            final = int(status.Status)
            if final in (0xFF00, 0xFF01) and identifier is not None:
                matches.append({e.keyword: str(e.value) for e in identifier if e.keyword})
        seconds = time.perf_counter() - start
    finally:
        assoc.release()
    return {"ok": final == 0, "status": final, "matches": matches, "setup_seconds": setup,
            "seconds": seconds, **tls}


def move(args: argparse.Namespace) -> dict[str, Any]:
    ae = _ae(args)
    ae.add_requested_context(MOVE[args.model])
    assoc, setup = _associate(ae, args)
    tls = tlsopts.negotiated(assoc.dul.socket.socket)
    final: Any = None
    try:
        start = time.perf_counter()
        for status, _ in assoc.send_c_move(_identifier(args), args.dest, MOVE[args.model]):
            if not status:
                raise ScuError("no C-MOVE response (timeout or abort)")
            final = status
        seconds = time.perf_counter() - start
    finally:
        assoc.release()
    code = int(final.Status)
    counts = {k: int(final.get(f"NumberOf{k.capitalize()}Suboperations", 0) or 0)
              for k in ("completed", "failed", "warning")}
    return {"ok": code == 0, "status": code, **counts, "setup_seconds": setup,
            "seconds": seconds, **tls}


