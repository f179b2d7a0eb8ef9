"""The DICOM Upper Layer's PDUs (PS3.8 9.3), encoded and decoded by hand for the lean store path.

Only what an association needs is interpreted: the A-ASSOCIATE-RQ/AC fixed fields, the
Application Context, Presentation Context and User Information items (Maximum Length, PS3.8
D.1; Implementation Class UID and Version Name, PS3.7 D.3.3.2); other user sub-items (role
selection, asynchronous operations, extended negotiation, user identity) are kept as raw bytes
and not answered, which PS3.7 D.3.3 allows (an acceptor that omits them takes the defaults).
The Asynchronous Operations Window (PS3.7 D.3.3.3) is made and read by :func:`window_item`
and :func:`window` for the callers that negotiate it.
A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT are fixed 4-byte bodies; P-DATA-TF carries PDV
items (PS3.8 9.3.5), whose headers are made here and whose data are streamed by the callers.

This module imports nothing beyond the standard library: the SCU's fast path starts in
milliseconds (:mod:`lab.dicom.ul.requestor`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence

from lab.dicom.ul.records import Record
from lab.errors import LabError

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07
PDU_TYPES = frozenset(range(1, 8))
#: The DICOM Application Context Name (PS3.7 A.2.1).
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
#: Presentation context results (PS3.8 Table 9-18).
ACCEPTANCE, USER_REJECTION, NO_REASON = 0, 1, 2
ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 3, 4
#: PDV message control header bits (PS3.8 E.2).
COMMAND, LAST = 0x01, 0x02
#: PDU header (type, reserved, length) and PDV item header (length, context id, control).
HEADER = struct.Struct(">BxL")
PDV_HEADER = struct.Struct(">LBB")

_ITEM = struct.Struct(">BxH")
_FIXED = struct.Struct(">H2x16s16s32x")  # protocol version, called AE, calling AE (PS3.8 9.3.2)


#: A-ABORT reasons when the service provider aborts (PS3.8 Table 9-26).
NOT_SPECIFIED, UNRECOGNIZED_PDU, UNEXPECTED_PDU = 0, 1, 2
UNRECOGNIZED_PARAMETER, UNEXPECTED_PARAMETER, INVALID_PARAMETER = 4, 5, 6


class PduError(LabError):
    """A PDU that does not follow PS3.8 9.3: the association is aborted, with ``reason`` (one
    of PS3.8 Table 9-26's) when this end's provider aborts it."""

    def __init__(self, message: str, reason: int = INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


class Proposed(Record):
    """A presentation context as requested (PS3.8 9.3.2.2)."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


class Result(Record):
    """A presentation context as answered (PS3.8 9.3.3.2); transfer_syntax is '' if refused."""

    id: int
    result: int
    transfer_syntax: str = ""


class Associate(Record):
    """An A-ASSOCIATE-RQ (``contexts`` set) or -AC (``results`` set)."""

    called: str
    calling: str
    contexts: tuple[Proposed, ...] = ()
    results: tuple[Result, ...] = ()
    max_length: int = 0  # of P-DATA-TF bodies this end receives; 0 = unlimited (PS3.8 D.1)
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = 1
    other_user_items: tuple[bytes, ...] = ()


def _item(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise PduError(f"item 0x{kind:02X} of {len(value)} bytes does not fit (PS3.8 9.3.2)")
    return _ITEM.pack(kind, len(value)) + value


#: User Information sub-item type of the Asynchronous Operations Window (PS3.7 D.3.3.3).
ASYNC_WINDOW = 0x53


def window_item(invoked: int, performed: int) -> bytes:
    """An Asynchronous Operations Window sub-item (PS3.7 D.3.3.3, Table D.3-7/8): how many
    operations the association-requestor may invoke, and perform, without waiting for their
    responses (0 = unlimited). In an A-ASSOCIATE-AC the values are what the acceptor grants,
    still counted from the requestor's side."""
    return _item(ASYNC_WINDOW, struct.pack(">HH", invoked, performed))


def window(assoc: Associate) -> tuple[int, int] | None:
    """The (invoked, performed) of an A-ASSOCIATE's Asynchronous Operations Window sub-item,
    None without one (both then default to 1: synchronous, PS3.7 D.3.3.3)."""
    for raw in assoc.other_user_items:
        if raw[0] == ASYNC_WINDOW and len(raw) == 8:
            invoked, performed = struct.unpack_from(">HH", raw, 4)
            return invoked, performed
    return None


#: User Information sub-item type of SCP/SCU Role Selection (PS3.7 D.3.3.4).
ROLE_SELECTION = 0x54


def role_item(sop_class: str, scu: bool, scp: bool) -> bytes:
    """An SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4, Table D.3-9): whether the
    association-requestor takes the SCU and the SCP role for ``sop_class``."""
    uid = sop_class.encode("ascii")
    return _item(ROLE_SELECTION, struct.pack(">H", len(uid)) + uid + bytes((scu, scp)))


def _ae(title: str) -> bytes:
    raw = title.encode("ascii")
    if not 0 < len(raw.strip()) <= 16:
        raise PduError(f"AE title {title!r} must have 1 to 16 characters (PS3.5 6.2)")
    return raw.ljust(16)


def pdu(kind: int, body: bytes) -> bytes:
    """A whole PDU: header then body."""
    return HEADER.pack(kind, len(body)) + body


def encode_associate(kind: int, assoc: Associate) -> bytes:
    """An A-ASSOCIATE-RQ (kind 1) or -AC (kind 2) PDU (PS3.8 9.3.2, 9.3.3)."""
    items = [_item(0x10, assoc.application_context.encode())]
    if kind == A_ASSOCIATE_RQ:
        for cx in assoc.contexts:
            sub = _item(0x30, cx.abstract_syntax.encode())
            sub += b"".join(_item(0x40, ts.encode()) for ts in cx.transfer_syntaxes)
            items.append(_item(0x20, bytes((cx.id, 0, 0, 0)) + sub))
    else:
        for res in assoc.results:
            items.append(_item(0x21, bytes((res.id, 0, res.result, 0))
                               + _item(0x40, res.transfer_syntax.encode())))
    user = _item(0x51, struct.pack(">L", assoc.max_length))
    if assoc.implementation_class_uid:
        user += _item(0x52, assoc.implementation_class_uid.encode())
    if assoc.implementation_version_name:
        user += _item(0x55, assoc.implementation_version_name.encode())
    user += b"".join(assoc.other_user_items)
    items.append(_item(0x50, user))
    fixed = _FIXED.pack(assoc.protocol_version, _ae(assoc.called), _ae(assoc.calling))
    return pdu(kind, fixed + b"".join(items))


def _items(body: bytes | memoryview, where: str) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(body):
        if pos + 4 > len(body):
            raise PduError(f"{where}: truncated item header at byte {pos}")
        kind, length = _ITEM.unpack_from(body, pos)
        if pos + 4 + length > len(body):
            raise PduError(f"{where}: item 0x{kind:02X} needs {length} bytes, "
                           f"{len(body) - pos - 4} left")
        yield kind, bytes(body[pos + 4 : pos + 4 + length])
        pos += 4 + length


def _uid(value: bytes, where: str) -> str:
    try:
        return value.decode("ascii").rstrip("\0 ")
    except UnicodeDecodeError:
        raise PduError(f"{where}: UID {value!r} is not ASCII") from None


def _proposed(value: bytes) -> Proposed:
    if len(value) < 4:
        raise PduError("presentation context item too short")
    abstract, syntaxes = "", []
    for kind, sub in _items(value[4:], "presentation context"):
        if kind == 0x30:
            abstract = _uid(sub, "abstract syntax")
        elif kind == 0x40:
            syntaxes.append(_uid(sub, "transfer syntax"))
        else:
            raise PduError(f"unexpected sub-item 0x{kind:02X} in a presentation context",
                           UNRECOGNIZED_PARAMETER)
    if not abstract or not syntaxes:
        raise PduError(f"presentation context {value[0]} lacks its abstract or transfer syntax")
    return Proposed(value[0], abstract, tuple(syntaxes))


def _result(value: bytes) -> Result:
    if len(value) < 4:
        raise PduError("presentation context item too short")
    syntaxes = [_uid(sub, "transfer syntax") for kind, sub in
                _items(value[4:], "presentation context") if kind == 0x40]
    return Result(value[0], value[2], syntaxes[0] if syntaxes else "")


def _user(value: bytes) -> dict[str, object]:
    out: dict[str, object] = {"other_user_items": []}
    for kind, sub in _items(value, "user information"):
        if kind == 0x51:
            if len(sub) != 4:
                raise PduError("maximum length sub-item is not 4 bytes")
            out["max_length"] = struct.unpack(">L", sub)[0]
        elif kind == 0x52:
            out["implementation_class_uid"] = _uid(sub, "implementation class")
        elif kind == 0x55:
            out["implementation_version_name"] = sub.decode("ascii", "replace").strip()
        else:
            out["other_user_items"].append(_item(kind, sub))  # type: ignore[attr-defined]
    out["other_user_items"] = tuple(out["other_user_items"])  # type: ignore[arg-type]
    return out


def decode_associate(kind: int, body: bytes | memoryview) -> Associate:
    """The body of an A-ASSOCIATE-RQ (kind 1) or -AC (kind 2) PDU; PduError if malformed."""
    if len(body) < _FIXED.size:
        raise PduError(f"A-ASSOCIATE PDU of {len(body)} bytes is too short")
    version, called, calling = _FIXED.unpack_from(body)
    fields: dict[str, object] = {"protocol_version": version}
    contexts, results = [], []
    for item, value in _items(body[_FIXED.size:], "A-ASSOCIATE"):
        if item == 0x10:
            fields["application_context"] = _uid(value, "application context")
        elif item == 0x20 and kind == A_ASSOCIATE_RQ:
            contexts.append(_proposed(value))
        elif item == 0x21 and kind == A_ASSOCIATE_AC:
            results.append(_result(value))
        elif item == 0x50:
            fields.update(_user(value))
        else:
            raise PduError(f"unexpected item 0x{item:02X} in an A-ASSOCIATE PDU",
                           UNRECOGNIZED_PARAMETER)
    if "application_context" not in fields:
        raise PduError("A-ASSOCIATE PDU without an application context")
    try:
        called_ae, calling_ae = called.decode("ascii").strip(), calling.decode("ascii").strip()
    except UnicodeDecodeError:
        raise PduError("AE titles are not ASCII") from None
    return Associate(called_ae, calling_ae, tuple(contexts), tuple(results),
                     **fields)  # type: ignore[arg-type]


def encode_reject(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent / 2 transient, source, reason."""
    return pdu(A_ASSOCIATE_RJ, bytes((0, result, source, reason)))


def encode_abort(source: int = 0, reason: int = 0) -> bytes:
    """A-ABORT (PS3.8 9.3.8): source 0 service user, 2 service provider."""
    return pdu(A_ABORT, bytes((0, 0, source, reason)))


RELEASE_RQ = pdu(A_RELEASE_RQ, bytes(4))
RELEASE_RP = pdu(A_RELEASE_RP, bytes(4))


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    """One PDV item (PS3.8 9.3.5.1) with its data."""
    return PDV_HEADER.pack(len(data) + 2, context_id, control) + data


def fragments(context_id: int, command: bool, data: bytes, max_length: int) -> Iterator[bytes]:
    """``data`` as P-DATA-TF PDUs of one PDV each, none longer than ``max_length`` (the peer's
    Maximum Length, 0 = unlimited), the last fragment flagged (PS3.8 9.3.5, E.2)."""
    room = max_length - PDV_HEADER.size if max_length else max(len(data), 1)
    if room <= 0:
        raise PduError(f"maximum length {max_length} leaves no room for data")
    base = COMMAND if command else 0
    for start in range(0, max(len(data), 1), room):
        chunk = data[start : start + room]
        last = LAST if start + room >= len(data) else 0
        yield pdu(P_DATA_TF, pdv(context_id, base | last, chunk))


#: How many bytes :func:`gathered` joins into one write.
GATHER = 256 * 1024
#: The second write of :func:`gathered` (the first is one message).
FIRST_GATHER = 2048


def gathered(messages: Iterable[Sequence[bytes]], size: int = GATHER) -> Iterator[bytes]:
    """The PDUs of ``messages`` (each a sequence of PDUs) joined into writes, each message
    whole: the first message alone, so the peer starts reading while the next are made, then
    writes of at least FIRST_GATHER bytes, each next at least twice the last, up to ``size``
    (the last write may be shorter): a long list of responses leaves in a few large writes
    instead of two per message. The last message (a C-FIND's final response) never leaves
    alone: it goes with the one before it, so one match and its final response are one write
    (one packet through a WAN, rather than two each waiting on its own)."""
    held: list[bytes] = []
    count, limit = 0, 0
    waiting: list[Sequence[bytes]] = []  # the newest two, placed once a third comes
    for pdus in messages:
        waiting.append(pdus)
        if len(waiting) < 3:
            continue
        first = waiting.pop(0)
        held += first
        count += sum(map(len, first))
        if count >= limit:
            yield b"".join(held)
            held, count, limit = [], 0, min(size, max(2 * limit, FIRST_GATHER))
    for pdus in waiting:
        held += pdus
    if held:
        yield b"".join(held)
