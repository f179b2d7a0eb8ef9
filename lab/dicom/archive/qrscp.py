"""The archive's Query/Retrieve service on the lab's own Upper Layer: C-FIND and C-MOVE in the
Patient Root and Study Root information models (PS3.4 Annex C), answered over the association
the lean acceptor (:mod:`lab.dicom.ul.acceptor`) serves.

The acceptor frames the DIMSE messages; this module turns a request's identifier into the
responses' statuses and identifiers. An identifier is untrusted input: it is decoded with
pydicom from a bounded buffer (a deflated one inflated to a bounded size), and anything that
cannot be decoded or matched is answered with a failure status (PS3.4 C.4.1.1.4, C.4.2.1.5),
never with an exception. C-MOVE sub-operations are C-STOREs of the stored files as they are
(bit for bit, never decoded or re-encoded), over one association to the Move Destination
opened with the lab's requestor (:mod:`lab.dicom.ul.requestor`), over TLS when the archive serves
TLS (PS3.15 Annex B), with up to :data:`MOVE_WINDOW` of them outstanding when the destination
grants an Asynchronous Operations Window (PS3.7 D.3.3.3). A pending response reports the counts
after every sub-operation.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from io import BytesIO
from typing import TypeVar

from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from lab.dicom.archive import answers
from lab.dicom.archive.index import StoredObject
from lab.dicom.archive.query import QueryError, find_records, query_identifier, resolve_move
from lab.dicom.archive.store import Store
from lab.dicom.ul import command as cmd
from lab.dicom.ul.incoming import IDENTIFIER_LIMIT
from lab.dicom.ul.pdu import PduError
from lab.dicom.ul.queries import QueryReply as Reply
from lab.dicom.ul.queries import QueryRequest as Request
from lab.dicom.ul.requestor import Requestor, open_association, read_part10

log = logging.getLogger("lab.dicom.pacs")
_T = TypeVar("_T")

#: The information models served, by SOP Class UID (PS3.4 C.6.1, C.6.2).
FIND_MODELS = {str(PatientRootQueryRetrieveInformationModelFind): "patient",
               str(StudyRootQueryRetrieveInformationModelFind): "study"}
MOVE_MODELS = {str(PatientRootQueryRetrieveInformationModelMove): "patient",
               str(StudyRootQueryRetrieveInformationModelMove): "study"}
#: Transfer syntaxes accepted for Q/R contexts: the uncompressed ones (PS3.5 A.1, A.2, A.3)
#: and Deflate (A.5), whose identifiers are inflated to at most IDENTIFIER_LIMIT bytes.
TRANSFER_SYNTAXES = frozenset({ImplicitVRLittleEndian, "1.2.840.10008.1.2.1",
                               ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian})

# PS3.4 C.4.1.1.4 and C.4.2.1.5 statuses.
SUCCESS, PENDING, WARNING_SUBOPS = 0x0000, 0xFF00, 0xB000
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC001
MOVE_DESTINATION_UNKNOWN = 0xA801
UNABLE_TO_PERFORM_SUBOPS = 0xA702
#: What pydicom may raise on a hostile identifier, as it decodes lazily.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, NotImplementedError,
                  OverflowError, AttributeError, EOFError, struct.error, zlib.error)
#: C-STORE sub-operations outstanding proposed to a Move Destination (PS3.7 D.3.3.3): the next
#: file is on its way while the destination stores the last; a destination that grants no
#: window gets them one at a time.
MOVE_WINDOW = 16
#: What a sub-association may fail with: refused, broken, timed out, TLS refused.
_LINK_ERRORS = (PduError, OSError, TimeoutError)


def inflate(data: bytes, limit: int) -> bytes:
    """Raw deflate (RFC 1951, PS3.5 A.5) inflated to at most ``limit`` bytes; ValueError if
    it is malformed, truncated or inflates to more."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"malformed deflated identifier: {exc}") from None
    if len(out) > limit:
        raise ValueError(f"deflated identifier inflates to more than {limit} bytes")
    if not inflater.eof:
        raise ValueError("deflated identifier is truncated")
    return out


def decode_identifier(data: bytes, transfer_syntax: str) -> Dataset:
    """An identifier decoded, every element's value decoded too (so that a bad one fails
    here); ValueError (or another of _DECODE_ERRORS) if it cannot be."""
    deflated = transfer_syntax == DeflatedExplicitVRLittleEndian
    if deflated:
        data = inflate(data, IDENTIFIER_LIMIT)
    ds = decode(BytesIO(data), transfer_syntax == ImplicitVRLittleEndian,
                transfer_syntax != ExplicitVRBigEndian)
    for element in ds:
        _ = element.value
    return ds


