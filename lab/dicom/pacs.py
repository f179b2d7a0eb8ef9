"""The lab's DICOM archive (SCP), run inside a node: ``python -m lab.dicom.pacs``.

Serves, per DICOM PS3.4, on the lab's own Upper Layer (lab.dicom.ul.server, lab.dicom.ul.acceptor):
- Verification (C-ECHO, Annex A);
- Storage of every storage SOP class (C-STORE, Annex B), storing the received encoded dataset
  without decoding it into a crash-safe store (lab.dicom.archive.store), after checking it and the
  attributes it indexes (VR, length, character set), so nothing unreadable or misfiled is ever
  acknowledged;
- Query/Retrieve FIND and MOVE in the Patient Root and Study Root models (Annex C,
  lab.dicom.archive.qrscp), unless ``--storage-only`` (the modality's receiver of C-MOVE results is
  this program in that mode). A C-MOVE sends the stored files as they are: every element is kept
  (PS3.4 B.4.1, level 2 storage), and Digital Signatures inside the objects (PS3.15 Annex C,
  lab.dicom.data.dsig) reach the destination bit for bit and still verify there; the archive
  preserves them but does not check them itself;
- Storage Commitment Push Model (N-ACTION, N-EVENT-REPORT, Annex J,
  lab.dicom.archive.commitment): an object is committed only if the store holds it intact, the
  result goes back over the requestor's association, or over a new one to a known peer
  (``--destination``) when that association has ended.

Move destinations (AE title -> host, port) are given with ``--destination AE=HOST:PORT``; they
are also the peers a commitment result may be delivered to over a new association. An
unknown destination gets the standard failure status 0xA801 (Move Destination unknown).
An A-ASSOCIATE-RQ for another called AE title is rejected (PS3.8 9.3.4). ``--tls-*`` serves
DICOM TLS (PS3.15 Annex B; see lab.dicom.ul.tlsopts), and makes C-MOVE sub-operations use TLS
with the same credentials. ``--sync`` chooses whether each object is fsync'ed before its
C-STORE is answered.

The archive faces an untrusted network: associations, first-phase connections, every wait
(``--artim``, ``--idle-timeout``) and every length a peer declares (``--pdu``) are bounded,
and a malformed PDU or command is answered with an A-ABORT, a bad dataset with a failure status.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts

from lab.dicom import PACS_AE, PACS_PORT
from lab.dicom.archive.commitment import CommitmentService
from lab.dicom.archive.qrscp import FIND_MODELS, MOVE_MODELS, TRANSFER_SYNTAXES, QueryService
from lab.dicom.archive.store import Store
from lab.dicom.ul import commitment, tlsopts
from lab.dicom.ul.acceptor import Config
from lab.dicom.ul.server import (
    BACKLOG,
    MAX_ASSOCIATIONS,
    AssociationServer,
    LogThrottle,
    listen,
)
from lab.errors import LabError

log = logging.getLogger("lab.dicom.pacs")

# PS3.4 B.2.3 status codes of a C-STORE.
SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000  # Error: Cannot understand
OUT_OF_RESOURCES = 0xA700


def parse_destination(text: str) -> tuple[str, tuple[str, int]]:
    """``MODALITY=198.18.1.10:11113`` or ``MODALITY=[2001:db8:1::10]:11113``."""
    try:
        ae, where = text.split("=", 1)
        host, port = where.rsplit(":", 1)
        return ae.strip(), (host.strip("[]"), int(port))
    except ValueError:
        raise LabError(f"bad --destination {text!r}: expected AE=HOST:PORT") from None


class Archive:
    """What the acceptor calls to store a C-STORE dataset, bound to one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def store_file(self, path: Path, ts: str, sop_class: str, sop_instance: str,
                   head: bytes = b"", stat: os.stat_result | None = None,
                   defer_index: bool = False) -> int:
        """Store a received dataset (a scratch file); the C-STORE status (PS3.4 B.2.3).
        ``head`` and ``stat``: see Store.store_encoded; ``defer_index``: the caller settles
        the store once the status is sent."""
        try:
            obj = self.store.store_encoded(path, ts, sop_class, sop_instance, head=head,
                                           stat=stat, defer_index=defer_index)
        except LabError as exc:
            log.warning("refused %s: %s", sop_instance, exc)
            return CANNOT_UNDERSTAND
        except MemoryError:
            log.error("refused %s: out of memory", sop_instance)
            return OUT_OF_RESOURCES
        except OSError as exc:
            log.error("could not store %s: %s", sop_instance, exc)
            return OUT_OF_RESOURCES
        log.info("stored %s (%d bytes)", obj.sop_instance_uid, obj.size)
        return SUCCESS


