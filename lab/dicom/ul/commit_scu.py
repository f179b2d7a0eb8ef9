"""Storage Commitment Push Model over an association this end requested (PS3.4 Annex J): the
SCU asking for commitment and waiting for the result on the same association (J.3.2, J.3.3),
and the SCP delivering a result over a new association it opens to the SCU, in the SCP role
(PS3.4 J.3.3, PS3.7 D.3.3.4). The datasets and command sets are :mod:`lab.dicom.ul.commitment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lab.dicom.ul import command as cmd
from lab.dicom.ul import commitment as sc
from lab.dicom.ul import pdu
from lab.dicom.ul.requestor import AssociationError, Requestor, open_association

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
            message_id: int, wait: float, max_pdu: int = 0) -> sc.Result:
    """Ask for commitment of ``refs`` (N-ACTION-RQ, Action Type 1) and wait at most ``wait``
    seconds in all for the N-ACTION-RSP and the result (N-EVENT-REPORT-RQ, answered with
    success once decoded) on this association. A refused N-ACTION is a CommitmentError; a
    report of another transaction is answered and waited past."""
    cid = _context(assoc)
    ts = assoc.accepted[cid]
    assoc.send_message(cid, sc.action_rq(message_id), sc.encode_request(transaction, refs, ts),
                       max_pdu)
    assoc.link.deadline(wait)
    try:
        while True:
            rcid, fields, data = assoc.message(sc.DATASET_LIMIT)
            field = cmd.us(fields, cmd.COMMAND_FIELD)
            if field == cmd.N_ACTION_RSP and cmd.us(fields, cmd.RESPONDED_TO) == message_id:
                status = cmd.us(fields, cmd.STATUS)
                if status != 0:
                    raise sc.CommitmentError(f"the peer refused the commitment request "
                                             f"(N-ACTION status 0x{status:04X})")
                continue
            if field != cmd.N_EVENT_REPORT_RQ or data is None or rcid not in assoc.accepted:
                raise AssociationError(f"unexpected message 0x{field:04X} while waiting for "
                                       "the commitment result")
            result = _answer(assoc, rcid, fields, data, max_pdu)
            if result.transaction == transaction:
                return result
    finally:
        assoc.link.deadline(None)


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
