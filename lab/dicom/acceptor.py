"""The archive's lean acceptor for Verification and Storage associations (PS3.8, PS3.7, PS3.4
Annexes A and B), beside pynetdicom, which keeps Query/Retrieve.

:class:`Acceptor` serves one association over a connected socket: it answers the
A-ASSOCIATE-RQ (rejecting a wrong called AE title, PS3.8 9.3.4), negotiates presentation
contexts against the supported table (first proposed transfer syntax supported, PS3.8 9.3.3.2),
then takes C-ECHO and C-STORE requests until A-RELEASE or A-ABORT. A C-STORE dataset goes from
the socket straight into a scratch file in the store's ``tmp/``, behind a File Meta Information
header, and the store (:meth:`lab.dicom.store.Store.store_encoded`) checks and files it; the
C-STORE-RSP carries the status it decides. A dataset cut off by an abort or a dropped connection
is discarded; a malformed PDU or command is answered with A-ABORT (PS3.8 9.3.8).

Which associations come here is decided from the A-ASSOCIATE-RQ read without consuming it
(:func:`peek_request`), so the others go to pynetdicom unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.dicom import command as cmd
from lab.dicom import pdu
from lab.dicom.encoded import file_meta
from lab.dicom.link import Link, LinkClosed
from lab.dicom.pdu import PduError

log = logging.getLogger("lab.dicom.pacs")

IMPLEMENTATION_CLASS_UID = "2.25.271818591651264108049536357787924617746"
IMPLEMENTATION_VERSION_NAME = "TELERADLAB_SCP"
#: Storage statuses used when the store cannot be asked (PS3.4 B.2.3).
PROCESSING_FAILURE = 0x0110
#: Stores a scratch file (path, transfer syntax, SOP class, SOP instance); returns the status.
StoreFile = Callable[[Path, str, str, str], int]
#: Gives a new scratch file, open for writing (lab.dicom.scratch.ScratchPool.take).
ScratchFile = Callable[[], tuple[int, Path]]


@dataclass(frozen=True)
class Config:
    """What the acceptor serves: the AE titles it answers to, the largest P-DATA-TF body it
    receives (0 = unlimited), the supported abstract syntaxes with their transfer syntaxes,
    where datasets are received, what stores one, how long to wait for the peer, and what to do
    once a C-STORE is answered."""

    ae_titles: frozenset[str]
    max_pdu: int
    supported: Mapping[str, frozenset[str]]
    scratch: ScratchFile
    store_file: StoreFile
    timeout: float = 60.0
    #: Work the store leaves until answers are on their way (the index rows of
    #: lab.dicom.store.Store.store_encoded's ``defer_index``): called with False after each
    #: C-STORE-RSP is sent, with True when the association ends.
    settle: Callable[[bool], None] = lambda final: None


def peek_request(sock: socket.socket, timeout: float) -> pdu.Associate | None:
    """The A-ASSOCIATE-RQ waiting on a freshly accepted plain socket, read with MSG_PEEK so that
    it is still there for whoever serves the association; None if it is not a well-formed one
    (then the caller's general path answers it)."""
    deadline = time.monotonic() + timeout
    want = pdu.HEADER.size
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            data = sock.recv(want, socket.MSG_PEEK)
        except (OSError, TimeoutError):
            return None
        if not data:
            return None
        if len(data) >= pdu.HEADER.size and want == pdu.HEADER.size:
            kind, length = pdu.HEADER.unpack_from(data)
            if kind != pdu.A_ASSOCIATE_RQ or length > 1 << 20:
                return None
            want += length
        if len(data) >= want:
            break
        if time.monotonic() > deadline:
            return None
        time.sleep(0.0005)  # the rest of the PDU is on its way
    try:
        return pdu.decode_associate(pdu.A_ASSOCIATE_RQ, data[pdu.HEADER.size:])
    except PduError:
        return None


def negotiate(rq: pdu.Associate, supported: Mapping[str, frozenset[str]]) -> list[pdu.Result]:
    """Each proposed context accepted with its first supported transfer syntax, or refused
    with the reason (PS3.8 9.3.3.2)."""
    results = []
    for cx in rq.contexts:
        syntaxes = supported.get(cx.abstract_syntax)
        if syntaxes is None:
            results.append(pdu.Result(cx.id, pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        chosen = next((ts for ts in cx.transfer_syntaxes if ts in syntaxes), None)
        results.append(pdu.Result(cx.id, pdu.ACCEPTANCE, chosen) if chosen else
                       pdu.Result(cx.id, pdu.TRANSFER_SYNTAXES_NOT_SUPPORTED))
    return results


class _Incoming:
    """A C-STORE dataset being received into a scratch file."""

    def __init__(self, take: ScratchFile, fields: Mapping[int, bytes], cid: int, ts: str,
                 ) -> None:
        self.fields, self.cid, self.ts = fields, cid, ts
        self.sop_class = cmd.text(fields, cmd.AFFECTED_SOP_CLASS)
        self.sop_instance = cmd.text(fields, cmd.AFFECTED_SOP_INSTANCE)
        self.fd, self.path = take()
        self.write(memoryview(file_meta(ts, self.sop_class, self.sop_instance)))

    def write(self, data: memoryview) -> None:
        while data:
            data = data[os.write(self.fd, data):]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class Acceptor:
    """Serves one association (see the module's doc); :meth:`serve` returns when it ends."""

    def __init__(self, config: Config, sock: socket.socket, replay: bytes = b"") -> None:
        self.config = config
        self.link = Link(sock, config.timeout, replay)
        self.contexts: dict[int, tuple[str, str]] = {}  # id: (abstract syntax, transfer syntax)
        self.peer_max = 0
        self.incoming: _Incoming | None = None
        self.command = bytearray()
        self.command_cid = 0

    def serve(self) -> None:
        try:
            if self._associate():
                self._run()
        except LinkClosed as exc:
            log.info("association ended: %s", exc)
        except (PduError, TimeoutError) as exc:
            log.warning("association aborted: %s", exc)
            self._abort()
        finally:
            if self.incoming is not None:
                self.incoming.discard()
                log.warning("discarded a C-STORE dataset cut off by the end of its association")
            self.link.close()
            self.config.settle(True)

    def _abort(self, reason: int = 0) -> None:
        with contextlib.suppress(PduError, OSError):
            self.link.send(pdu.encode_abort(2, reason))

    def _associate(self) -> bool:
        kind, length = self.link.header()
        if kind != pdu.A_ASSOCIATE_RQ:
            raise PduError(f"expected A-ASSOCIATE-RQ, got PDU type 0x{kind:02X}")
        rq = pdu.decode_associate(kind, self.link.body(length))
        why = None
        if not rq.protocol_version & 1:
            why = (1, 2, 2)  # rejected permanent, ACSE provider, protocol version not supported
        elif rq.application_context != pdu.APPLICATION_CONTEXT:
            why = (1, 1, 2)  # service user: application context name not supported
        elif rq.called not in self.config.ae_titles:
            why = (1, 1, 7)  # service user: called AE title not recognized
        if why is not None:
            log.warning("rejected association from %s to %r: %s", rq.calling, rq.called, why)
            self.link.send(pdu.encode_reject(*why))
            return False
        results = negotiate(rq, self.config.supported)
        abstract = {cx.id: cx.abstract_syntax for cx in rq.contexts}
        self.contexts = {r.id: (abstract[r.id], r.transfer_syntax) for r in results
                         if r.result == pdu.ACCEPTANCE}
        self.peer_max = rq.max_length
        ac = pdu.Associate(rq.called, rq.calling, results=tuple(results),
                           max_length=self.config.max_pdu,
                           implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                           implementation_version_name=IMPLEMENTATION_VERSION_NAME)
        self.link.send(pdu.encode_associate(pdu.A_ASSOCIATE_AC, ac))
        log.info("association from %s: %d of %d contexts accepted", rq.calling,
                 len(self.contexts), len(results))
        return True

    def _run(self) -> None:
        limit = self.config.max_pdu
        while True:
            kind, length = self.link.header()
            if kind == pdu.P_DATA_TF:
                if limit and length > limit:
                    raise PduError(f"P-DATA-TF of {length} bytes, above our maximum {limit}")
                self._pdata(length)
            elif kind == pdu.A_RELEASE_RQ:
                self.link.body(length)
                if self.incoming is not None:
                    raise PduError("A-RELEASE-RQ in the middle of a C-STORE dataset")
                self.link.send(pdu.RELEASE_RP)
                return
            elif kind == pdu.A_ABORT:
                self.link.body(length)
                log.info("association aborted by the peer")
                return
            else:
                raise PduError(f"unexpected PDU type 0x{kind:02X} on an established association")

    def _pdata(self, length: int) -> None:
        while length:
            n, cid, control = self.link.pdv_header()
            length -= n + pdu.PDV_HEADER.size
            if length < 0:
                raise PduError("PDV item overruns its P-DATA-TF PDU")
            if cid not in self.contexts:
                raise PduError(f"PDV on presentation context {cid}, which was not accepted")
            if control & pdu.COMMAND:
                self._command_fragment(cid, control, self.link.body(n))
            elif self.incoming is None or cid != self.incoming.cid:
                raise PduError("dataset fragment without a C-STORE request before it")
            else:
                self.link.stream(n, self.incoming.write)
                if control & pdu.LAST:
                    self._stored(self.incoming)

    def _command_fragment(self, cid: int, control: int, data: bytes) -> None:
        if self.incoming is not None:
            raise PduError("command fragment in the middle of a dataset")
        if self.command and cid != self.command_cid:
            raise PduError("command fragments on two presentation contexts")
        self.command += data
        self.command_cid = cid
        if len(self.command) > 1 << 16:
            raise PduError("command set longer than 64 KiB")
        if not control & pdu.LAST:
            return
        fields = cmd.decode(self.command)
        self.command = bytearray()
        self._request(cid, fields)

    def _request(self, cid: int, fields: Mapping[int, bytes]) -> None:
        field = cmd.us(fields, cmd.COMMAND_FIELD)
        message_id = cmd.us(fields, cmd.MESSAGE_ID)
        abstract, ts = self.contexts[cid]
        if field == cmd.C_ECHO_RQ and not cmd.has_data_set(fields):
            self._respond(cid, cmd.echo_rsp(message_id, 0))
        elif field == cmd.C_STORE_RQ and cmd.has_data_set(fields) and abstract != cmd.VERIFICATION:
            self.incoming = _Incoming(self.config.scratch, fields, cid, ts)
        else:
            raise PduError(f"unsupported DIMSE request 0x{field:04X} on context {cid}")

    def _stored(self, incoming: _Incoming) -> None:
        incoming.close()
        try:
            status = self.config.store_file(incoming.path, incoming.ts, incoming.sop_class,
                                            incoming.sop_instance)
        finally:
            self.incoming = None
            incoming.path.unlink(missing_ok=True)  # moved into the store, or refused
        message_id = cmd.us(incoming.fields, cmd.MESSAGE_ID)
        self._respond(incoming.cid, cmd.store_rsp(message_id, incoming.sop_class,
                                                  incoming.sop_instance, status))
        self.config.settle(False)

    def _respond(self, cid: int, command: bytes) -> None:
        for piece in pdu.fragments(cid, True, command, self.peer_max):
            self.link.send(piece)
