"""Raw DICOM on the wire for the archive attack tests: PDUs (PS3.8 9.3), command sets (PS3.7 E,
implicit VR little endian) and datasets (PS3.5 7.1.2, explicit VR little endian), built byte by
byte, and what the archive answers, read with a deadline.

They are built here, apart from the lab's own encoder (lab.dicom.ul.pdu), which is part of what is
under test: an attack must be able to say anything, wrong lengths and wrong VRs included.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

ARCHIVE_AE = "PACS"
HOST = "127.0.0.1"

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07
COMMAND, LAST = 0x01, 0x02  # PDV message control header (PS3.8 E.2)

#: Contract statuses of a refused C-STORE (PS3.4 B.2.3): 0xA7xx, 0xA9xx, 0xCxxx.
FAILURE_PREFIXES = (0xA7, 0xA9, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9,
                    0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF)


#: PS3.7 Annex C's general failure statuses (a request the SCP cannot take as it stands).
GENERAL_FAILURES = frozenset({0x0105, 0x0106, 0x0110, 0x0112, 0x0117, 0x0118, 0x0119, 0x0122,
                              0x0124, 0x0210, 0x0211, 0x0212, 0x0213})


def is_failure(status: int) -> bool:
    return status >> 8 in FAILURE_PREFIXES


def is_command_failure(status: int) -> bool:
    """A failure status for a malformed command: a service's failure or a general one."""
    return is_failure(status) or status in GENERAL_FAILURES


# --- raw PDUs (PS3.8 9.3) --------------------------------------------------------------------


