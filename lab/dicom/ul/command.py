"""DIMSE command sets (PS3.7 9.3, 9.1.1, 9.1.5, E) encoded and decoded by hand.

A command set is always Implicit VR Little Endian (PS3.7 6.3.1), its elements in group 0000,
led by the Command Group Length. The few elements the store path uses are listed here with
their VRs (PS3.7 Annex E), so no data dictionary is needed.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping

from lab.dicom.ul.pdu import PduError

AFFECTED_SOP_CLASS = 0x0002
REQUESTED_SOP_CLASS = 0x0003
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
RESPONDED_TO = 0x0120  # Message ID Being Responded To
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE = 0x1000
REQUESTED_SOP_INSTANCE = 0x1001
EVENT_TYPE_ID, ACTION_TYPE_ID = 0x1002, 0x1008
REMAINING, COMPLETED, FAILED, WARNING = 0x1020, 0x1021, 0x1022, 0x1023  # sub-operations
MOVE_ORIGINATOR_AE = 0x1030
MOVE_ORIGINATOR_ID = 0x1031

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
#: A response's Command Field is its request's with bit 15 set (PS3.7 E.1).
RESPONSE = 0x8000
#: General statuses (PS3.7 C): the request is one this end does not perform; a request it
#: cannot process (here: refused UIDs).
UNRECOGNIZED_OPERATION = 0x0211
MISTYPED_ARGUMENT = 0x0212
SOP_CLASS_NOT_SUPPORTED = 0x0122
PROCESSING_FAILURE = 0x0110
NO_DATA_SET = 0x0101  # Command Data Set Type: no dataset follows (PS3.7 E.1)
VERIFICATION = "1.2.840.10008.1.1"

#: VR of each element this module may encode: US (2 bytes), UL, AE (space padded), LO (space
#: padded), otherwise UI (NUL padded).
_US = frozenset({0x0100, 0x0110, 0x0120, 0x0700, 0x0800, 0x0900, 0x1002, 0x1008, 0x1020,
                 0x1021, 0x1022, 0x1023, 0x1031})
_SPACE_PADDED = frozenset({0x0600, 0x0902, 0x1030})
_ELEMENT = struct.Struct("<HHL")


def encode(fields: Mapping[int, int | str]) -> bytes:
    """A command set from element numbers of group 0000 (without the group length) and values:
    ints for US elements, text for the others."""
    body = bytearray()
    for element in sorted(fields):
        value = fields[element]
        if element in _US:
            raw = struct.pack("<H", int(value))
        else:
            raw = str(value).encode("ascii")
            if len(raw) % 2:
                raw += b" " if element in _SPACE_PADDED else b"\0"
        body += _ELEMENT.pack(0, element, len(raw)) + raw
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<L", len(body)) + bytes(body)


def decode(data: bytes | bytearray | memoryview) -> dict[int, bytes]:
    """A command set's elements (element number: raw value); PduError if malformed."""
    fields: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if pos + 8 > end:
            raise PduError("truncated command element header")
        group, element, length = _ELEMENT.unpack_from(data, pos)
        if group != 0:
            raise PduError(f"element ({group:04X},{element:04X}) in a command set")
        if pos + 8 + length > end:
            raise PduError(f"command element (0000,{element:04X}) is truncated")
        fields[element] = bytes(data[pos + 8 : pos + 8 + length])
        pos += 8 + length
    for needed in (COMMAND_FIELD, DATA_SET_TYPE):
        if len(fields.get(needed, b"")) != 2:
            raise PduError(f"command set lacks (0000,{needed:04X})")
    group_length = fields.get(0x0000)
    if group_length is not None and (
            len(group_length) != 4
            or struct.unpack("<L", group_length)[0] != end - _ELEMENT.size - 4):
        raise PduError("Command Group Length (0000,0000) disagrees with the command set's "
                       "length (PS3.7 E.1)")
    return fields


def us(fields: Mapping[int, bytes], element: int, default: int | None = None) -> int:
    """A US element's value."""
    raw = fields.get(element)
    if raw is None or len(raw) != 2:
        if default is not None:
            return default
        raise PduError(f"command element (0000,{element:04X}) missing or not US")
    return int(struct.unpack("<H", raw)[0])


def text(fields: Mapping[int, bytes], element: int) -> str:
    """A UI/AE/LO element's value, padding removed ('' if absent)."""
    return fields.get(element, b"").decode("ascii", "replace").rstrip("\0 ").lstrip(" ")


