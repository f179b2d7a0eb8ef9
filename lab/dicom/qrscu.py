"""Query/Retrieve for the SCU (``python -m lab.dicom.scu find|move``): C-FIND and C-MOVE in the
Patient Root and Study Root models (PS3.4 Annex C) on the lab's own Upper Layer
(:mod:`lab.dicom.ul.qr_requestor`), one association per request, plain or DICOM TLS, IPv4 or IPv6.

``move --repeat N`` makes N C-MOVEs in a row, each on its own association, and reports how many
failed and why: what a soak test of the archive's C-MOVE needs, from one process.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pydicom.dataset import Dataset

from lab.dicom.ul import command as cmd
from lab.dicom.ul import qr_requestor as qr
from lab.dicom.ul import tlsopts
from lab.dicom.ul.pdu import PduError
from lab.dicom.ul.requestor import Requestor, ScuError, open_association
from lab.errors import LabError

#: How many failed C-MOVEs of a --repeat run are reported one by one.
FAILURES_LISTED = 20


def _associate(args: argparse.Namespace, sop_class: str) -> tuple[Requestor, float]:
    tls = tlsopts.client_context(args)  # None without --tls-profile
    assoc, setup = open_association(args.host, args.port, called=args.called,
                                    calling=args.calling, contexts=[(sop_class, qr.SYNTAXES)],
                                    max_pdu=args.pdu, timeout=args.timeout, tls=tls)
    if not any(assoc.abstract.get(cid) == sop_class for cid in assoc.accepted):
        assoc.abort()
        raise ScuError(f"{args.called} at [{args.host}]:{args.port} did not accept {sop_class}")
    return assoc, setup


def _identifier(args: argparse.Namespace) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = args.level
    for item in args.key:
        keyword, _, value = item.partition("=")
        setattr(ds, keyword, value)
    return ds


def _run(assoc: Requestor, sop_class: str, command: bytes, args: argparse.Namespace,
         ) -> list[qr.Response]:
    """The responses to one request; the association released after, aborted on an error."""
    try:
        responses = list(qr.request(assoc, sop_class, command, _identifier(args), args.pdu))
    except (PduError, OSError) as exc:  # TimeoutError and LinkClosed included
        assoc.abort()
        raise ScuError(f"no final response: {exc}") from exc
    except BaseException:
        assoc.abort()
        raise
    assoc.release()
    return responses


def find(args: argparse.Namespace) -> dict[str, Any]:
    """One C-FIND (PS3.4 C.4.1): every match's keywords and values."""
    sop_class = qr.FIND[args.model]
    assoc, setup = _associate(args, sop_class)
    start = time.perf_counter()
    responses = _run(assoc, sop_class, qr.find_rq(1, sop_class), args)
    seconds = time.perf_counter() - start
    matches = [{e.keyword: str(e.value) for e in r.identifier if e.keyword}
               for r in responses if r.pending and r.identifier is not None]
    final = responses[-1].status
    return {"ok": final == 0, "status": final, "matches": matches, "setup_seconds": setup,
            "seconds": seconds, **assoc.tls}


def move_once(args: argparse.Namespace) -> dict[str, Any]:
    """One C-MOVE (PS3.4 C.4.2): the final status and sub-operation counts."""
    sop_class = qr.MOVE[args.model]
    assoc, setup = _associate(args, sop_class)
    start = time.perf_counter()
    responses = _run(assoc, sop_class, qr.move_rq(1, sop_class, args.dest), args)
    seconds = time.perf_counter() - start
    final = responses[-1]
    return {"ok": final.status == 0, "status": final.status,
            "completed": final.count(cmd.COMPLETED), "failed": final.count(cmd.FAILED),
            "warning": final.count(cmd.WARNING), "setup_seconds": setup, "seconds": seconds,
            **assoc.tls}


def move(args: argparse.Namespace) -> dict[str, Any]:
    """``args.repeat`` C-MOVEs: the last one's document; with more than one, also how many
    failed (an error, or a final status other than Success) and the first few reasons."""
    repeat = max(1, getattr(args, "repeat", 1))
    if repeat == 1:
        return move_once(args)
    failures: list[dict[str, Any]] = []
    doc: dict[str, Any] = {}
    completed = 0
    for i in range(1, repeat + 1):
        try:
            doc = move_once(args)
        except (LabError, OSError) as exc:  # as main() reports a single move's error
            doc = {"ok": False, "error": str(exc)}
        completed += int(doc.get("completed", 0))
        if not doc["ok"]:
            failures.append({"move": i, **{k: doc[k] for k in ("error", "status") if k in doc}})
    return {**doc, "ok": not failures, "repeat": repeat, "moves_failed": len(failures),
            "completed_total": completed, "failures": failures[:FAILURES_LISTED]}
