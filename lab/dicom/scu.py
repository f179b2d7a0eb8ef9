"""The modality's DICOM client (SCU), run inside a node: ``python -m lab.dicom.scu OPERATION``.

Operations (DICOM PS3.4): ``echo`` (Verification), ``store`` (Storage: one association per
study), ``find`` and ``move`` (Query/Retrieve, Patient or Study Root). Each prints one JSON
document on stdout with what happened and how long it took, separating the association setup
(A-ASSOCIATE, PS3.8) from the operation itself, so the orchestrator can time transfers without
parsing logs.

Stored files are sent without being decoded (pynetdicom's chunked send), so each object needs an
accepted presentation context with exactly its own transfer syntax. ``--pdu`` sets the maximum PDU
length this end accepts and caps the PDUs it sends (never above what the peer accepts).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pynetdicom import _config, build_context
from pynetdicom.pdu_primitives import MaximumLengthNotification
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from lab.dicom import MODALITY_AE, PACS_AE, PACS_PORT
from lab.dicom.netopts import TunedAE

FIND = {"patient": PatientRootQueryRetrieveInformationModelFind,
        "study": StudyRootQueryRetrieveInformationModelFind}
MOVE = {"patient": PatientRootQueryRetrieveInformationModelMove,
        "study": StudyRootQueryRetrieveInformationModelMove}


class ScuError(Exception):
    """The operation could not be carried out (reported as JSON with ok=false)."""


def _ae(args: argparse.Namespace) -> TunedAE:
    ae = TunedAE(ae_title=args.calling)
    ae.maximum_pdu_size = args.pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = args.timeout
    ae.connection_timeout = args.timeout
    return ae


def _associate(ae: TunedAE, args: argparse.Namespace) -> tuple[Any, float]:
    start = time.perf_counter()
    # associate() has its own max_pdu argument (default 16382) that overrides the AE's setting.
    assoc = ae.associate(args.host, args.port, ae_title=args.called, max_pdu=args.pdu)
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


class _HeldCheckpoint(threading.Event):
    """An association reactor's checkpoint that stays clear while held: see _reactor_held."""

    held = True

    def set(self) -> None:
        if not self.held:
            super().set()

    def let_go(self) -> None:
        self.held = False
        super().set()


@contextmanager
def _reactor_held(assoc: Any) -> Iterator[None]:
    """Keep the association's reactor thread paused across many send_*() calls.

    In pynetdicom 3.0 each send_*() pauses the requestor's reactor (clearing
    ``_reactor_checkpoint``), then polls every 0.1 ms until the reactor, which sleeps 1 ms per
    pass, reports ``_is_paused``; afterwards it lets it run again. That handshake costs about a
    millisecond per C-STORE and is what opens the race of _keep_responses. A requestor's
    reactor has nothing to do while this end sends (it serves requests from the peer, which a
    Storage SCP does not make, and notices an abort, which a waiting send_*() also notices), so
    the checkpoint is held clear for the whole batch and released at the end (also on error, so
    that the reactor can exit). Left alone if pynetdicom lacks that checkpoint."""
    current = getattr(assoc, "_reactor_checkpoint", None)
    if not isinstance(current, threading.Event) or not hasattr(assoc, "_is_paused"):
        yield
        return
    held = _HeldCheckpoint()
    assoc._reactor_checkpoint = held
    try:
        yield
    finally:
        held.let_go()


def _cap_pdu(assoc: Any, pdu: int) -> None:
    """Send no PDU larger than ``pdu``. pynetdicom refuses to set maximum_length once the
    association is negotiated, but fragments P-DATA by the peer's Maximum Length item
    (PS3.8 D.1) of the A-ASSOCIATE-AC, so that item is lowered in place."""
    peer_max = assoc.acceptor.maximum_length
    if pdu and (peer_max == 0 or pdu < peer_max):
        for item in assoc.acceptor.user_information:
            if isinstance(item, MaximumLengthNotification):
                item.maximum_length_received = pdu


def echo(args: argparse.Namespace) -> dict[str, Any]:
    ae = _ae(args)
    ae.add_requested_context(Verification)
    assoc, setup = _associate(ae, args)
    try:
        start = time.perf_counter()
        status = assoc.send_c_echo()
        seconds = time.perf_counter() - start
    finally:
        assoc.release()
    code = int(status.Status) if status else None
    return {"ok": code == 0, "status": code, "setup_seconds": setup, "seconds": seconds}


def _contexts_for(files: Sequence[Path]) -> list[Any]:
    pairs = set()
    for path in files:
        meta = read_file_meta_info(path)
        pairs.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    if len(pairs) > 128:
        raise ScuError(f"{len(pairs)} SOP class/transfer syntax pairs: one association "
                       "allows 128 presentation contexts (PS3.8 9.3.2.2)")
    return [build_context(cls, [ts]) for cls, ts in sorted(pairs)]


def store(args: argparse.Namespace) -> dict[str, Any]:
    files = [Path(f) for f in args.files]
    if args.file_list:
        files += [Path(line) for line in Path(args.file_list).read_text().split() if line]
    if not files:
        raise ScuError("no files to store")
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = _ae(args)
    ae.requested_contexts = _contexts_for(files)
    total = sum(f.stat().st_size for f in files)
    assoc, setup = _associate(ae, args)
    statuses: Counter[str] = Counter()
    failed: list[str] = []
    try:
        start = time.perf_counter()
        with _reactor_held(assoc):
            for msg_id, path in enumerate(files, start=1):
                status = assoc.send_c_store(path, msg_id=(msg_id - 1) % 65535 + 1)
                code = int(status.Status) if status else -1
                statuses[f"0x{code:04X}" if code >= 0 else "none"] += 1
                if code != 0:
                    failed.append(str(path))
        seconds = time.perf_counter() - start
    finally:
        assoc.release()
    return {"ok": not failed, "objects": len(files), "bytes": total, "setup_seconds": setup,
            "seconds": seconds, "statuses": dict(statuses), "failed": failed}


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
            "seconds": seconds}


def move(args: argparse.Namespace) -> dict[str, Any]:
    ae = _ae(args)
    ae.add_requested_context(MOVE[args.model])
    assoc, setup = _associate(ae, args)
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
            "seconds": seconds}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.dicom.scu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("operation", choices=("echo", "store", "find", "move"))
    p.add_argument("files", nargs="*", help="files to store")
    p.add_argument("--host", required=True, help="peer address (IPv4 or IPv6)")
    p.add_argument("--port", type=int, default=PACS_PORT)
    p.add_argument("--called", default=PACS_AE, help="peer AE title")
    p.add_argument("--calling", default=MODALITY_AE, help="our AE title")
    p.add_argument("--pdu", type=int, default=0, help="maximum PDU length (0 = unlimited)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--file-list", help="a file naming the files to store, one per line")
    p.add_argument("--model", choices=("patient", "study"), default="study")
    p.add_argument("--level", default="STUDY", choices=("PATIENT", "STUDY", "SERIES", "IMAGE"))
    p.add_argument("--key", action="append", default=[], metavar="KEYWORD=VALUE",
                   help="query/retrieve key (repeatable), e.g. StudyInstanceUID=1.2.3")
    p.add_argument("--dest", default=MODALITY_AE, help="C-MOVE destination AE title")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)
    operations = {"echo": echo, "store": store, "find": find, "move": move}
    try:
        result = operations[args.operation](args)
    except (ScuError, OSError, ValueError) as exc:
        result = {"ok": False, "error": str(exc)}
    result = {"operation": args.operation, "peer": f"[{args.host}]:{args.port}", **result}
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
