"""The lab's DICOM archive (SCP), run inside a node: ``python -m lab.dicom.pacs``.

Serves, per DICOM PS3.4:
- Verification (C-ECHO, Annex A);
- Storage of every storage SOP class (C-STORE, Annex B), storing the received encoded dataset
  without decoding it into a crash-safe store (lab.dicom.store); associations that propose
  only Verification and Storage are served by the lab's lean acceptor (lab.dicom.acceptor,
  chosen per association by lab.dicom.dispatch), the others by pynetdicom;
- Query/Retrieve FIND and MOVE in the Patient Root and Study Root models (Annex C), unless
  ``--storage-only`` (the modality's receiver of C-MOVE results is this program in that mode).

Move destinations (AE title -> host, port) are given with ``--destination AE=HOST:PORT``; an
unknown destination gets the standard failure status 0xA801 (Move Destination unknown).
An A-ASSOCIATE-RQ for another called AE title is rejected (PS3.8 9.3.4). ``--tls-*`` serves
DICOM TLS (PS3.15 Annex B; see lab.dicom.tlsopts), and makes C-MOVE sub-operations use TLS
with the same credentials. ``--sync`` chooses whether each object is fsync'ed before its
C-STORE is answered.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    _config,
    build_context,
    evt,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from lab.dicom import PACS_AE, PACS_PORT, tlsopts
from lab.dicom.acceptor import Config
from lab.dicom.dispatch import DispatchingServer
from lab.dicom.netopts import TunedAE, tune_association_server
from lab.dicom.query import QueryError, find, resolve_move
from lab.dicom.store import Store
from lab.errors import LabError

log = logging.getLogger("lab.dicom.pacs")

# PS3.4 status codes used here.
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
CANNOT_UNDERSTAND = 0xC000  # Storage: Error, Cannot understand
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH = 0xA900  # Q/R: Identifier does not match SOP Class
UNABLE_TO_PROCESS = 0xC001  # Q/R: Unable to process (0xCxxx)

MODELS = {
    PatientRootQueryRetrieveInformationModelFind: "patient",
    PatientRootQueryRetrieveInformationModelMove: "patient",
    StudyRootQueryRetrieveInformationModelFind: "study",
    StudyRootQueryRetrieveInformationModelMove: "study",
}


def parse_destination(text: str) -> tuple[str, tuple[str, int]]:
    """``MODALITY=198.18.1.10:11113`` or ``MODALITY=[2001:db8:1::10]:11113``."""
    try:
        ae, where = text.split("=", 1)
        host, port = where.rsplit(":", 1)
        return ae.strip(), (host.strip("[]"), int(port))
    except ValueError:
        raise LabError(f"bad --destination {text!r}: expected AE=HOST:PORT") from None


class Archive:
    """The event handlers, bound to one store and one table of move destinations."""

    def __init__(self, store: Store, destinations: dict[str, tuple[str, int]],
                 tls_client: ssl.SSLContext | None = None) -> None:
        self.store = store
        self.destinations = destinations
        self.tls_client = tls_client  # for C-MOVE sub-operations: destinations speak TLS too

    def store_file(self, path: Path, ts: str, sop_class: str, sop_instance: str,
                   defer_index: bool = False) -> int:
        """Store a received dataset (a scratch file); the C-STORE status (PS3.4 B.2.3).
        ``defer_index``: the caller settles the store once the status is sent."""
        try:
            obj = self.store.store_encoded(path, ts, sop_class, sop_instance,
                                           defer_index=defer_index)
        except LabError as exc:
            log.warning("refused %s: %s", sop_instance, exc)
            return CANNOT_UNDERSTAND
        except OSError as exc:
            log.error("could not store %s: %s", sop_instance, exc)
            return OUT_OF_RESOURCES
        log.info("stored %s (%d bytes)", obj.sop_instance_uid, obj.size)
        return SUCCESS

    def on_store(self, event: Any) -> int:
        req = event.request
        return self.store_file(event.dataset_path, str(event.context.transfer_syntax),
                               str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID))

    def on_close(self, event: Any) -> None:
        """Discard a C-STORE dataset cut off by an A-ABORT or a dropped connection.

        pynetdicom's chunked receive writes a dataset into the store's tmp/ as it arrives and
        removes the file only after the C-STORE handler ran; a dataset whose association ended
        first would stay there, its descriptor open, until the archive restarts."""
        message = getattr(event.assoc.dimse, "message", None)
        partial = getattr(message, "_data_set_file", None)
        if partial is not None:
            partial.close()
            Path(partial.name).unlink(missing_ok=True)
            log.warning("discarded a C-STORE dataset cut off by the end of its association")

    def _query(self, event: Any) -> tuple[str, str, Dataset]:
        identifier = event.identifier
        model = MODELS[event.request.AffectedSOPClassUID]
        level = str(identifier.get("QueryRetrieveLevel", ""))
        return model, level, identifier

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        try:
            model, level, identifier = self._query(event)
            matches = find(self.store, model, level, identifier)  # type: ignore[arg-type]
            for match in matches:
                if event.is_cancelled:
                    yield CANCEL, None
                    return
                yield PENDING, match
        except (QueryError, ValueError) as exc:
            log.warning("C-FIND refused: %s", exc)
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        yield SUCCESS, None

    def on_move(self, event: Any) -> Iterator[Any]:
        dest = self.destinations.get(str(event.move_destination).strip())
        if dest is None:
            log.warning("C-MOVE to unknown destination %r", event.move_destination)
            yield None, None  # pynetdicom answers 0xA801, Move Destination unknown
            return
        try:
            model, level, identifier = self._query(event)
            objects = resolve_move(self.store, model, level, identifier)  # type: ignore[arg-type]
        except (QueryError, ValueError) as exc:
            log.warning("C-MOVE refused: %s", exc)
            yield (*dest, {"contexts": [build_context(Verification)],
                           "tls_args": (self.tls_client, dest[0]) if self.tls_client else None})
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        # Request exactly the presentation contexts the matched objects need (as stored).
        wanted = sorted({(o.sop_class_uid, o.transfer_syntax_uid) for o in objects})
        contexts = [build_context(cls, [ts]) for cls, ts in wanted] or [build_context(Verification)]
        options: dict[str, Any] = {"contexts": contexts[:128]}
        if self.tls_client is not None:
            options["tls_args"] = (self.tls_client, dest[0])
        yield (*dest, options)
        yield len(objects)
        for obj in objects:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, dcmread(obj.path)


def build_ae(ae_title: str, *, storage_only: bool, max_pdu: int) -> TunedAE:
    ae = TunedAE(ae_title=ae_title)
    ae.maximum_pdu_size = max_pdu
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.require_called_aet = True  # PS3.8 9.3.4: reject an A-ASSOCIATE-RQ meant for another AE
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    if not storage_only:
        for sop_class in MODELS:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae


def native_config(ae: TunedAE, archive: Archive, max_pdu: int) -> Config:
    """The lean acceptor serves what this AE supports except Query/Retrieve: Verification and
    Storage, with the same transfer syntaxes (so negotiation gives what pynetdicom would)."""
    supported: dict[str, set[str]] = {}
    for cx in ae.supported_contexts:
        if cx.abstract_syntax not in MODELS:
            supported.setdefault(str(cx.abstract_syntax), set()).update(
                map(str, cx.transfer_syntax))
    # The lab names a receiver of C-MOVE results also AE-V4 / AE-V6, to pick the address family
    # of a move (lab.services.move_destinations); any other called AE title is rejected.
    titles = frozenset({ae.ae_title, f"{ae.ae_title}-V4", f"{ae.ae_title}-V6"})
    return Config(titles, max_pdu, {k: frozenset(v) for k, v in supported.items()},
                  archive.store.scratch.take, functools.partial(archive.store_file,
                                                                defer_index=True),
                  float(ae.network_timeout or 60), archive.store.settle)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.dicom.pacs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="store directory")
    parser.add_argument("--ae", default=PACS_AE, help=f"AE title ({PACS_AE})")
    parser.add_argument("--bind", default="::", help="address to listen on (:: = every address)")
    parser.add_argument("--port", type=int, default=PACS_PORT, help=f"TCP port ({PACS_PORT})")
    parser.add_argument("--destination", action="append", default=[], metavar="AE=HOST:PORT",
                        help="a C-MOVE destination (repeatable)")
    parser.add_argument("--storage-only", action="store_true",
                        help="serve Verification and Storage only (a C-MOVE receiver)")
    parser.add_argument("--pdu", type=int, default=0, help="maximum PDU size (0 = unlimited)")
    parser.add_argument("--sync", choices=("object", "none"), default="object",
                        help="object: fsync every object before answering its C-STORE, so an "
                        "acknowledged object survives a power cut (default); none: no fsync "
                        "(safe from a crash of the process only)")
    parser.add_argument("-v", "--verbose", action="store_true")
    tlsopts.add_arguments(parser, server=True)
    args = parser.parse_args(argv)
    try:
        tls_server, tls_client = tlsopts.server_context(args), tlsopts.client_from_server(args)
    except LabError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Receive C-STORE datasets straight into a file, never decoding them (speed, memory).
    _config.STORE_RECV_CHUNKED_DATASET = True
    store = Store.open(args.root, sync=args.sync == "object")
    # pynetdicom writes received datasets to a temporary file: keep it on the store's file system
    # so that storing is a rename, not a copy.
    tempfile.tempdir = str(store.tmp_dir)
    archive = Archive(store, dict(parse_destination(d) for d in args.destination), tls_client)
    ae = build_ae(args.ae, storage_only=args.storage_only, max_pdu=args.pdu)
    handlers: list[Any] = [(evt.EVT_C_STORE, archive.on_store),
                           (evt.EVT_CONN_CLOSE, archive.on_close)]
    if not args.storage_only:
        handlers += [(evt.EVT_C_FIND, archive.on_find), (evt.EVT_C_MOVE, archive.on_move)]
    server = ae.make_server((args.bind, args.port), evt_handlers=handlers,
                            server_class=DispatchingServer)
    server.native = native_config(ae, archive, args.pdu)
    server.tls = tls_server
    tune_association_server(server)
    threading.Thread(target=server.serve_forever, name="pacs-server", daemon=True).start()
    print(f"{args.ae} listening on [{args.bind}]:{args.port}"
          + (f" (DICOM TLS, profile {args.tls_profile})" if tls_server else ""), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.shutdown()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main())
