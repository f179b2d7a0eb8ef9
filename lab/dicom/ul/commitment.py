"""Storage Commitment Push Model (PS3.4 Annex J) on the wire: the N-ACTION and N-EVENT-REPORT
command sets (PS3.7 10.3.1, 10.3.4) and their datasets, encoded and decoded by hand.

The SCU asks with an N-ACTION-RQ (Action Type ID 1, "Request Storage Commitment") on the
well-known instance of the Storage Commitment Push Model SOP Class, whose dataset names the
transaction (Transaction UID) and every object (Referenced SOP Sequence: Referenced SOP Class
and Instance UIDs; PS3.4 J.3.2). The SCP answers the N-ACTION-RSP at once and the result later
with an N-EVENT-REPORT-RQ (PS3.4 J.3.3): Event Type ID 1 when every object is committed
(Referenced SOP Sequence), 2 when some are not (also a Failed SOP Sequence, each item with its
Failure Reason, PS3.4 J.3.3.1.1). The report goes over the association the SCU asked on when it
is still there, otherwise over a new one the SCP opens, proposing the SCP role (PS3.7 D.3.3.4).

Datasets are Implicit or Explicit VR Little Endian (the only transfer syntaxes the lab offers
for this SOP class, PS3.5 A.1, A.2). The decoder takes untrusted bytes: every length is checked
against what is left, sequences nest at most :data:`MAX_DEPTH` deep, and anything malformed is a
:class:`CommitmentError` (the SCP answers it with a failure status, never an exception). This
module imports the standard library only, like the rest of the SCU's lean path.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from lab.dicom.ul import command as cmd
from lab.dicom.ul.records import Record
from lab.errors import LabError

TYPE_CHECKING = False  # not typing's: see lab.dicom.ul.records
if TYPE_CHECKING:
    from typing import TypeAlias

#: Storage Commitment Push Model SOP Class and its well-known instance (PS3.4 J.3.5, PS3.6 A).
SOP_CLASS = "1.2.840.10008.1.20.1"
INSTANCE = "1.2.840.10008.1.20.1.1"
#: Transfer syntaxes offered for it: Implicit and Explicit VR Little Endian.
SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
IMPLICIT = SYNTAXES[0]
REQUEST_COMMITMENT = 1  # Action Type ID (PS3.4 J.3.2)
ALL_COMMITTED, SOME_FAILED = 1, 2  # Event Type IDs (PS3.4 J.3.3)
#: Failure Reasons (PS3.4 J.3.3.1.1): processing failure, no such object instance, resource
#: limitation, referenced SOP class not supported, class/instance conflict, duplicate
#: transaction UID.
PROCESSING_FAILURE, NO_SUCH_OBJECT, RESOURCE_LIMITATION = 0x0110, 0x0112, 0x0213
CLASS_NOT_SUPPORTED, CLASS_INSTANCE_CONFLICT, DUPLICATE_TRANSACTION = 0x0122, 0x0119, 0x0131
REASONS = {PROCESSING_FAILURE: "processing failure", NO_SUCH_OBJECT: "no such object instance",
           RESOURCE_LIMITATION: "resource limitation",
           CLASS_NOT_SUPPORTED: "referenced SOP class not supported",
           CLASS_INSTANCE_CONFLICT: "class/instance conflict",
           DUPLICATE_TRANSACTION: "duplicate transaction UID"}
#: N-ACTION statuses (PS3.7 C): invalid attribute value, invalid object instance, missing
#: attribute, no such action.
INVALID_VALUE, INVALID_INSTANCE, MISSING_ATTRIBUTE, NO_SUCH_ACTION = 0x0106, 0x0117, 0x0120, 0x0123
#: The largest dataset taken (about 40 000 objects) and the deepest nesting of sequences.
DATASET_LIMIT = 1 << 22
MAX_DEPTH = 3

TRANSACTION_UID = 0x00081195
REFERENCED_SOP_SEQUENCE = 0x00081199
FAILED_SOP_SEQUENCE = 0x00081198
REFERENCED_CLASS, REFERENCED_INSTANCE, FAILURE_REASON = 0x00081150, 0x00081155, 0x00081197
#: Sequences known by tag (an Implicit VR dataset does not say which elements are sequences):
#: the two above and Referenced Performed Procedure Step Sequence (PS3.4 J.3.2).
_SEQUENCES = frozenset({REFERENCED_SOP_SEQUENCE, FAILED_SOP_SEQUENCE, 0x00081111})
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_TAG = struct.Struct("<HH")


class CommitmentError(LabError):
    """A Storage Commitment dataset or message that is not what PS3.4 Annex J describes;
    ``status``: the failure status an SCP answers it with (PS3.7 C)."""

    def __init__(self, message: str, status: int = PROCESSING_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class Reference(Record):
    """One object of a commitment: its SOP Class and Instance UIDs, and for a failed one the
    Failure Reason (0 when committed)."""

    sop_class: str
    sop_instance: str
    reason: int = 0


class Result(Record):
    """What an N-EVENT-REPORT says: the transaction, objects committed and objects failed."""

    transaction: str
    committed: tuple[Reference, ...]
    failed: tuple[Reference, ...]

    @property
    def event_type(self) -> int:
        return SOME_FAILED if self.failed else ALL_COMMITTED


# -- encoding ------------------------------------------------------------------------------

def _element(tag: int, vr: bytes, value: bytes, explicit: bool) -> bytes:
    head = _TAG.pack(tag >> 16, tag & 0xFFFF)
    if not explicit:
        return head + struct.pack("<L", len(value)) + value
    if vr in _LONG_VRS:
        return head + vr + b"\0\0" + struct.pack("<L", len(value)) + value
    return head + vr + struct.pack("<H", len(value)) + value


def _ui(tag: int, value: str, explicit: bool) -> bytes:
    raw = value.encode("ascii")
    return _element(tag, b"UI", raw + b"\0" * (len(raw) % 2), explicit)


def _sequence(tag: int, items: Iterable[bytes], explicit: bool) -> bytes:
    body = b"".join(_TAG.pack(0xFFFE, 0xE000) + struct.pack("<L", len(i)) + i for i in items)
    return _element(tag, b"SQ", body, explicit)


def _item(ref: Reference, explicit: bool, failed: bool) -> bytes:
    out = _ui(REFERENCED_CLASS, ref.sop_class, explicit)
    out += _ui(REFERENCED_INSTANCE, ref.sop_instance, explicit)
    if failed:
        out += _element(FAILURE_REASON, b"US", struct.pack("<H", ref.reason), explicit)
    return out


def encode_request(transaction: str, refs: Iterable[Reference], transfer_syntax: str) -> bytes:
    """The N-ACTION-RQ dataset (PS3.4 J.3.2): Transaction UID and Referenced SOP Sequence."""
    explicit = transfer_syntax != IMPLICIT
    return (_ui(TRANSACTION_UID, transaction, explicit)
            + _sequence(REFERENCED_SOP_SEQUENCE, (_item(r, explicit, False) for r in refs),
                        explicit))


def encode_result(result: Result, transfer_syntax: str) -> bytes:
    """The N-EVENT-REPORT-RQ dataset (PS3.4 J.3.3): elements in ascending tag order."""
    explicit = transfer_syntax != IMPLICIT
    out = _ui(TRANSACTION_UID, result.transaction, explicit)
    if result.failed:
        out += _sequence(FAILED_SOP_SEQUENCE, (_item(r, explicit, True) for r in result.failed),
                         explicit)
    if result.committed:
        out += _sequence(REFERENCED_SOP_SEQUENCE,
                         (_item(r, explicit, False) for r in result.committed), explicit)
    return out


# -- decoding ------------------------------------------------------------------------------

Value: TypeAlias = "bytes | list[dict[int, Value]]"


class _Reader:
    """A bounded walk over an encoded dataset (PS3.5 7.1, 7.5)."""

    def __init__(self, data: bytes, explicit: bool) -> None:
        if len(data) > DATASET_LIMIT:
            raise CommitmentError(f"dataset of {len(data)} bytes, above {DATASET_LIMIT}")
        self.data, self.explicit = data, explicit

    def _need(self, pos: int, n: int) -> None:
        if pos + n > len(self.data):
            raise CommitmentError(f"dataset truncated at byte {pos}")

    def dataset(self, pos: int, end: int, depth: int) -> tuple[dict[int, Value], int]:
        """Elements from ``pos`` until ``end`` (or an Item Delimitation, when ``end`` is
        None-like -1); the elements and where the walk stopped."""
        out: dict[int, Value] = {}
        while pos < (end if end >= 0 else len(self.data)):
            self._need(pos, 8)
            group, element = _TAG.unpack_from(self.data, pos)
            tag = group << 16 | element
            if tag == _ITEM_END and end < 0:
                return out, pos + 8
            if group == 0xFFFE:
                raise CommitmentError(f"delimiter ({group:04X},{element:04X}) out of place")
            pos, length, is_sq = self._header(pos, tag)
            if is_sq:
                out[tag], pos = self.sequence(pos, length, depth + 1)
                continue
            if length == _UNDEFINED:
                raise CommitmentError(f"undefined length on ({group:04X},{element:04X})")
            self._need(pos, length)
            out[tag] = self.data[pos : pos + length]
            pos += length
        if end < 0:
            raise CommitmentError("item without its Item Delimitation")
        if pos != end:
            raise CommitmentError("element overruns its item")
        return out, pos

    def _header(self, pos: int, tag: int) -> tuple[int, int, bool]:
        if not self.explicit:
            length = struct.unpack_from("<L", self.data, pos + 4)[0]
            return pos + 8, length, tag in _SEQUENCES or length == _UNDEFINED
        vr = self.data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            self._need(pos, 12)
            return pos + 12, struct.unpack_from("<L", self.data, pos + 8)[0], vr == b"SQ"
        return pos + 8, struct.unpack_from("<H", self.data, pos + 6)[0], False

    def sequence(self, pos: int, length: int, depth: int) -> tuple[Value, int]:
        if depth > MAX_DEPTH:
            raise CommitmentError(f"sequences nested more than {MAX_DEPTH} deep")
        end = -1 if length == _UNDEFINED else pos + length
        if end > len(self.data):
            raise CommitmentError(f"sequence at byte {pos} overruns the dataset")
        items: list[dict[int, Value]] = []
        while end < 0 or pos < end:
            self._need(pos, 8)
            group, element, n = struct.unpack_from("<HHL", self.data, pos)
            tag, pos = group << 16 | element, pos + 8
            if tag == _SEQUENCE_END and end < 0:
                return items, pos
            if tag != _ITEM:
                raise CommitmentError(f"({group:04X},{element:04X}) where an item belongs")
            if n != _UNDEFINED:
                self._need(pos, n)
            item, pos = self.dataset(pos, -1 if n == _UNDEFINED else pos + n, depth)
            items.append(item)
        if pos != end:
            raise CommitmentError("item overruns its sequence")
        return items, pos


def _uid_of(ds: Mapping[int, Value], tag: int, what: str) -> str:
    raw = ds.get(tag)
    if not isinstance(raw, bytes):
        raise CommitmentError(f"{what} missing", MISSING_ATTRIBUTE)
    value = cmd.uid({0: raw}, 0)
    if value is None:
        raise CommitmentError(f"{what} {raw[:70]!r} is not a UID (PS3.5 9.1)", INVALID_VALUE)
    return value


def _refs(ds: Mapping[int, Value], tag: int, failed: bool) -> tuple[Reference, ...]:
    items = ds.get(tag, [])
    if not isinstance(items, list):
        raise CommitmentError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not a sequence")
    out = []
    for n, item in enumerate(items):
        where = f"item {n + 1}"
        reason = 0
        if failed:
            raw = item.get(FAILURE_REASON)
            if not isinstance(raw, bytes) or len(raw) != 2:
                raise CommitmentError(f"{where}: Failure Reason missing or not US",
                                      MISSING_ATTRIBUTE)
            reason = struct.unpack("<H", raw)[0]
        out.append(Reference(_uid_of(item, REFERENCED_CLASS, f"{where}: Referenced SOP Class"),
                             _uid_of(item, REFERENCED_INSTANCE,
                                     f"{where}: Referenced SOP Instance"), reason))
    return tuple(out)


def _decode(data: bytes, transfer_syntax: str) -> dict[int, Value]:
    if transfer_syntax not in SYNTAXES:
        raise CommitmentError(f"transfer syntax {transfer_syntax} is not offered here")
    ds, _ = _Reader(data, transfer_syntax != IMPLICIT).dataset(0, len(data), 0)
    return ds


def decode_request(data: bytes, transfer_syntax: str) -> tuple[str, tuple[Reference, ...]]:
    """Transaction UID and references of an N-ACTION-RQ dataset; CommitmentError if it is
    malformed or lacks them (PS3.4 J.3.2: both required, at least one reference)."""
    ds = _decode(data, transfer_syntax)
    transaction = _uid_of(ds, TRANSACTION_UID, "Transaction UID")
    refs = _refs(ds, REFERENCED_SOP_SEQUENCE, False)
    if not refs:
        raise CommitmentError("Referenced SOP Sequence missing or empty", MISSING_ATTRIBUTE)
    return transaction, refs


def decode_result(data: bytes, transfer_syntax: str) -> Result:
    """What an N-EVENT-REPORT-RQ dataset says; CommitmentError if malformed."""
    ds = _decode(data, transfer_syntax)
    return Result(_uid_of(ds, TRANSACTION_UID, "Transaction UID"),
                  _refs(ds, REFERENCED_SOP_SEQUENCE, False), _refs(ds, FAILED_SOP_SEQUENCE, True))


# -- command sets (PS3.7 10.3.1, 10.3.4) ---------------------------------------------------

def action_rq(message_id: int) -> bytes:
    """N-ACTION-RQ on the well-known instance, Action Type ID 1, a dataset following."""
    return cmd.encode({cmd.REQUESTED_SOP_CLASS: SOP_CLASS, cmd.COMMAND_FIELD: cmd.N_ACTION_RQ,
                       cmd.MESSAGE_ID: message_id, cmd.DATA_SET_TYPE: 0x0000,
                       cmd.REQUESTED_SOP_INSTANCE: INSTANCE,
                       cmd.ACTION_TYPE_ID: REQUEST_COMMITMENT})


def action_rsp(message_id: int, status: int, action_type: int | None) -> bytes:
    """N-ACTION-RSP: no dataset (PS3.4 J.3.2.1.2)."""
    fields: dict[int, int | str] = {
        cmd.AFFECTED_SOP_CLASS: SOP_CLASS, cmd.COMMAND_FIELD: cmd.N_ACTION_RSP,
        cmd.RESPONDED_TO: message_id, cmd.DATA_SET_TYPE: cmd.NO_DATA_SET, cmd.STATUS: status,
        cmd.AFFECTED_SOP_INSTANCE: INSTANCE}
    if action_type is not None:
        fields[cmd.ACTION_TYPE_ID] = action_type
    return cmd.encode(fields)


def event_report_rq(message_id: int, event_type: int) -> bytes:
    """N-EVENT-REPORT-RQ on the well-known instance, a dataset following."""
    return cmd.encode({cmd.AFFECTED_SOP_CLASS: SOP_CLASS,
                       cmd.COMMAND_FIELD: cmd.N_EVENT_REPORT_RQ, cmd.MESSAGE_ID: message_id,
                       cmd.DATA_SET_TYPE: 0x0000, cmd.AFFECTED_SOP_INSTANCE: INSTANCE,
                       cmd.EVENT_TYPE_ID: event_type})


def event_report_rsp(message_id: int, status: int, event_type: int) -> bytes:
    """N-EVENT-REPORT-RSP: no dataset."""
    return cmd.encode({cmd.AFFECTED_SOP_CLASS: SOP_CLASS,
                       cmd.COMMAND_FIELD: cmd.N_EVENT_REPORT_RSP, cmd.RESPONDED_TO: message_id,
                       cmd.DATA_SET_TYPE: cmd.NO_DATA_SET, cmd.STATUS: status,
                       cmd.AFFECTED_SOP_INSTANCE: INSTANCE, cmd.EVENT_TYPE_ID: event_type})
