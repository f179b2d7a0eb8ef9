"""The SCU's lean path: C-ECHO and C-STORE over an association of its own (PS3.8, PS3.7).

A stored file is sent as it is: its File Meta Information (PS3.10 7.1) is read by hand for the
SOP Class, SOP Instance and Transfer Syntax UIDs, and the dataset after it goes from the file
to the socket in P-DATA-TF PDUs no longer than the peer accepts (PS3.8 D.1), never decoded.
Each file needs an accepted presentation context with exactly its own transfer syntax.

Imports the standard library and the lab's PDU and command codecs only, so that ``python -m
lab.dicom.scu store`` spends its time on the network, not on imports.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from io import BufferedReader

from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.link import Link, LinkClosed
from lab.dicom.ul.pdu import PduError
from lab.dicom.ul.records import Record
from lab.dicom.ul.tlsopts import negotiated
from lab.errors import LabError
from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

TYPE_CHECKING = False  # not typing's: see lab.dicom.ul.records
if TYPE_CHECKING:
    import ssl

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_REJECT_REASONS = {(1, 1): "no reason given", (1, 2): "application context not supported",
                   (1, 3): "calling AE title not recognized",
                   (1, 7): "called AE title not recognized", (2, 2): "protocol version not "
                   "supported", (3, 1): "temporary congestion", (3, 2): "local limit exceeded"}


class AssociationError(PduError):
    """The association could not be established, or broke."""


class PeerReleased(AssociationError):
    """The peer asked to release the association (A-RELEASE-RQ) where a message was awaited."""


class ScuError(LabError):
    """The operation could not be carried out (the SCU reports it as JSON with ok=false)."""


class Part10(Record):
    """What sending a Part-10 file needs: its UIDs and where its dataset starts."""

    path: str | os.PathLike[str]
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    offset: int
    size: int


def read_part10(path: str | os.PathLike[str]) -> Part10:
    """The File Meta Information of a Part-10 file (PS3.10 7.1), read without a DICOM library;
    ValueError naming the file if it is not one."""
    with open(path, "rb") as f:
        head = f.read(144)
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != b"\2\0\0\0UL":
            raise ValueError(f"{path}: not a DICOM Part-10 file (PS3.10 7.1)")
        end = 144 + struct.unpack_from("<L", head, 140)[0]
        meta = f.read(end - 144)
        size = f.seek(0, 2)
    if len(meta) != end - 144:
        raise ValueError(f"{path}: File Meta Information is truncated")
    uids: dict[int, str] = {}
    pos = 0
    while pos + 8 <= len(meta):
        element, vr = struct.unpack_from("<2xH", meta, pos)[0], meta[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length, pos = struct.unpack_from("<L", meta, pos + 8)[0], pos + 12
        else:
            length, pos = struct.unpack_from("<H", meta, pos + 6)[0], pos + 8
        uids[element] = meta[pos : pos + length].decode("ascii", "replace").rstrip("\0 ")
        pos += length
    if pos != len(meta) or not all(uids.get(e) for e in (0x0002, 0x0003, 0x0010)):
        raise ValueError(f"{path}: File Meta Information is malformed or lacks a UID")
    return Part10(path, uids[0x0002], uids[0x0003], uids[0x0010], end, size)


class Requestor:
    """One association requested by this end (the SCU), over a plain or TLS socket."""

    def __init__(self, link: Link, ac: pdu.Associate, proposed: Sequence[pdu.Proposed],
                 window: int = 1) -> None:
        self.link = link
        granted = pdu.window(ac)
        #: Requests that may be outstanding at once (0: no limit): what the acceptor granted
        #: of ``window``, 1 if it did not answer the sub-item (PS3.7 D.3.3.3).
        self.window = 1 if granted is None else min(granted[0] or window, window or granted[0])
        self.peer_max = ac.max_length
        self.accepted = {r.id: r.transfer_syntax for r in ac.results if r.result == 0}
        self.abstract = {p.id: p.abstract_syntax for p in proposed}
        self.released = False
        #: handshake_seconds, tls_version, cipher (None without TLS): set by open_association.
        self.tls: dict[str, object] = {}

    @classmethod
    def connect(cls, sock: socket.socket, *, called: str, calling: str,
                contexts: Sequence[tuple[str, Sequence[str]]], max_pdu: int,
                timeout: float, window: int = 1, items: tuple[bytes, ...] = ()) -> Requestor:
        """A-ASSOCIATE over a connected socket, proposing ``contexts`` (abstract syntax,
        transfer syntaxes) as ids 1, 3, 5, ... (PS3.8 9.3.2.2) and, unless ``window`` is 1,
        an Asynchronous Operations Window of ``window`` operations invoked (PS3.7 D.3.3.3);
        ``items``: further user information sub-items (role selection, PS3.7 D.3.3.4)."""
        if not 0 < len(contexts) <= 128:
            raise AssociationError(f"{len(contexts)} presentation contexts: one association "
                                   "allows 1 to 128 (PS3.8 9.3.2.2)")
        proposed = [pdu.Proposed(2 * i + 1, a, tuple(ts)) for i, (a, ts) in enumerate(contexts)]
        rq = pdu.Associate(called, calling, contexts=tuple(proposed), max_length=max_pdu,
                           implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                           implementation_version_name=IMPLEMENTATION_VERSION_NAME,
                           other_user_items=items + (() if window == 1 else
                                                     (pdu.window_item(window, 1),)))
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(sock, timeout)
        link.send(pdu.encode_associate(pdu.A_ASSOCIATE_RQ, rq))
        kind, length = link.header()
        body = link.body(length)
        if kind == pdu.A_ASSOCIATE_RJ and len(body) == 4:
            link.close()
            why = _REJECT_REASONS.get((body[2], body[3]), f"source {body[2]}, reason {body[3]}")
            raise AssociationError(f"association rejected by {called}: {why}")
        if kind != pdu.A_ASSOCIATE_AC:
            link.close()
            raise AssociationError(f"association with {called} failed: PDU type 0x{kind:02X}")
        return cls(link, pdu.decode_associate(kind, body), proposed, window)

    def context_for(self, abstract: str, transfer_syntax: str) -> int | None:
        """An accepted presentation context for this pair, if any."""
        for cid, ts in self.accepted.items():
            if ts == transfer_syntax and self.abstract.get(cid) == abstract:
                return cid
        return None

    def _cap(self, max_pdu: int) -> int:
        """The longest P-DATA-TF body to send: the peer's maximum, lowered to ours if set."""
        if max_pdu and (not self.peer_max or max_pdu < self.peer_max):
            return max_pdu
        return self.peer_max

    def _send_command(self, cid: int, command: bytes, max_pdu: int, more: bool) -> None:
        for piece in pdu.fragments(cid, True, command, self._cap(max_pdu)):
            self.link.send(piece, more=more)

    def _response(self) -> dict[int, bytes]:
        """The next DIMSE response's command set (a dataset with it is read and dropped)."""
        command = bytearray()
        while True:
            kind, length = self.link.header()
            if kind != pdu.P_DATA_TF:
                self.link.body(length)
                raise AssociationError(_unexpected(kind))
            while length:
                n, _, control = self.link.pdv_header()
                data = self.link.body(n)
                length -= n + pdu.PDV_HEADER.size
                if control & pdu.COMMAND:
                    command += data
                    if control & pdu.LAST:
                        fields = cmd.decode(command)
                        if not cmd.has_data_set(fields):
                            return fields
                elif control & pdu.LAST:
                    return cmd.decode(command)

    def store(self, obj: Part10, message_id: int, max_pdu: int) -> dict[int, bytes]:
        """C-STORE one file; the response's command set."""
        self._send_store(obj, message_id, max_pdu)
        return self._response()

    def store_status(self, obj: Part10, message_id: int, max_pdu: int) -> int:
        """C-STORE one file; the response's status, or -1 if no context fits the file."""
        if self.context_for(obj.sop_class, obj.transfer_syntax) is None:
            return -1
        return cmd.us(self.store(obj, message_id, max_pdu), cmd.STATUS)

    def store_all(self, objects: Sequence[Part10], max_pdu: int) -> list[int]:
        """C-STORE each file (:meth:`store_each`); the statuses in the order of ``objects``
        (-1 for a file no accepted context fits)."""
        statuses = [-1] * len(objects)
        for index, status in self.store_each(objects, max_pdu):
            statuses[index] = status
        return statuses

    def store_each(self, objects: Sequence[Part10], max_pdu: int,
                   ) -> Iterator[tuple[int, int]]:
        """C-STORE each file, with up to :attr:`window` requests outstanding (PS3.7 D.3.3.3):
        the next object goes out while the peer stores the one before, so neither end waits
        for the other between objects. Yields (index in ``objects``, status) as each response
        arrives (-1 at once for a file no accepted context fits). Message IDs are 1, 2, ...
        (modulo 65535), each response matched to its request by Message ID Being Responded To
        (PS3.7 9.3.1.2)."""
        outstanding: dict[int, int] = {}  # message id: index in objects
        for index, obj in enumerate(objects):
            if self.context_for(obj.sop_class, obj.transfer_syntax) is None:
                yield index, -1
                continue
            while self.window and len(outstanding) >= self.window:
                yield self._collect(outstanding)
            message_id = index % 65535 + 1
            self._send_store(obj, message_id, max_pdu)
            outstanding[message_id] = index
        while outstanding:
            yield self._collect(outstanding)

    def _collect(self, outstanding: dict[int, int]) -> tuple[int, int]:
        fields = self._response()
        answered = cmd.us(fields, cmd.RESPONDED_TO)
        if answered not in outstanding:
            raise AssociationError(f"a response to message {answered}, which is not outstanding")
        return outstanding.pop(answered), cmd.us(fields, cmd.STATUS)

    def _send_store(self, obj: Part10, message_id: int, max_pdu: int) -> None:
        """A C-STORE-RQ and its dataset, straight from the file: the command's PDUs and the
        first P-DATA-TF header ride in front of the dataset's first bytes (one TLS record and
        system call, or one corked TCP segment, rather than one each)."""
        cid = self.context_for(obj.sop_class, obj.transfer_syntax)
        if cid is None:
            raise AssociationError(f"{obj.path}: no accepted presentation context for "
                                   f"{obj.sop_class} in {obj.transfer_syntax}")
        command = b"".join(pdu.fragments(cid, True, cmd.store_rq(
            message_id, obj.sop_class, obj.sop_instance), self._cap(max_pdu)))
        with open(obj.path, "rb") as f:
            self._send_dataset(f, cid, obj.offset, obj.size - obj.offset, max_pdu, command)

    def _send_dataset(self, f: BufferedReader, cid: int, offset: int, count: int,
                      max_pdu: int, prefix: bytes = b"") -> None:
        """The dataset in P-DATA-TF PDUs of one PDV each (PS3.8 9.3.5), no longer than the
        peer accepts; ``prefix`` (whole PDUs) is sent before the first."""
        cap = self._cap(max_pdu)
        room = cap - pdu.PDV_HEADER.size if cap else max(count, 1)
        if room <= 0:
            raise AssociationError(f"maximum length {cap} leaves no room for data")
        sent = 0
        while True:
            n = min(room, count - sent)
            last = sent + n >= count
            header = pdu.HEADER.pack(pdu.P_DATA_TF, n + pdu.PDV_HEADER.size)
            header += pdu.PDV_HEADER.pack(n + 2, cid, pdu.LAST if last else 0)
            self.link.send_file(f, offset + sent, n, prefix + header)
            prefix = b""
            sent += n
            if last:
                return

    def send_message(self, cid: int, command: bytes, dataset: bytes | None,
                     max_pdu: int = 0) -> None:
        """A DIMSE message: its command set, then its dataset if any (PS3.7 6.3, PS3.8 9.3.5)."""
        self._send_command(cid, command, max_pdu, more=dataset is not None)
        if dataset is not None:
            for piece in pdu.fragments(cid, False, dataset, self._cap(max_pdu)):
                self.link.send(piece)

    def message(self, limit: int) -> tuple[int, dict[int, bytes], bytes | None]:
        """The next DIMSE message from the peer, request or response: its presentation
        context, command set and dataset (None without one; AssociationError above ``limit``
        bytes)."""
        command, data = bytearray(), bytearray()
        fields: dict[int, bytes] | None = None
        while True:
            kind, length = self.link.header()
            if kind != pdu.P_DATA_TF:
                self.link.body(length)
                broken = PeerReleased if kind == pdu.A_RELEASE_RQ else AssociationError
                raise broken(_unexpected(kind))
            while length:
                n, cid, control = self.link.pdv_header()
                length -= n + pdu.PDV_HEADER.size
                if len(command) + len(data) + n > limit + (1 << 16):
                    raise AssociationError(f"a message longer than {limit} bytes")
                chunk = self.link.body(n, limit + (1 << 16))
                if control & pdu.COMMAND:
                    command += chunk
                    if control & pdu.LAST:
                        fields = cmd.decode(command)
                        if not cmd.has_data_set(fields):
                            return cid, fields, None
                elif fields is None:
                    raise AssociationError("a dataset without its command")
                else:
                    data += chunk
                    if control & pdu.LAST:
                        return cid, fields, bytes(data)

    def echo(self, message_id: int = 1) -> int:
        """C-ECHO; the response's status."""
        cid = next((c for c, a in self.abstract.items()
                    if a == cmd.VERIFICATION and c in self.accepted), None)
        if cid is None:
            raise AssociationError("Verification was not accepted")
        self._send_command(cid, cmd.echo_rq(message_id), 0, more=False)
        return cmd.us(self._response(), cmd.STATUS)

    def release(self) -> None:
        """A-RELEASE (PS3.8 7.2), then close."""
        try:
            self.link.send(pdu.RELEASE_RQ)
            while True:
                kind, length = self.link.header()
                self.link.body(length)
                if kind in (pdu.A_RELEASE_RP, pdu.A_ABORT):
                    break
        except (LinkClosed, TimeoutError):
            pass
        finally:
            self.released = True
            self.link.close()

    def abort(self) -> None:
        """A-ABORT (service user), then close."""
        with contextlib.suppress(PduError, OSError):
            self.link.send(pdu.encode_abort(0, 0))
        self.released = True
        self.link.close()


