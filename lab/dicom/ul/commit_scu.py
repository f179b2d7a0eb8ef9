"""Storage Commitment Push Model on the requestor's side (PS3.4 Annex J): the SCU asking for
commitment and waiting for the result on the same association (J.3.2, J.3.3) or, when it
listens, on a new association the SCP opens to it (J.3.3; the SCU then accepts the SCP's
association and the SCP role it proposes, PS3.7 D.3.3.4); and the SCP delivering a result over
a new association it opens to the SCU. The datasets and command sets are
:mod:`lab.dicom.ul.commitment`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Sequence

from lab.dicom.ul import command as cmd
from lab.dicom.ul import commitment as sc
from lab.dicom.ul import pdu
from lab.dicom.ul.link import Link
from lab.dicom.ul.negotiation import acceptance, negotiate, rejection
from lab.dicom.ul.pdu import PduError
from lab.dicom.ul.requestor import AssociationError, PeerReleased, Requestor, open_association

TYPE_CHECKING = False  # not typing's: see lab.dicom.ul.records
if TYPE_CHECKING:
    import ssl

#: What the SCU proposes for Storage Commitment beside its storage contexts.
CONTEXT = (sc.SOP_CLASS, sc.SYNTAXES)


def _context(assoc: Requestor) -> int:
    cid = next((c for c, a in assoc.abstract.items()
                if a == sc.SOP_CLASS and c in assoc.accepted), None)
    if cid is None:
        raise AssociationError("the peer did not accept Storage Commitment Push Model "
                               f"({sc.SOP_CLASS})")
    return cid


def request(assoc: Requestor, transaction: str, refs: Sequence[sc.Reference], *,
            message_id: int, wait: float, max_pdu: int = 0,
            listener: socket.socket | None = None, ae_title: str = "") -> sc.Result:
    """Ask for commitment of ``refs`` (N-ACTION-RQ, Action Type 1) and wait at most ``wait``
    seconds in all for the N-ACTION-RSP and the result (N-EVENT-REPORT-RQ, answered with
    success once decoded): on this association, or with ``listener`` also on an association
    the SCP opens to it (calling this end ``ae_title``). A refused N-ACTION is a
    CommitmentError; a report of another transaction is answered and waited past; none in
    time is a TimeoutError."""
    cid = _context(assoc)
    ts = assoc.accepted[cid]
    assoc.send_message(cid, sc.action_rq(message_id), sc.encode_request(transaction, refs, ts),
                       max_pdu)
    deadline = time.monotonic() + wait
    assoc.link.deadline(wait)
    try:
        while True:
            if listener is not None and not assoc.link.buffered():
                result = _from_either(assoc, listener, deadline, ae_title, max_pdu)
                if result is not None:
                    if result.transaction == transaction:
                        return result
                    continue
                if not assoc.link.buffered() and not _readable(assoc.link.sock):
                    continue  # the listener's connection brought nothing: wait again
            result = _next(assoc, message_id, max_pdu)
            if result is not None and result.transaction == transaction:
                return result
    finally:
        assoc.link.deadline(None)


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _next(assoc: Requestor, message_id: int, max_pdu: int) -> sc.Result | None:
    """The next message on the association: the N-ACTION-RSP (None) or a result."""
    rcid, fields, data = assoc.message(sc.DATASET_LIMIT)
    field = cmd.us(fields, cmd.COMMAND_FIELD)
    if field == cmd.N_ACTION_RSP and cmd.us(fields, cmd.RESPONDED_TO) == message_id:
        status = cmd.us(fields, cmd.STATUS)
        if status != 0:
            raise sc.CommitmentError(f"the peer refused the commitment request "
                                     f"(N-ACTION status 0x{status:04X})")
        return None
    if field != cmd.N_EVENT_REPORT_RQ or data is None or rcid not in assoc.accepted:
        raise AssociationError(f"unexpected message 0x{field:04X} while waiting for the "
                               "commitment result")
    return _answer(assoc, rcid, fields, data, max_pdu)


def _from_either(assoc: Requestor, listener: socket.socket, deadline: float, ae_title: str,
                 max_pdu: int) -> sc.Result | None:
    """Wait until the association has bytes (None: read them there) or a connection comes to
    the listener (the result it brought, None if none)."""
    left = deadline - time.monotonic()
    ready = select.select([assoc.link.sock, listener], [], [], left)[0] if left > 0 else []
    if not ready:
        raise TimeoutError("no commitment result in time")
    if assoc.link.sock in ready:
        return None
    return receive(listener, ae_title=ae_title, timeout=left, max_pdu=max_pdu)


def receive(listener: socket.socket, *, ae_title: str, timeout: float,
            max_pdu: int = 0) -> sc.Result | None:
    """Accept one association on ``listener`` and take the commitment result it brings (the
    last, if several), answering each; None if it brings none or is refused. An untrusted
    connection that breaks is aborted and closed, not raised about; a result it brought and
    we confirmed before is kept."""
    sock, _ = listener.accept()
    link = Link(sock, timeout)
    link.deadline(timeout)
    results: list[sc.Result] = []
    try:
        _serve(link, ae_title, max_pdu, results)
    except (PduError, OSError, TimeoutError, sc.CommitmentError):
        with contextlib.suppress(PduError, OSError):
            link.send(pdu.encode_abort(2, pdu.NOT_SPECIFIED))
    finally:
        link.close()
    return results[-1] if results else None


def _serve(link: Link, ae_title: str, max_pdu: int, results: list[sc.Result]) -> None:
    """The SCP's association: Storage Commitment accepted (and the SCP role it proposes),
    each N-EVENT-REPORT answered and its result added to ``results``, until it releases."""
    kind, length = link.header()
    if kind != pdu.A_ASSOCIATE_RQ:
        raise PduError(f"expected A-ASSOCIATE-RQ, got PDU type 0x{kind:02X}")
    rq = pdu.decode_associate(kind, link.body(length, 1 << 18))
    why = rejection(rq, frozenset({ae_title}))
    if why is not None:
        link.send(pdu.encode_reject(*why))
        return
    ac = acceptance(rq, negotiate(rq, {sc.SOP_CLASS: frozenset(sc.SYNTAXES)}), max_pdu)
    if any(item[0] == pdu.ROLE_SELECTION for item in rq.other_user_items):
        ac = ac._replace(other_user_items=(*ac.other_user_items,
                                           pdu.role_item(sc.SOP_CLASS, False, True)))
    link.send(pdu.encode_associate(pdu.A_ASSOCIATE_AC, ac))
    peer = Requestor(link, ac, rq.contexts)  # its message codec, from the acceptor's side
    peer.peer_max = rq.max_length
    while True:
        try:
            cid, fields, data = peer.message(sc.DATASET_LIMIT)
        except PeerReleased:
            link.send(pdu.RELEASE_RP)
            return
        if (cmd.us(fields, cmd.COMMAND_FIELD) != cmd.N_EVENT_REPORT_RQ or data is None
                or cid not in peer.accepted):
            raise PduError("only N-EVENT-REPORTs of Storage Commitment are taken here")
        results.append(_answer(peer, cid, fields, data, max_pdu))


def _answer(assoc: Requestor, cid: int, fields: dict[int, bytes], data: bytes,
            max_pdu: int) -> sc.Result:
    """An N-EVENT-REPORT-RQ decoded and answered: success, or processing failure (then
    raised) when its dataset cannot be read (PS3.7 10.1.1.1.8)."""
    message_id, event = cmd.us(fields, cmd.MESSAGE_ID), cmd.us(fields, cmd.EVENT_TYPE_ID, 0)
    try:
        result = sc.decode_result(data, assoc.accepted[cid])
    except sc.CommitmentError:
        assoc.send_message(cid, sc.event_report_rsp(message_id, cmd.PROCESSING_FAILURE, event),
                           None, max_pdu)
        raise
    assoc.send_message(cid, sc.event_report_rsp(message_id, 0, event), None, max_pdu)
    return result


def deliver(host: str, port: int, *, called: str, calling: str, result: sc.Result,
            timeout: float, tls: ssl.SSLContext | None = None, max_pdu: int = 0) -> int:
    """Send a result over a new association to the SCU at ``host``:``port``, proposing the SCP
    role for Storage Commitment (PS3.7 D.3.3.4); the N-EVENT-REPORT-RSP's status. Raises
    AssociationError or OSError if the SCU cannot be reached or breaks off."""
    assoc, _ = open_association(host, port, called=called, calling=calling, contexts=[CONTEXT],
                                max_pdu=max_pdu, timeout=timeout, tls=tls,
                                items=(pdu.role_item(sc.SOP_CLASS, False, True),))
    try:
        cid = _context(assoc)
        assoc.send_message(cid, sc.event_report_rq(1, result.event_type),
                           sc.encode_result(result, assoc.accepted[cid]), max_pdu)
        _, fields, _ = assoc.message(1 << 16)
        if cmd.us(fields, cmd.COMMAND_FIELD) != cmd.N_EVENT_REPORT_RSP:
            raise AssociationError("the SCU answered the N-EVENT-REPORT with another message")
        status = cmd.us(fields, cmd.STATUS)
    except BaseException:
        assoc.abort()
        raise
    assoc.release()
    return status
