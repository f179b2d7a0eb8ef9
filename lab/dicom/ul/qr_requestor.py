"""Query/Retrieve as a requestor on the lab's own Upper Layer (:mod:`lab.dicom.ul.requestor`):
C-FIND and C-MOVE in the Patient Root and Study Root models (PS3.4 Annex C), their command sets
per PS3.7 9.1.2 (C-FIND) and 9.1.4 (C-MOVE), their Identifiers encoded and decoded by pydicom in
the transfer syntax the acceptor chose.

One request per association: the request (command, then Identifier) goes out, then responses are
read until one is final. Pending responses (0xFF00, 0xFF01) of a C-FIND carry a match; those of
a C-MOVE carry the sub-operation counts (PS3.4 C.4.2.1.6). Every wait for the peer is bounded by
the association's timeout, so a response that never comes is an error after that long, never a
hang. No reactor thread reads the socket behind the caller's back: the responses are read by the
thread that sent the request, in order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.requestor import AssociationError, Requestor

IMPLICIT_LE, EXPLICIT_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
#: Transfer syntaxes proposed for the Identifiers (PS3.5 A.1, A.2): both Little Endian ones.
SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE)
#: Information model SOP classes (PS3.4 C.6.1.1, C.6.2.1).
FIND = {"patient": "1.2.840.10008.5.1.4.1.2.1.1", "study": "1.2.840.10008.5.1.4.1.2.2.1"}
MOVE = {"patient": "1.2.840.10008.5.1.4.1.2.1.2", "study": "1.2.840.10008.5.1.4.1.2.2.2"}
#: Pending statuses (PS3.4 C.4.1.1.4, C.4.2.1.5): more responses follow.
PENDING = frozenset({0xFF00, 0xFF01})
MEDIUM_PRIORITY = 0x0000


@dataclass(frozen=True)
class Response:
    """One C-FIND-RSP or C-MOVE-RSP: its status, its command set, its Identifier if any."""

    status: int
    fields: Mapping[int, bytes]
    identifier: Dataset | None

    @property
    def pending(self) -> bool:
        return self.status in PENDING

    def count(self, element: int) -> int:
        """A sub-operation count (0 if the response does not carry it, PS3.7 9.1.4.1)."""
        return cmd.us(self.fields, element, 0)


def encode_identifier(ds: Dataset, transfer_syntax: str) -> bytes:
    """An Identifier in the negotiated transfer syntax (PS3.5 7: Little Endian, implicit or
    explicit VR; a command's data set never has a preamble or File Meta Information)."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = transfer_syntax == IMPLICIT_LE
    write_dataset(fp, ds)
    return fp.getvalue()


def decode_identifier(data: bytes, transfer_syntax: str) -> Dataset:
    """An Identifier received in the negotiated transfer syntax."""
    return read_dataset(BytesIO(data), transfer_syntax == IMPLICIT_LE, True)


def find_rq(message_id: int, sop_class: str, priority: int = MEDIUM_PRIORITY) -> bytes:
    """C-FIND-RQ (PS3.7 9.3.2.1): an Identifier follows."""
    return cmd.encode({cmd.AFFECTED_SOP_CLASS: sop_class, cmd.COMMAND_FIELD: cmd.C_FIND_RQ,
                       cmd.MESSAGE_ID: message_id, cmd.PRIORITY: priority,
                       cmd.DATA_SET_TYPE: 0x0000})


def move_rq(message_id: int, sop_class: str, destination: str,
            priority: int = MEDIUM_PRIORITY) -> bytes:
    """C-MOVE-RQ (PS3.7 9.3.4.1): an Identifier follows; sub-operations go to ``destination``
    (an AE title the acceptor knows, PS3.4 C.4.2.1.4.1)."""
    if not 0 < len(destination.strip()) <= 16 or not destination.isascii():
        raise AssociationError(f"move destination {destination!r}: an AE title has 1 to 16 "
                               "ASCII characters (PS3.5 6.2)")
    return cmd.encode({cmd.AFFECTED_SOP_CLASS: sop_class, cmd.COMMAND_FIELD: cmd.C_MOVE_RQ,
                       cmd.MESSAGE_ID: message_id, cmd.PRIORITY: priority,
                       cmd.DATA_SET_TYPE: 0x0000, cmd.MOVE_DESTINATION: destination})


def _cap(assoc: Requestor, max_pdu: int) -> int:
    """The longest P-DATA-TF body to send: the peer's maximum, lowered to ours if set."""
    if max_pdu and (not assoc.peer_max or max_pdu < assoc.peer_max):
        return max_pdu
    return assoc.peer_max


def _context(assoc: Requestor, sop_class: str) -> tuple[int, str]:
    """The accepted presentation context for ``sop_class``: its id and transfer syntax."""
    for cid, ts in assoc.accepted.items():
        if assoc.abstract.get(cid) == sop_class:
            return cid, ts
    raise AssociationError(f"{sop_class} was not accepted by the peer")


def _send_request(assoc: Requestor, cid: int, command: bytes, identifier: bytes,
                  max_pdu: int) -> None:
    """A request's command set, then its Identifier, in P-DATA-TF PDUs (PS3.8 9.3.5)."""
    cap = _cap(assoc, max_pdu)
    for piece in pdu.fragments(cid, True, command, cap):
        assoc.link.send(piece, more=True)
    pieces = list(pdu.fragments(cid, False, identifier, cap))
    for i, piece in enumerate(pieces):
        assoc.link.send(piece, more=i + 1 < len(pieces))


def read_message(assoc: Requestor, cid: int) -> tuple[dict[int, bytes], bytes | None]:
    """The next DIMSE message on context ``cid``: its command set and its data set (None when
    the command says none follows, PS3.7 E.1). A-ABORT, A-RELEASE-RQ or any other PDU, or a
    fragment on another context, is an AssociationError."""
    command, data = bytearray(), bytearray()
    fields: dict[int, bytes] | None = None
    while True:
        kind, length = assoc.link.header()
        if kind != pdu.P_DATA_TF:
            assoc.link.body(length)
            what = {pdu.A_ABORT: "aborted by the peer", pdu.A_RELEASE_RQ: "released by the peer"}
            raise AssociationError(what.get(kind, f"unexpected PDU type 0x{kind:02X}"))
        while length:
            n, context_id, control = assoc.link.pdv_header()
            if context_id != cid:
                raise AssociationError(f"a PDV on context {context_id} where {cid} was used")
            chunk = assoc.link.body(n)
            length -= n + pdu.PDV_HEADER.size
            if control & pdu.COMMAND:
                command += chunk
                if control & pdu.LAST:
                    fields = cmd.decode(command)
                    if not cmd.has_data_set(fields):
                        return fields, None
            elif fields is None:
                raise AssociationError("a data set fragment before its command (PS3.7 6.3.1)")
            else:
                data += chunk
                if control & pdu.LAST:
                    return fields, bytes(data)


def request(assoc: Requestor, sop_class: str, command: bytes, identifier: Dataset,
            max_pdu: int) -> Iterator[Response]:
    """Send one C-FIND-RQ or C-MOVE-RQ (``command``, message id 1) with ``identifier``, and
    yield its responses up to and including the final one (PS3.7 9.1.2.1, 9.1.4.1)."""
    cid, ts = _context(assoc, sop_class)
    sent = cmd.decode(command)
    expected = cmd.us(sent, cmd.COMMAND_FIELD) | 0x8000  # a response's field (PS3.7 E.1)
    message_id = cmd.us(sent, cmd.MESSAGE_ID)
    _send_request(assoc, cid, command, encode_identifier(identifier, ts), max_pdu)
    while True:
        fields, data = read_message(assoc, cid)
        field, answered = cmd.us(fields, cmd.COMMAND_FIELD), cmd.us(fields, cmd.RESPONDED_TO, 0)
        if field != expected or answered != message_id:
            raise AssociationError(f"command 0x{field:04X} answering message {answered} where "
                                   f"0x{expected:04X} answering {message_id} was expected")
        response = Response(cmd.us(fields, cmd.STATUS),
                            fields, decode_identifier(data, ts) if data else None)
        yield response
        if not response.pending:
            return