def pdu(kind: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved, 32-bit length (``length`` overrides the true one), body."""
    return struct.pack(">BxL", kind, len(body) if length is None else length) + body


def item(kind: int, value: bytes, length: int | None = None) -> bytes:
    """An item or sub-item: type, reserved, 16-bit length, value."""
    return struct.pack(">BxH", kind, len(value) if length is None else length) + value


def ae_field(title: bytes | str) -> bytes:
    raw = title.encode() if isinstance(title, str) else title
    return raw.ljust(16)[:16]


@dataclass(frozen=True)
class Context:
    """A proposed presentation context."""

    id: int
    abstract: bytes | str
    syntaxes: tuple[bytes | str, ...]


def _b(text: bytes | str) -> bytes:
    return text.encode() if isinstance(text, str) else text


def context_item(cx: Context) -> bytes:
    sub = item(0x30, _b(cx.abstract)) + b"".join(item(0x40, _b(ts)) for ts in cx.syntaxes)
    return item(0x20, bytes((cx.id, 0, 0, 0)) + sub)


def user_item(max_length: int = 16384, extra: bytes = b"", class_uid: bytes = b"1.2.826.0.1.99",
              version: bytes = b"ATTACK") -> bytes:
    """User Information: Maximum Length (PS3.8 D.1), Implementation Class UID and Version Name
    (PS3.7 D.3.3.2), then ``extra`` sub-items as given."""
    return item(0x50, item(0x51, struct.pack(">L", max_length)) + item(0x52, class_uid)
                + item(0x55, version) + extra)


DEFAULT_CONTEXTS = (Context(1, VERIFICATION, (IMPLICIT,)),
                    Context(3, CT_IMAGE, (EXPLICIT,)),  # datasets are built explicit VR LE
                    Context(5, STUDY_FIND, (IMPLICIT,)))


def associate_body(contexts: Sequence[Context] = DEFAULT_CONTEXTS, *, called: bytes | str =
                   ARCHIVE_AE, calling: bytes | str = "ATTACKER", version: int = 1,
                   app_context: bytes | str = APPLICATION_CONTEXT, user: bytes | None = None,
                   ) -> bytes:
    """The body of an A-ASSOCIATE-RQ (PS3.8 9.3.2)."""
    fixed = struct.pack(">H2x16s16s32x", version, ae_field(called), ae_field(calling))
    return (fixed + item(0x10, _b(app_context)) + b"".join(map(context_item, contexts))
            + (user_item() if user is None else user))


def associate_rq(contexts: Sequence[Context] = DEFAULT_CONTEXTS, **kw: object) -> bytes:
    return pdu(A_ASSOCIATE_RQ, associate_body(contexts, **kw))  # type: ignore[arg-type]


ABORT = pdu(A_ABORT, bytes(4))
RELEASE_RQ = pdu(A_RELEASE_RQ, bytes(4))


def pdv(cid: int, control: int, data: bytes, length: int | None = None) -> bytes:
    """A PDV item (PS3.8 9.3.5.1): its length counts the context id and control bytes."""
    return struct.pack(">LBB", len(data) + 2 if length is None else length, cid, control) + data


def p_data(*pdvs: bytes) -> bytes:
    return pdu(P_DATA_TF, b"".join(pdvs))


# --- command sets (PS3.7 9.3, E) and datasets (PS3.5 7.1.2) ------------------------------------


def uid(text: str | bytes) -> bytes:
    raw = _b(text)
    return raw + b"\0" * (len(raw) % 2)


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def command_set(elements: Sequence[tuple[int, bytes]], group_length: int | None = None) -> bytes:
    """Group 0000 in implicit VR little endian, led by its group length (element, raw value)."""
    body = b"".join(struct.pack("<HHL", 0, e, len(v)) + v for e, v in elements)
    glen = len(body) if group_length is None else group_length
    return struct.pack("<HHLL", 0, 0, 4, glen) + body


def echo_rq(message_id: int = 1, sop_class: bytes | str = VERIFICATION) -> bytes:
    return command_set([(0x0002, uid(sop_class)), (0x0100, us(0x0030)), (0x0110, us(message_id)),
                        (0x0800, us(0x0101))])


def store_rq(sop_instance: bytes | str, message_id: int = 1,
             sop_class: bytes | str = CT_IMAGE) -> bytes:
    return command_set([(0x0002, uid(sop_class)), (0x0100, us(0x0001)), (0x0110, us(message_id)),
                        (0x0700, us(0)), (0x0800, us(0)), (0x1000, uid(sop_instance))])


def find_rq(message_id: int = 1) -> bytes:
    return command_set([(0x0002, uid(STUDY_FIND)), (0x0100, us(0x0020)),
                        (0x0110, us(message_id)), (0x0700, us(0)), (0x0800, us(0))])


_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


def element(tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """One explicit VR little endian element (``length`` overrides the true one)."""
    n = len(value) if length is None else length
    if vr in _LONG:
        return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr.encode(), n) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), n) + value


def _even(raw: bytes, pad: bytes = b" ") -> bytes:
    return raw + pad * (len(raw) % 2)


#: Element: (VR, value) of a small CT image; the tags the archive indexes among them.
PIXELS = bytes(range(128))


def ct_elements(sop_instance: str, study: str, series: str, patient_id: str,
                ) -> dict[int, tuple[str, bytes]]:
    return {
        0x00080016: ("UI", uid(CT_IMAGE)),
        0x00080018: ("UI", uid(sop_instance)),
        0x00080020: ("DA", b"20070115"),
        0x00080030: ("TM", b"101500"),
        0x00080050: ("SH", _even(b"ACC1")),
        0x00080060: ("CS", b"CT"),
        0x00080090: ("PN", _even(b"House^Gregory")),
        0x00081030: ("LO", _even(b"CT HEAD")),
        0x00100010: ("PN", _even(b"Doe^John")),
        0x00100020: ("LO", _even(patient_id.encode())),
        0x00100030: ("DA", b"19600101"),
        0x00100040: ("CS", b"M "),
        0x0020000D: ("UI", uid(study)),
        0x0020000E: ("UI", uid(series)),
        0x00200010: ("SH", b"1 "),
        0x00200011: ("IS", b"1 "),
        0x00200013: ("IS", b"1 "),
        0x00280002: ("US", us(1)),
        0x00280004: ("CS", b"MONOCHROME2 "),
        0x00280010: ("US", us(8)),
        0x00280011: ("US", us(8)),
        0x00280100: ("US", us(16)),
        0x00280101: ("US", us(12)),
        0x00280102: ("US", us(11)),
        0x00280103: ("US", us(0)),
        0x7FE00010: ("OW", PIXELS),
    }


def encode_dataset(elements: dict[int, tuple[str, bytes]],
                   raw: dict[int, bytes] | None = None) -> bytes:
    """Explicit VR little endian, tags ascending; ``raw`` replaces whole elements by bytes."""
    raw = raw or {}
    return b"".join(raw[t] if t in raw else element(t, *elements[t])
                    for t in sorted({*elements, *raw}))


# --- reading what the archive says -----------------------------------------------------------


class Closed(Exception):
    """The archive closed (or reset) the connection; ``after`` seconds into the wait."""

    def __init__(self, after: float, data: bytes = b"") -> None:
        super().__init__(f"closed after {after:.2f} s")
        self.after, self.data = after, data


def recv_exact(sock: socket.socket, n: int, deadline: float, started: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer in {deadline - started:.1f} s ({len(buf)} of {n} bytes)")
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 16))
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        except TimeoutError:
            continue
        if not chunk:
            raise Closed(time.monotonic() - started, bytes(buf))
        buf += chunk
    return bytes(buf)


def read_pdu(sock: socket.socket, seconds: float) -> tuple[int, bytes]:
    """The next PDU the archive sends: (type, body); Closed, or TimeoutError after ``seconds``."""
    started = time.monotonic()
    deadline = started + seconds
    kind, length = struct.unpack(">BxL", recv_exact(sock, 6, deadline, started))
    if length > 1 << 24:
        raise AssertionError(f"the archive sent a PDU type 0x{kind:02X} of {length} bytes")
    return kind, recv_exact(sock, length, deadline, started)


@dataclass
class Outcome:
    """How a hostile exchange ended: the first PDU the archive sent (type and body), or closed
    without one, or nothing at all until our deadline (``silent``); after how long."""

    kind: int | None
    body: bytes
    seconds: float
    silent: bool = False

    def __str__(self) -> str:
        if self.silent:
            return f"silence for {self.seconds:.1f} s"
        if self.kind is None:
            return f"closed without a PDU after {self.seconds:.2f} s"
        return f"PDU 0x{self.kind:02X} {self.body[:16].hex()} after {self.seconds:.2f} s"


def outcome(sock: socket.socket, seconds: float) -> Outcome:
    started = time.monotonic()
    try:
        kind, body = read_pdu(sock, seconds)
    except Closed as exc:
        return Outcome(None, exc.data, exc.after)
    except TimeoutError:
        return Outcome(None, b"", time.monotonic() - started, silent=True)
    return Outcome(kind, body, time.monotonic() - started)


def accepted_contexts(ac_body: bytes) -> tuple[dict[int, str], int]:
    """From an A-ASSOCIATE-AC body: accepted context id -> transfer syntax, and the Maximum
    Length the archive receives (0 if it gave none)."""
    pos, accepted, max_length = 68, {}, 0
    while pos + 4 <= len(ac_body):
        kind, n = struct.unpack_from(">BxH", ac_body, pos)
        value = ac_body[pos + 4 : pos + 4 + n]
        if kind == 0x21 and len(value) >= 8 and value[2] == 0:
            accepted[value[0]] = value[8:].decode("ascii", "replace").rstrip("\0 ")
        elif kind == 0x50:
            sub = 0
            while sub + 4 <= len(value):
                skind, sn = struct.unpack_from(">BxH", value, sub)
                if skind == 0x51 and sn == 4:
                    max_length = struct.unpack_from(">L", value, sub + 4)[0]
                sub += 4 + sn
        pos += 4 + n
    return accepted, max_length


def command_fields(data: bytes) -> dict[int, bytes]:
    """A command set's elements (implicit VR little endian, group 0000)."""
    out, pos = {}, 0
    while pos + 8 <= len(data):
        _, elem, n = struct.unpack_from("<HHL", data, pos)
        out[elem] = data[pos + 8 : pos + 8 + n]
        pos += 8 + n
    return out


@dataclass
class Association:
    """A raw association with the archive, established (A-ASSOCIATE-AC received)."""

    sock: socket.socket
    accepted: dict[int, str]
    max_length: int

    def cid(self, wanted: int) -> int:
        assert wanted in self.accepted, f"context {wanted} not accepted: {self.accepted}"
        return wanted

    def send_message(self, cid: int, command: bytes, dataset: bytes | None = None) -> None:
        """A command and its dataset as P-DATA-TF PDUs no longer than the archive receives."""
        room = (self.max_length or 1 << 20) - 6
        for data, base in ((command, COMMAND), (dataset, 0)):
            if data is None:
                continue
            for start in range(0, max(len(data), 1), room):
                last = LAST if start + room >= len(data) else 0
                self.sock.sendall(p_data(pdv(cid, base | last, data[start : start + room])))

    def response(self, seconds: float) -> dict[int, bytes]:
        """The next DIMSE response's command set; AssertionError on another PDU."""
        data = b""
        while True:
            kind, body = read_pdu(self.sock, seconds)
            assert kind == P_DATA_TF, f"expected P-DATA-TF, got PDU 0x{kind:02X} {body[:8].hex()}"
            pos = 0
            while pos + 6 <= len(body):
                n, _, control = struct.unpack_from(">LBB", body, pos)
                data += body[pos + 6 : pos + 4 + n]
                pos += 4 + n
                if control & COMMAND and control & LAST:
                    return command_fields(data)

    def close(self, release: bool = True) -> None:
        with contextlib.suppress(OSError, TimeoutError, Closed):
            if release:
                self.sock.sendall(RELEASE_RQ)
                read_pdu(self.sock, 2.0)
            else:
                self.sock.sendall(ABORT)
        self.sock.close()


def connect(port: int, seconds: float = 5.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=seconds)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def associate(port: int, contexts: Sequence[Context] = DEFAULT_CONTEXTS,
              seconds: float = 5.0, **kw: object) -> Association:
    sock = connect(port, seconds)
    sock.sendall(associate_rq(contexts, **kw))
    kind, body = read_pdu(sock, seconds)
    if kind != A_ASSOCIATE_AC:
        sock.close()
        raise AssertionError(f"association not accepted: PDU 0x{kind:02X} {body[:8].hex()}")
    accepted, max_length = accepted_contexts(body)
    return Association(sock, accepted, max_length)


def status_of(fields: dict[int, bytes]) -> int:
    raw = fields.get(0x0900)
    assert raw is not None and len(raw) == 2, f"response without a Status: {fields}"
    return int(struct.unpack("<H", raw)[0])
