"""The archive's acceptor: one association served over a connected socket on the lab's own
Upper Layer (PS3.8, PS3.7), for Verification, Storage and Query/Retrieve (PS3.4 Annexes A, B, C).

:class:`Acceptor` reads the A-ASSOCIATE-RQ within ARTIM (PS3.8 9.1.5), rejects it when it must
(PS3.8 9.3.4: protocol version, application context, called AE title, no free association),
negotiates presentation contexts against the supported table (the first proposed transfer syntax
supported, PS3.8 9.3.3.2), then takes requests until A-RELEASE or A-ABORT:

- C-ECHO is answered at once;
- a C-STORE dataset goes from the socket into a scratch file in the store's ``tmp/`` behind a
  File Meta Information header (its first 16 KiB kept, lab.dicom.ul.incoming), and the store
  checks and files it (Store.store_encoded); the C-STORE-RSP carries the status it decides.
  A request whose UIDs are not valid UIDs is refused with a failure status (its dataset read and
  dropped); a dataset cut off by an abort or a dropped connection is discarded;
- a C-FIND or C-MOVE identifier is read into a bounded buffer and handed to the query service
  (:mod:`lab.dicom.archive.qrscp`), whose replies are sent as they come (C-FIND's: the first
  alone, the next gathered into ever larger writes);
- an N-ACTION of Storage Commitment (PS3.4 J.3.2) is read into a bounded buffer and handed to
  the commitment service; its N-ACTION-RSP is followed by the result in an N-EVENT-REPORT-RQ on
  this association (PS3.4 J.3.3), and a result the association ends without confirming (released
  or aborted first, or refused) goes back to the service to be sent over a new association;
- any other request gets a response with status 0x0211 (Unrecognized operation, PS3.7 C).

The peer is untrusted. Every wait is bounded (ARTIM for the request, the idle timeout between
PDUs, and a PDU must arrive at no less than MIN_RATE bytes a second), memory is bounded whatever
lengths the peer declares (a P-DATA-TF above the Maximum Length announced, a command or an
identifier above its limit, is refused before it is read), and every malformed PDU or command
is answered with an A-ABORT naming the reason (PS3.8 9.3.8, Table 9-26), never by silence.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from lab.dicom.ul import command as cmd
from lab.dicom.ul import commitment as sc
from lab.dicom.ul import pdu
from lab.dicom.ul.commitment import Result
from lab.dicom.ul.incoming import Incoming
from lab.dicom.ul.link import Link, LinkClosed
from lab.dicom.ul.negotiation import acceptance, negotiate, rejection
from lab.dicom.ul.pdu import PduError
from lab.dicom.ul.services import ActionRequest, Config, QueryReply, QueryRequest

__all__ = ["Acceptor", "Config", "QueryReply", "QueryRequest", "Slots"]

log = logging.getLogger("lab.dicom.pacs")

#: Storage statuses used when the store cannot be asked (PS3.4 B.2.3, PS3.7 C).
PROCESSING_FAILURE, CANNOT_UNDERSTAND = 0x0110, 0xC000
SOP_CLASS_NOT_SUPPORTED = cmd.SOP_CLASS_NOT_SUPPORTED
#: The slowest a PDU may arrive (bytes a second) once its header is in: a PDU of L bytes gets
#: max(idle timeout, L / MIN_RATE) seconds (128 kbit/s: slower than any WAN the lab emulates).
MIN_RATE = 16 * 1024
#: The longest command set (PS3.7 6.3: a few hundred bytes in practice) and A-ASSOCIATE-RQ
#: (128 contexts with many transfer syntaxes fit); identifiers: incoming.IDENTIFIER_LIMIT.
COMMAND_LIMIT, REQUEST_LIMIT = 1 << 16, 1 << 18


class Slots(Protocol):
    """The association slots of a server (lab.dicom.ul.server.Slots): taken without waiting
    long, given back when the association ends."""

    def acquire(self, acceptor: Acceptor) -> bool: ...

    def release(self, acceptor: Acceptor) -> None: ...


class Acceptor:
    """Serves one association (see the module's doc); :meth:`serve` returns when it ends.
    ``slots``: one is taken once the request is read; none free means an A-ASSOCIATE-RJ
    (transient, local limit exceeded), so no connection ever queues for one. ``requested``:
    called once the A-ASSOCIATE-RQ has been read (the connection's first phase is over)."""

    def __init__(self, config: Config, sock: socket.socket, replay: bytes = b"",
                 slots: Slots | None = None,
                 requested: Callable[[], None] = lambda: None) -> None:
        self.config = config
        # reads stop at the next PDV header: its data stays in the socket for Link.drain
        self.link = Link(sock, config.timeout, replay, 1 << 12, lookahead=pdu.PDV_HEADER.size)
        self.slots = slots
        self.requested = requested
        #: Since when the association has waited for the peer's next PDU (None: busy).
        self.idle_since: float | None = None
        self.contexts: dict[int, tuple[str, str]] = {}  # id: (abstract syntax, transfer syntax)
        self.peer_max = 0
        self.calling = ""
        self.incoming: Incoming | None = None
        self.command = bytearray()
        self.command_cid = 0
        #: Storage Commitment results sent, by Message ID, not yet confirmed by the peer.
        self.reports: dict[int, Result] = {}
        self.message_id = 0

    def serve(self) -> None:
        """The whole association. A peer's error ends it with an A-ABORT; so does a fault of
        this program's own (logged with its traceback): a server thread never dies silently."""
        slot = False
        try:
            slot = self._associate()
            if slot:
                self._run()
        except LinkClosed as exc:
            log.info("association ended: %s", exc)
        except PduError as exc:
            log.warning("association with %s aborted: %s", self.calling or "a peer", exc)
            self._abort(exc.reason)
        except TimeoutError as exc:
            if not slot:  # ARTIM expired: the transport connection is closed (PS3.8 AA-2)
                log.warning("connection closed: no A-ASSOCIATE-RQ within ARTIM (%s)", exc)
                return
            log.warning("association with %s aborted: %s", self.calling, exc)
            self._abort(pdu.NOT_SPECIFIED)
        except Exception:  # the last line of defence of a server thread: logged, aborted
            log.exception("association with %s aborted by an internal error",
                          self.calling or "a peer")
            self._abort(pdu.NOT_SPECIFIED)
        finally:
            if self.incoming is not None:
                if self.incoming.fd >= 0:
                    log.warning("discarded a C-STORE dataset cut off by the end of its "
                                "association")
                self.incoming.discard()
            self.link.close()
            if self.reports and self.config.action is not None:
                for report in self.reports.values():  # the peer never confirmed them
                    self.config.action.undelivered(self.calling, report)
            if slot:
                self.config.settle(True)
                if self.slots is not None:
                    self.slots.release(self)

    def _abort(self, reason: int) -> None:
        with contextlib.suppress(PduError, OSError):
            self.link.deadline(1.0)
            self.link.send(pdu.encode_abort(2, reason))

    def _header(self, within: float) -> tuple[int, int]:
        """The next PDU's type and length, which must arrive within ``within`` seconds."""
        self.link.deadline(within)
        return self.link.header()

    def _associate(self) -> bool:
        """Read and answer the A-ASSOCIATE-RQ; True once an association slot is held."""
        kind, length = self._header(self.config.artim)
        if kind != pdu.A_ASSOCIATE_RQ:
            raise PduError(f"expected A-ASSOCIATE-RQ, got PDU type 0x{kind:02X}",
                           pdu.UNEXPECTED_PDU)
        rq = pdu.decode_associate(kind, self.link.body(length, REQUEST_LIMIT))
        self.requested()
        self.calling = rq.calling
        why = rejection(rq, self.config.ae_titles)
        if why is None and self.slots is not None and not self.slots.acquire(self):
            why = (2, 3, 2)  # transient, service provider (presentation), local limit exceeded
        if why is not None:
            log.warning("rejected association from %r to %r: %s", rq.calling, rq.called, why)
            self.link.send(pdu.encode_reject(*why))
            return False
        try:
            self._accept(rq)
        except BaseException:
            if self.slots is not None:
                self.slots.release(self)
            raise
        return True

    def evict(self) -> None:
        """End an idle association from another thread, to give its slot to a new peer: an
        A-ABORT (on a plain socket, where sending beside the reading thread is safe), then the
        connection shut down, which wakes the association's own thread."""
        sock = self.link.sock
        if self.link.plain:
            with contextlib.suppress(OSError):
                sock.send(pdu.encode_abort(2, pdu.NOT_SPECIFIED), socket.MSG_DONTWAIT)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _accept(self, rq: pdu.Associate) -> None:
        results = negotiate(rq, self.config.supported)
        abstract = {cx.id: cx.abstract_syntax for cx in rq.contexts}
        self.contexts = {r.id: (abstract[r.id], r.transfer_syntax) for r in results
                         if r.result == pdu.ACCEPTANCE}
        self.peer_max = rq.max_length
        self.link.send(pdu.encode_associate(pdu.A_ASSOCIATE_AC,
                                            acceptance(rq, results, self.config.max_pdu)))
        log.info("association from %s: %d of %d contexts accepted", rq.calling,
                 len(self.contexts), len(results))

    def _run(self) -> None:
        limit, idle = self.config.max_pdu, self.config.timeout
        while True:
            self.idle_since = time.monotonic()
            kind, length = self._header(idle)
            self.idle_since = None
            if kind == pdu.P_DATA_TF:
                if limit and length > limit:
                    raise PduError(f"P-DATA-TF of {length} bytes, above our maximum {limit}")
                self.link.deadline(max(idle, length / MIN_RATE))
                self._pdata(length)
            elif kind == pdu.A_RELEASE_RQ:
                self.link.body(length, 4)
                if self.incoming is not None or self.command:
                    raise PduError("A-RELEASE-RQ in the middle of a message", pdu.UNEXPECTED_PDU)
                self.config.settle(True)  # indexed before the peer hears of the release
                self.link.send(pdu.RELEASE_RP)
                return
            elif kind == pdu.A_ABORT:
                self.link.body(length, 4)
                log.info("association aborted by %s", self.calling)
                return
            else:
                raise PduError(f"unexpected PDU type 0x{kind:02X} on an established "
                               "association", pdu.UNEXPECTED_PDU)

    def _pdata(self, length: int) -> None:
        while length:
            if length < pdu.PDV_HEADER.size:
                raise PduError("P-DATA-TF ends inside a PDV item header")
            n, cid, control = self.link.pdv_header()
            length -= n + pdu.PDV_HEADER.size
            if length < 0:
                raise PduError("PDV item overruns its P-DATA-TF PDU")
            if cid not in self.contexts:
                raise PduError(f"PDV on presentation context {cid}, which was not accepted")
            if control & pdu.COMMAND:
                self._command_fragment(cid, control, self.link.body(n, COMMAND_LIMIT))
            elif self.incoming is None or cid != self.incoming.cid:
                raise PduError("dataset fragment without a request before it")
            else:
                self.incoming.receive(self.link, n)
                if control & pdu.LAST:
                    self._dataset_done(self.incoming)

    def _command_fragment(self, cid: int, control: int, data: bytes) -> None:
        if self.incoming is not None:
            raise PduError("command fragment in the middle of a dataset")
        if self.command and cid != self.command_cid:
            raise PduError("command fragments on two presentation contexts")
        if len(self.command) + len(data) > COMMAND_LIMIT:
            raise PduError(f"command set longer than {COMMAND_LIMIT} bytes")
        self.command += data
        self.command_cid = cid
        if not control & pdu.LAST:
            return
        fields = cmd.decode(self.command)
        self.command = bytearray()
        self._request(cid, fields)

    def _request(self, cid: int, fields: Mapping[int, bytes]) -> None:
        """Dispatch a complete command set (PS3.7 9.3): answered now, or once its dataset is in.
        """
        field = cmd.us(fields, cmd.COMMAND_FIELD)
        if field & cmd.RESPONSE:
            self._answered(fields, field)
            return
        cmd.us(fields, cmd.MESSAGE_ID)  # every request has one (PS3.7 9.3): abort if not
        abstract, ts = self.contexts[cid]
        data = cmd.has_data_set(fields)
        if field == cmd.C_ECHO_RQ and not data:
            self._reply(cid, fields, cmd.echo_status(fields, abstract))
        elif field == cmd.C_CANCEL_RQ:
            pass  # nothing is pending by the time a C-CANCEL is read (PS3.7 9.3.2.3)
        elif field == cmd.C_STORE_RQ and data and abstract in self.config.supported:
            self.incoming = self._store_request(fields, cid, abstract, ts)
        elif (field == cmd.N_ACTION_RQ and data and abstract == sc.SOP_CLASS
              and self.config.action is not None):
            self.incoming = Incoming(fields, cid, ts, collect=True, limit=sc.DATASET_LIMIT)
        elif data and self._is_query(field, abstract):
            self.incoming = Incoming(fields, cid, ts, collect=True)
        elif data:  # read and drop the dataset, then say what was wrong
            self.incoming = Incoming(fields, cid, ts, refusal=cmd.UNRECOGNIZED_OPERATION)
        else:
            self._reply(cid, fields, cmd.UNRECOGNIZED_OPERATION)

    def _is_query(self, field: int, abstract: str) -> bool:
        config = self.config
        return config.query is not None and (
            (field == cmd.C_FIND_RQ and abstract in config.find_classes)
            or (field == cmd.C_MOVE_RQ and abstract in config.move_classes))

    def _store_request(self, fields: Mapping[int, bytes], cid: int, abstract: str,
                       ts: str) -> Incoming:
        """A C-STORE-RQ: received into a scratch file, or refused (PS3.4 B.2.3) if its UIDs
        are not UIDs or its SOP class is not the context's."""
        sop_class = cmd.uid(fields, cmd.AFFECTED_SOP_CLASS)
        instance = cmd.uid(fields, cmd.AFFECTED_SOP_INSTANCE)
        if sop_class is None or instance is None:
            log.warning("C-STORE from %s refused: its SOP Class or Instance UID is not a UID",
                        self.calling)
            return Incoming(fields, cid, ts, refusal=CANNOT_UNDERSTAND)
        if sop_class != abstract or abstract in (cmd.VERIFICATION, sc.SOP_CLASS,
                                                 *self.config.find_classes,
                                                 *self.config.move_classes):
            log.warning("C-STORE of %s refused on a context of %s", sop_class, abstract)
            return Incoming(fields, cid, ts, refusal=SOP_CLASS_NOT_SUPPORTED)
        return Incoming(fields, cid, ts, take=self.config.scratch)

    def _dataset_done(self, incoming: Incoming) -> None:
        self.incoming = None
        incoming.close()
        if incoming.refusal:
            self._reply(incoming.cid, incoming.fields, incoming.refusal)
        elif incoming.buffer is not None and cmd.us(incoming.fields, cmd.COMMAND_FIELD) \
                == cmd.N_ACTION_RQ:
            self._action(incoming)
        elif incoming.buffer is not None:
            self._query(incoming)
        else:
            self._stored(incoming)

    def _stored(self, incoming: Incoming) -> None:
        status = PROCESSING_FAILURE
        try:
            status = self.config.store_file(incoming.path, incoming.ts, incoming.sop_class,
                                            incoming.sop_instance, incoming.head, incoming.stat)
        finally:
            if status:  # refused (stored: moved into the store, see services.StoreFile)
                incoming.path.unlink(missing_ok=True)
        self._reply(incoming.cid, incoming.fields, status)
        self.config.settle(False)

    def _query(self, incoming: Incoming) -> None:
        """Hand a C-FIND/C-MOVE to the query service and send its replies as they come."""
        assert self.config.query is not None and incoming.buffer is not None
        field = cmd.us(incoming.fields, cmd.COMMAND_FIELD)
        destination = ""
        if field == cmd.C_MOVE_RQ:
            destination = cmd.ae_title(incoming.fields, cmd.MOVE_DESTINATION) or ""
        request = QueryRequest(field, self.contexts[incoming.cid][0], incoming.ts,
                               bytes(incoming.buffer), destination)
        replies = self.config.query(request)
        if field == cmd.C_FIND_RQ:  # the first alone, then growing writes (pdu.gathered)
            for chunk in pdu.gathered(self._reply(incoming.cid, incoming.fields, r.status,
                                                  r.identifier, send=False) for r in replies):
                self.link.send(chunk)
            return
        for reply in replies:  # C-MOVE: each response when its sub-operation is done
            self._reply(incoming.cid, incoming.fields, reply.status, reply.identifier,
                        reply.counts)

    def _action(self, incoming: Incoming) -> None:
        """An N-ACTION (PS3.4 J.3.2) answered, then its result reported at once on this
        association, which the requestor still holds (PS3.4 J.3.3)."""
        assert self.config.action is not None and incoming.buffer is not None
        fields = incoming.fields
        action_type = cmd.us(fields, cmd.ACTION_TYPE_ID, -1)
        reply = self.config.action(ActionRequest(
            self.calling, cmd.uid(fields, cmd.REQUESTED_SOP_CLASS),
            cmd.uid(fields, cmd.REQUESTED_SOP_INSTANCE), None if action_type < 0 else action_type,
            incoming.ts, bytes(incoming.buffer)))
        self._send(incoming.cid, True, sc.action_rsp(cmd.us(fields, cmd.MESSAGE_ID),
                                                     reply.status, reply.action_type), False)
        if reply.report is not None:
            self.message_id = self.message_id % 65535 + 1
            self.reports[self.message_id] = reply.report
            self._send(incoming.cid, True,
                       sc.event_report_rq(self.message_id, reply.report.event_type), True)
            self._send(incoming.cid, False, sc.encode_result(reply.report, incoming.ts), False)

    def _answered(self, fields: Mapping[int, bytes], field: int) -> None:
        """A response from the requestor: only to an N-EVENT-REPORT of ours, and without a
        dataset (PS3.4 J.3.3); a result it refused goes back to the commitment service."""
        answered = cmd.us(fields, cmd.RESPONDED_TO)
        if (field != cmd.N_EVENT_REPORT_RSP or answered not in self.reports
                or cmd.has_data_set(fields)):
            raise PduError(f"a response (0x{field:04X}) to no request of ours",
                           pdu.UNEXPECTED_PDU)
        report = self.reports.pop(answered)
        status = cmd.us(fields, cmd.STATUS)
        if status != 0 and self.config.action is not None:
            log.warning("%s answered a commitment result with status 0x%04X", self.calling,
                        status)
            self.config.action.undelivered(self.calling, report)

    def _reply(self, cid: int, fields: Mapping[int, bytes], status: int,
               identifier: bytes | None = None, counts: Mapping[str, int] | None = None,
               send: bool = True) -> list[bytes]:
        """A response to the request ``fields`` (its SOP class and instance echoed when they
        are valid UIDs), then its identifier if any: sent, or its PDUs returned (``send``)."""
        field = cmd.us(fields, cmd.COMMAND_FIELD)
        instance = cmd.uid(fields, cmd.AFFECTED_SOP_INSTANCE) if field == cmd.C_STORE_RQ else ""
        command = cmd.response(field, cmd.us(fields, cmd.MESSAGE_ID), status,
                               cmd.uid(fields, cmd.AFFECTED_SOP_CLASS) or "", instance or "",
                               data_set=identifier is not None, **(counts or {}))
        out = list(pdu.fragments(cid, True, command, self.peer_max))
        if identifier is not None:
            out += pdu.fragments(cid, False, identifier, self.peer_max)
        for n, piece in enumerate(out if send else ()):
            self.link.send(piece, more=n + 1 < len(out))
        return out

    def _send(self, cid: int, command: bool, data: bytes, more: bool) -> None:
        pieces = list(pdu.fragments(cid, command, data, self.peer_max))
        for n, piece in enumerate(pieces):
            self.link.send(piece, more=more or n + 1 < len(pieces))