def _unexpected(kind: int) -> str:
    what = {pdu.A_ABORT: "aborted by the peer", pdu.A_RELEASE_RQ: "released by the peer"}
    return what.get(kind, f"unexpected PDU type 0x{kind:02X}")


def open_association(host: str, port: int, *, called: str, calling: str,
                     contexts: Sequence[tuple[str, Sequence[str]]], max_pdu: int,
                     timeout: float, tls: ssl.SSLContext | None = None, window: int = 1,
                     items: tuple[bytes, ...] = ()) -> tuple[Requestor, float]:
    """Connect (over TLS with ``tls``, checking that ``host`` is in the server's certificate)
    and associate (``window``: see :meth:`Requestor.connect`); the association and the
    seconds it took (TCP connect and TLS handshake included)."""
    start = time.perf_counter()
    # An ASCII name or address goes to getaddrinfo as bytes, which CPython takes as they are
    # (typeshed says str): as text it is IDNA-encoded (RFC 5891), which changes no ASCII label
    # but loads the idna codec, 3 ms of each start measured here.
    where = (host.encode() if host.isascii() else host, port)
    sock = socket.create_connection(where, timeout=timeout)  # type: ignore[arg-type]
    try:
        if tls is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            known = _SESSIONS.get((id(tls), host, port))
            sock = tls.wrap_socket(sock, server_hostname=host,  # the handshake, now
                                   session=known[1] if known else None)
        tls_info = negotiated(sock)
        assoc = Requestor.connect(sock, called=called, calling=calling, contexts=contexts,
                                  max_pdu=max_pdu, timeout=timeout, window=window,
                                  items=items)
        assoc.tls = tls_info
        if tls is not None and sock.session is not None:  # type: ignore[attr-defined]
            # TLS 1.3 tickets come after the handshake; the A-ASSOCIATE-AC read them in.
            _SESSIONS[(id(tls), host, port)] = (tls, sock.session)  # type: ignore[attr-defined]
    except BaseException:
        sock.close()
        raise
    return assoc, time.perf_counter() - start


#: The last TLS session with each peer, by client context (kept alive beside its session, so
#: its id stays its own): the next association of this process with that peer resumes it
#: (RFC 8446 2.2, RFC 5077), skipping the certificate exchange and its signatures, as BCP 195
#: (RFC 9325 3.4) allows. One association per study stores nothing here worth reusing; the
#: repeated associations of ``move --repeat`` and the archive's C-MOVEs do.
_SESSIONS: dict[tuple[int, str, int], tuple[ssl.SSLContext, ssl.SSLSession]] = {}