def supported_contexts(storage_only: bool) -> dict[str, frozenset[str]]:
    """Abstract syntax -> transfer syntaxes served: Verification (Implicit VR Little Endian,
    PS3.5 10.1), every storage SOP class in every transfer syntax pynetdicom knows (the dataset
    is stored as received), Storage Commitment (Implicit and Explicit VR Little Endian), and
    the Q/R models in the uncompressed syntaxes and Deflate."""
    table = {"1.2.840.10008.1.1": frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})}
    table[commitment.SOP_CLASS] = frozenset(commitment.SYNTAXES)
    every = frozenset(map(str, ALL_TRANSFER_SYNTAXES))
    for cx in AllStoragePresentationContexts:
        table[str(cx.abstract_syntax)] = every
    if not storage_only:
        for sop_class in (*FIND_MODELS, *MOVE_MODELS):
            table[sop_class] = frozenset(map(str, TRANSFER_SYNTAXES))
    return table


def make_config(args: argparse.Namespace, store: Store, query: QueryService | None,
                commit: CommitmentService | None = None) -> Config:
    """The acceptor's configuration from the command line. The lab names a receiver of C-MOVE
    results also AE-V4 / AE-V6, to pick the address family of a move
    (lab.runtime.services.move_destinations); any other called AE title is rejected."""
    titles = frozenset({args.ae, f"{args.ae}-V4", f"{args.ae}-V6"})
    archive = Archive(store)
    return Config(titles, args.pdu, supported_contexts(args.storage_only), store.scratch.take,
                  functools.partial(archive.store_file, defer_index=True), args.idle_timeout,
                  store.settle, args.artim, query,
                  frozenset() if query is None else frozenset(FIND_MODELS),
                  frozenset() if query is None else frozenset(MOVE_MODELS), commit)


def _positive(kind: type[int] | type[float]) -> functools.partial[int | float]:
    return functools.partial(_check_positive, kind)


def _check_positive(kind: type[int] | type[float], text: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--pdu", type=int, default=4 << 20,
                        help="the Maximum Length announced for P-DATA-TF PDUs, and enforced: a "
                        "larger one is refused with an A-ABORT (PS3.8 D.1; default 4194304; "
                        "0 = unlimited)")
    parser.add_argument("--max-associations", type=_positive(int), default=MAX_ASSOCIATIONS,
                        help="associations served at once; beyond, an A-ASSOCIATE-RQ is "
                        "rejected as transient (default %(default)s)")
    parser.add_argument("--artim", type=_positive(float), default=10.0,
                        help="seconds a new connection has for its TLS handshake and its "
                        "A-ASSOCIATE-RQ (PS3.8 9.1.5 ARTIM; default %(default)s)")
    parser.add_argument("--idle-timeout", type=_positive(float), default=60.0,
                        help="longest silence on an association, and per wait for a slow "
                        "peer, before it is aborted (default %(default)s)")
    parser.add_argument("--backlog", type=_positive(int), default=BACKLOG,
                        help="listen backlog (default %(default)s; capped by the kernel's "
                        "net.core.somaxconn)")
    parser.add_argument("--sync", choices=("object", "none"), default="object",
                        help="object: fsync every object before answering its C-STORE, so an "
                        "acknowledged object survives a power cut (default); none: no fsync "
                        "(safe from a crash of the process only)")
    parser.add_argument("-v", "--verbose", action="store_true")
    tlsopts.add_arguments(parser, server=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.pdu < 0 or 0 < args.pdu < 1024:
        cli.error(f"--pdu {args.pdu}: 0 (unlimited) or at least 1024")
    try:
        tls_server, tls_client = tlsopts.server_context(args), tlsopts.client_from_server(args)
        destinations = dict(parse_destination(d) for d in args.destination)
    except LabError as exc:
        cli.error(str(exc))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(LogThrottle())
    store = Store.open(args.root, sync=args.sync == "object")
    query = None if args.storage_only else QueryService(
        store, destinations, ae_title=args.ae, tls_client=tls_client,
        timeout=args.idle_timeout, max_pdu=args.pdu)
    commit = CommitmentService(store, destinations, ae_title=args.ae, tls_client=tls_client,
                               timeout=args.idle_timeout, max_pdu=args.pdu)
    try:
        listener = listen(args.bind, args.port, args.backlog)
    except OSError as exc:
        cli.error(f"cannot listen on [{args.bind}]:{args.port}: {exc}")
    server = AssociationServer(make_config(args, store, query, commit), listener, tls=tls_server,
                               max_associations=args.max_associations)
    threading.Thread(target=server.serve_forever, name="pacs-server", daemon=True).start()
    print(f"{args.ae} listening on [{args.bind}]:{args.port}"
          + (f" (DICOM TLS, profile {args.tls_profile})" if tls_server else ""), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.shutdown()
    store.settle(True)
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main())