def encode_identifier(ds: Dataset, transfer_syntax: str) -> bytes:
    """An identifier encoded in the context's transfer syntax."""
    data = encode(ds, transfer_syntax == ImplicitVRLittleEndian,
                  transfer_syntax != ExplicitVRBigEndian,
                  transfer_syntax == DeflatedExplicitVRLittleEndian)
    if data is None:
        raise ValueError("the identifier cannot be encoded")
    return data


class QueryService:
    """C-FIND and C-MOVE over one store, with a table of Move Destinations (AE title -> host,
    port). Called by the acceptor with a :class:`Request`; yields its :class:`Reply` s."""

    def __init__(self, store: Store, destinations: Mapping[str, tuple[str, int]], *,
                 ae_title: str, tls_client: ssl.SSLContext | None = None,
                 timeout: float = 60.0, max_pdu: int = 0, window: int = MOVE_WINDOW) -> None:
        self.store = store
        self.window = window
        self.destinations = dict(destinations)
        self.ae_title = ae_title
        self.tls_client = tls_client
        self.timeout = timeout
        self.max_pdu = max_pdu

    def __call__(self, rq: Request) -> Iterator[Reply]:
        try:
            identifier = decode_identifier(rq.identifier, rq.transfer_syntax)
            level = str(identifier.get("QueryRetrieveLevel", "") or "").strip()
        except _DECODE_ERRORS as exc:
            log.warning("identifier refused: %s", exc)
            yield Reply(UNABLE_TO_PROCESS)
            return
        if rq.field == cmd.C_FIND_RQ:
            yield from self._find(rq, FIND_MODELS[rq.sop_class], level, identifier)
        else:
            yield from self._move(rq, MOVE_MODELS[rq.sop_class], level, identifier)

    def _find(self, rq: Request, model: str, level: str, identifier: Dataset,
              ) -> Iterator[Reply]:
        """PS3.4 C.4.1.3: a pending response per match, then success."""
        found = _answer("C-FIND", lambda: find_records(
            self.store, model, level, identifier))  # type: ignore[arg-type]
        if isinstance(found, Reply):
            yield found
            return
        requested, records = found
        fast = answers.encoder(level, requested, rq.transfer_syntax)
        if fast is not None:  # straight from the records (the usual case: text keys, LE)
            for record in records:
                yield Reply(PENDING, fast(record))
            yield Reply(SUCCESS)
            return
        matches = (query_identifier(level, requested, r) for r in records)  # type: ignore[arg-type]
        for match in matches:  # encoded one at a time: memory does not grow with the matches
            data = _answer("C-FIND", functools.partial(encode_identifier, match,
                                                       rq.transfer_syntax))
            if isinstance(data, Reply):
                yield data
                return
            yield Reply(PENDING, data)
        yield Reply(SUCCESS)

    def _move(self, rq: Request, model: str, level: str, identifier: Dataset,
              ) -> Iterator[Reply]:
        """PS3.4 C.4.2.3: the matched objects C-STOREd to the Move Destination."""
        dest = self.destinations.get(rq.move_destination)
        if dest is None:
            log.warning("C-MOVE to unknown destination %r", rq.move_destination)
            yield Reply(MOVE_DESTINATION_UNKNOWN)
            return
        objects = _answer("C-MOVE", lambda: resolve_move(
            self.store, model, level, identifier))  # type: ignore[arg-type]
        if isinstance(objects, Reply):
            yield objects
            return
        yield from _Move(self, rq, dest, objects).run()


def _answer(what: str, work: Callable[[], _T]) -> _T | Reply:
    """What ``work`` gives, or the failure reply for an identifier it could not take
    (PS3.4 C.4.1.1.4, C.4.2.1.5): one that does not match the SOP class, or that cannot be
    decoded."""
    try:
        return work()
    except QueryError as exc:
        log.warning("%s refused: %s", what, exc)
        return Reply(IDENTIFIER_DOES_NOT_MATCH)
    except _DECODE_ERRORS as exc:
        log.warning("%s refused: %s", what, exc)
        return Reply(UNABLE_TO_PROCESS)