def uid(fields: Mapping[int, bytes], element: int) -> str | None:
    """A UI element's value if it is a valid UID (PS3.5 9.1: digits and dots, at most 64
    characters, no empty component), else None: a value that will be echoed in a response or
    used as a file name must be one."""
    value = fields.get(element, b"").rstrip(b"\0 ")
    if not 0 < len(value) <= 64 or value.translate(None, b"0123456789."):
        return None
    if value.startswith(b".") or value.endswith(b".") or b".." in value:
        return None
    return value.decode("ascii")


def ae_title(fields: Mapping[int, bytes], element: int) -> str | None:
    """An AE element's value if it is a valid AE title (PS3.5 6.2: 1 to 16 characters of the
    default repertoire, no control characters, no backslash), else None."""
    value = fields.get(element, b"").strip(b" ")
    if not 0 < len(value) <= 16 or any(b < 0x20 or b > 0x7E or b == 0x5C for b in value):
        return None
    return value.decode("ascii")


def has_data_set(fields: Mapping[int, bytes]) -> bool:
    """Whether a dataset follows the command (PS3.7 E.1: any value but 0x0101)."""
    return us(fields, DATA_SET_TYPE) != NO_DATA_SET


def store_rq(message_id: int, sop_class: str, sop_instance: str, priority: int = 0) -> bytes:
    """C-STORE-RQ (PS3.7 9.3.1.1)."""
    return encode({AFFECTED_SOP_CLASS: sop_class, COMMAND_FIELD: C_STORE_RQ,
                   MESSAGE_ID: message_id, PRIORITY: priority, DATA_SET_TYPE: 0x0000,
                   AFFECTED_SOP_INSTANCE: sop_instance})


def store_rsp(message_id: int, sop_class: str, sop_instance: str, status: int) -> bytes:
    """C-STORE-RSP (PS3.7 9.3.1.2)."""
    return encode({AFFECTED_SOP_CLASS: sop_class, COMMAND_FIELD: C_STORE_RSP,
                   RESPONDED_TO: message_id, DATA_SET_TYPE: NO_DATA_SET, STATUS: status,
                   AFFECTED_SOP_INSTANCE: sop_instance})


def echo_rq(message_id: int) -> bytes:
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""
    return encode({AFFECTED_SOP_CLASS: VERIFICATION, COMMAND_FIELD: C_ECHO_RQ,
                   MESSAGE_ID: message_id, DATA_SET_TYPE: NO_DATA_SET})


@functools.lru_cache(maxsize=64)
def response(field: int, message_id: int, status: int, sop_class: str = "",
             sop_instance: str = "", data_set: bool = False, **counts: int) -> bytes:
    """A response to request ``field`` (PS3.7 9.3, E.1): Message ID Being Responded To,
    Status, the Affected SOP Class and Instance if known (valid UIDs only), and sub-operation
    counts (``remaining``, ``completed``, ``failed``, ``warning``) for C-MOVE (PS3.7 9.3.4.2).
    Remembered: the pending responses of a C-FIND are all the same command, one per match."""
    fields: dict[int, int | str] = {COMMAND_FIELD: field | RESPONSE, RESPONDED_TO: message_id,
                                    DATA_SET_TYPE: 0x0000 if data_set else NO_DATA_SET,
                                    STATUS: status}
    if sop_class:
        fields[AFFECTED_SOP_CLASS] = sop_class
    if sop_instance:
        fields[AFFECTED_SOP_INSTANCE] = sop_instance
    elements = {"remaining": REMAINING, "completed": COMPLETED, "failed": FAILED,
                "warning": WARNING}
    for name, value in counts.items():
        fields[elements[name]] = value
    return encode(fields)


def echo_rsp(message_id: int, status: int = 0) -> bytes:
    """C-ECHO-RSP (PS3.7 9.3.5.2)."""
    return encode({AFFECTED_SOP_CLASS: VERIFICATION, COMMAND_FIELD: C_ECHO_RSP,
                   RESPONDED_TO: message_id, DATA_SET_TYPE: NO_DATA_SET, STATUS: status})


def echo_status(fields: Mapping[int, bytes], abstract: str) -> int:
    """The status of a C-ECHO (PS3.7 9.3.5.2, C): success, or a mistyped argument when its
    Affected SOP Class UID is not a UID, or SOP class not supported when it is another one."""
    if AFFECTED_SOP_CLASS not in fields:
        return 0x0000
    sop_class = uid(fields, AFFECTED_SOP_CLASS)
    if sop_class is None:
        return MISTYPED_ARGUMENT
    return 0x0000 if sop_class == VERIFICATION == abstract else SOP_CLASS_NOT_SUPPORTED