class _Move:
    """The sub-operations of one C-MOVE and their counts."""

    def __init__(self, service: QueryService, rq: Request, dest: tuple[str, int],
                 objects: list[StoredObject]) -> None:
        self.service, self.rq, self.dest = service, rq, dest
        self.objects = objects
        self.completed = self.warning = 0
        self.failed: list[str] = []

    def counts(self, remaining: int | None) -> dict[str, int]:
        out = {"completed": self.completed, "failed": len(self.failed),
               "warning": self.warning}
        if remaining is not None:
            out["remaining"] = remaining
        return out

    def _associate(self, batch: list[StoredObject]) -> Requestor:
        contexts = sorted({(o.sop_class_uid, o.transfer_syntax_uid) for o in batch})
        service = self.service
        assoc, _ = open_association(
            self.dest[0], self.dest[1], called=self.rq.move_destination,
            calling=service.ae_title, contexts=[(c, [t]) for c, t in contexts],
            max_pdu=service.max_pdu, timeout=service.timeout, tls=service.tls_client,
            window=service.window)
        return assoc

    def run(self) -> Iterator[Reply]:
        todo = list(self.objects)
        while todo:
            batch = _batch(todo)
            todo = todo[len(batch):]
            try:
                assoc = self._associate(batch)
            except _LINK_ERRORS as exc:
                log.warning("C-MOVE: no association with %s at %s: %s",
                            self.rq.move_destination, self.dest, exc)
                self.failed += [o.sop_instance_uid for o in batch + todo]
                break
            try:
                for _ in self._stores(assoc, batch):
                    yield Reply(PENDING, counts=self.counts(
                        len(self.objects) - self.completed - self.warning - len(self.failed)))
            except _LINK_ERRORS as exc:
                log.warning("C-MOVE: sub-association broke: %s", exc)
                self.failed += [o.sop_instance_uid for o in todo]
                todo = []
            finally:
                with contextlib.suppress(*_LINK_ERRORS):
                    assoc.release()
        yield self._final()

    def _stores(self, assoc: Requestor, batch: list[StoredObject]) -> Iterator[None]:
        """The batch's sub-operations, up to the window granted outstanding (PS3.7 D.3.3.3),
        each file sent as stored; yields as each one is counted. If the sub-association
        breaks, the objects not answered yet are counted failed and the error raised."""
        files, sent = [], []
        for obj in batch:
            try:
                files.append(read_part10(obj.path))
                sent.append(obj)
            except ValueError as exc:  # the file went away or is not Part 10 any more
                log.warning("C-MOVE: cannot send %s: %s", obj.sop_instance_uid, exc)
                self.failed.append(obj.sop_instance_uid)
                yield None
        answered: set[int] = set()
        try:
            for index, status in assoc.store_each(files, self.service.max_pdu):
                answered.add(index)
                self._count(sent[index], status)
                yield None
        except _LINK_ERRORS:
            self.failed += [o.sop_instance_uid for n, o in enumerate(sent) if n not in answered]
            raise

    def _count(self, obj: StoredObject, status: int) -> None:
        if status == SUCCESS:
            self.completed += 1
        elif status >> 12 == 0xB:
            self.warning += 1
        else:
            self.failed.append(obj.sop_instance_uid)

    def _final(self) -> Reply:
        """The final response (PS3.4 C.4.2.1.5, C.4.2.3.1): success, a warning when some
        sub-operations failed, a failure when none succeeded; the failed SOP Instance UIDs in
        the identifier."""
        if not self.failed and not self.warning:
            return Reply(SUCCESS, counts=self.counts(None))
        status = (UNABLE_TO_PERFORM_SUBOPS if not self.completed and not self.warning
                  else WARNING_SUBOPS)
        identifier = None
        if self.failed:
            ds = Dataset()
            ds.FailedSOPInstanceUIDList = self.failed
            identifier = encode_identifier(ds, self.rq.transfer_syntax)
        return Reply(status, identifier, self.counts(None))


def _batch(objects: list[StoredObject]) -> list[StoredObject]:
    """The longest run of objects whose (SOP class, transfer syntax) pairs fit in the 128
    presentation contexts of one association (PS3.8 9.3.2.2)."""
    pairs: set[tuple[str, str]] = set()
    for n, obj in enumerate(objects):
        pairs.add((obj.sop_class_uid, obj.transfer_syntax_uid))
        if len(pairs) > 128:
            return objects[:n]
    return objects
