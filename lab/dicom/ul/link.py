"""One Upper Layer connection (PS3.8 9): PDUs read from a TCP (or TLS) socket through one
reusable buffer, and sent with as few system calls and copies as the socket allows.

The lean store path reads a PDU header, then either a small body (association, release and
abort PDUs, command fragments) or the data of a PDV, which it hands on in pieces as they
arrive (:meth:`Link.stream`) so a dataset goes from the socket to its file without being
assembled in memory; on a plain socket :meth:`Link.drain` moves it into the file by
``splice(2)`` through a pipe, so the bytes never pass through this process (one copy, from
the socket's pages into the file's, where a read and a write make two). A dataset is sent
straight from its file (``sendfile(2)`` on a plain socket), each PDU header corked in front of
its data (``MSG_MORE``) so it does not leave as a packet of its own.

Every wait for the peer is bounded, whatever the peer declares or how slowly it sends: each
receive waits at most ``timeout`` seconds, and a :meth:`Link.deadline` bounds the whole of
what is being read (the A-ASSOCIATE-RQ within ARTIM, a PDU within a time its length allows).
Memory is bounded too: a declared length never allocates anything, the buffer holds at most
BUFFER bytes, and a small body is read whole only up to SMALL_LIMIT.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from io import BufferedReader

from lab.dicom.ul.pdu import HEADER, PDU_TYPES, PDV_HEADER, UNRECOGNIZED_PDU, PduError

#: Size of the receive buffer (and the largest piece handed to a stream's sink).
BUFFER = 1 << 18
#: The buffer a link starts with; it grows to BUFFER when a dataset is streamed, so an idle or
#: half-open connection costs little memory.
START_BUFFER = 1 << 14
#: Bytes handed to the SSL object per write when a file is sent over TLS.
SEND_CHUNK = 1 << 18
#: Largest PDU body read whole (association PDUs, command fragments): anything bigger is refused.
SMALL_LIMIT = 1 << 20
#: The pipe :meth:`Link.drain` splices through: what one splice(2) moves at most.
PIPE_SIZE = 1 << 18


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


class LinkClosed(PduError):
    """The peer closed the connection (or it broke) in the middle of a PDU or between PDUs."""


@contextlib.contextmanager
def _socket_errors(doing: str) -> Iterator[None]:
    """Socket errors as the link's own: a kernel timeout (SO_RCVTIMEO / SO_SNDTIMEO expired on
    a blocking socket) as TimeoutError, a reset, broken pipe or TLS error as LinkClosed."""
    try:
        yield
    except BlockingIOError:
        raise TimeoutError(f"timed out {doing}") from None
    except TimeoutError:
        raise
    except OSError as exc:  # also ssl.SSLError
        raise LinkClosed(f"connection broken: {exc}") from exc


class Link:
    """A connected socket carrying PDUs. ``timeout`` bounds every wait for the peer;
    ``replay`` (at most BUFFER bytes) is read before what the socket brings; ``lookahead``:
    see :attr:`lookahead` (taken on a plain socket only, where :meth:`drain` works)."""

    def __init__(self, sock: socket.socket, timeout: float | None, replay: bytes = b"",
                 buffer: int = BUFFER, lookahead: int | None = None) -> None:
        self.sock = sock
        self.timeout = timeout
        # ssl is imported only where TLS is used: without it, no socket can be a TLS one.
        ssl = sys.modules.get("ssl")
        self.plain = ssl is None or not isinstance(sock, ssl.SSLSocket)
        #: The wait the socket is set to now (None: unbounded), and the moment by which what is
        #: being read must have arrived (None: only the per-receive timeout applies).
        self._armed: float | None = -1.0
        self._deadline: float | None = None
        if self.plain:
            sock.settimeout(None)
        self._arm(timeout)
        self._buf = bytearray(max(buffer, len(replay), 16))
        self._view = memoryview(self._buf)
        self._start, self._end = 0, len(replay)  # bytes already read, to be read again
        self._buf[: len(replay)] = replay
        self._out: memoryview | None = None  # the TLS send buffer, made on first use
        #: None: a receive fills the buffer with what the socket has. A number: it takes at
        #: most the bytes asked for and this many more (say, the header of the PDV that
        #: follows a PDU header), leaving a dataset in the socket for :meth:`drain`.
        self.lookahead = lookahead if self.plain else None
        self._pipe: tuple[int, int] | None = None  # drain's, made on first use

    def _arm(self, wait: float | None) -> None:
        """Bound the socket's next waits to ``wait`` seconds. A plain socket stays blocking,
        its waits bounded by the kernel (SO_RCVTIMEO, SO_SNDTIMEO), so that a dataset is read
        with MSG_WAITALL: one recv for a whole PDV where Python's own timeout mode would poll
        and recv for every few segments that arrive."""
        if wait == self._armed:
            return
        self._armed = wait
        if self.plain:
            seconds = max(wait or 0.0, 0.0)
            if wait is not None and seconds < 1e-6:
                seconds = 1e-6  # zero would mean no timeout at all
            tv = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        else:
            self.sock.settimeout(wait)

    def deadline(self, seconds: float | None) -> None:
        """What is read from now on must arrive within ``seconds`` in all (None: no bound but
        the per-receive timeout); a receive past it raises TimeoutError."""
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def _before_receive(self) -> None:
        """Arm the socket for the next receive: the per-receive timeout, or what is left before
        the deadline if that is sooner (re-armed only when the difference matters, to spare a
        system call per receive)."""
        wait = self.timeout
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the peer is too slow: the deadline passed")
            if wait is None or left < wait:
                wait = left
        armed = self._armed
        if armed is None or wait is None or armed < wait - 1e-3 or armed > wait + 0.05:
            self._arm(wait)

    def _grow(self, size: int) -> None:
        """Make the buffer at least ``size`` bytes (at most BUFFER), keeping unread bytes."""
        size = min(size, BUFFER)  # a dataset longer than BUFFER must not reallocate each time
        if len(self._buf) >= size:
            return
        left = self._end - self._start
        buf = bytearray(min(max(size, 2 * len(self._buf)), BUFFER))
        buf[:left] = self._view[self._start:self._end]
        self._buf, self._view = buf, memoryview(buf)
        self._start, self._end = 0, left

    def _recv(self, want: int = 0) -> int:
        """Read what the socket has into the free end of the buffer (with a lookahead: at
        most ``want`` bytes and the lookahead)."""
        self._before_receive()
        end = self._end
        stop = len(self._buf) if self.lookahead is None else min(
            len(self._buf), end + want + self.lookahead)
        try:
            got = self.sock.recv_into(self._view[end:stop])
        except BlockingIOError:
            raise TimeoutError("timed out waiting for the peer") from None
        except TimeoutError:
            raise
        except OSError as exc:  # also ssl.SSLError
            raise LinkClosed(f"connection broken: {exc}") from exc
        if not got:
            raise LinkClosed("connection closed by the peer")
        self._end += got
        return got

    def _recv_all(self, n: int) -> None:
        """Read ``n`` bytes into the empty buffer in one call (MSG_WAITALL; fewer at the end of
        the stream or if a signal interrupts)."""
        self._before_receive()
        try:
            got = self.sock.recv_into(self._view[:n], n, socket.MSG_WAITALL)
        except BlockingIOError:
            raise TimeoutError("timed out waiting for the peer") from None
        except TimeoutError:
            raise
        except OSError as exc:
            raise LinkClosed(f"connection broken: {exc}") from exc
        if not got:
            raise LinkClosed("connection closed by the peer")
        self._end = got

    def _gather(self, want: int) -> None:
        """Fill the empty buffer with ``want`` bytes from a TLS socket, whose receives return
        a record each: a tight loop (the deadline checked per record, the socket armed once
        per buffer), as this runs for every 16 KiB a dataset brings."""
        self._before_receive()
        view, deadline, end = self._view, self._deadline, 0
        # CPython's SSL object itself (what SSLSocket.recv_into calls through two Python
        # frames and a memoryview per record): its read waits within the socket's timeout,
        # returns 0 at a close_notify, and raises SSLError where recv_into would.
        sslobj = getattr(self.sock, "_sslobj", None)
        read = sslobj.read if sslobj is not None else None
        try:
            while end < want:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("the peer is too slow: the deadline passed")
                got = (read(want - end, view[end:want]) if read is not None
                       else self.sock.recv_into(view[end:want]))
                if not got:
                    raise LinkClosed("connection closed by the peer")
                end += got
        except (TimeoutError, LinkClosed):
            raise
        except OSError as exc:  # also ssl.SSLError
            raise LinkClosed(f"connection broken: {exc}") from exc
        finally:
            self._end = end

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (n <= BUFFER)."""
        if self._end - self._start < n:
            self._grow(n)
            if self._start:
                left = self._end - self._start
                self._buf[:left] = self._view[self._start:self._end]
                self._start, self._end = 0, left
            while self._end < n:
                self._recv(n - self._end)
        data = bytes(self._view[self._start:self._start + n])
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        return data

    def buffered(self) -> bool:
        """Whether bytes already received wait to be read (in this buffer, or decrypted inside
        a TLS socket): a caller that waits on the socket with select(2) must read them first."""
        pending = getattr(self.sock, "pending", None)
        return self._end > self._start or (pending is not None and pending() > 0)

    def header(self) -> tuple[int, int]:
        """The next PDU's type and length; LinkClosed at a clean end of stream."""
        kind, length = HEADER.unpack(self.read(HEADER.size))
        if kind not in PDU_TYPES:
            raise PduError(f"unknown PDU type 0x{kind:02X} (PS3.8 9.3.1)", UNRECOGNIZED_PDU)
        return kind, length

    def body(self, length: int, limit: int = SMALL_LIMIT) -> bytes:
        """A small PDU body or PDV data, read whole; PduError, before reading any of it, if
        ``length`` is above ``limit``."""
        if length > limit:
            raise PduError(f"a {length}-byte PDU or item where at most {limit} is expected")
        out = bytearray()
        while len(out) < length:
            out += self.read(min(len(self._buf), length - len(out)))
        return bytes(out)

    def pdv_header(self) -> tuple[int, int, int]:
        """The next PDV item's data length, context id and message control header."""
        length, context_id, control = PDV_HEADER.unpack(self.read(PDV_HEADER.size))
        if length < 2:
            raise PduError(f"PDV item of length {length} (PS3.8 9.3.5.1)")
        return length - 2, context_id, control

    def stream(self, n: int, sink: Callable[[memoryview], object]) -> None:
        """Hand the next ``n`` bytes to ``sink`` in pieces of a buffer full (the last piece
        may be shorter): on TLS, where a receive returns one record (16 KiB at most, RFC 8446
        5.1), records are gathered first, so the sink (a file write) runs once per BUFFER
        bytes rather than once per record. The ``n`` bytes are promised by the PDV's length,
        so waiting for them never waits for more than the peer owes."""
        if n > len(self._buf):
            self._grow(n)
        while n:
            if self._start == self._end:
                self._start = self._end = 0
                if self.plain:
                    self._recv_all(min(n, len(self._buf)))
                else:
                    self._gather(min(n, len(self._buf)))
            take = min(n, self._end - self._start)
            sink(self._view[self._start:self._start + take])
            self._start += take
            n -= take
        if self._start == self._end:
            self._start = self._end = 0

    def drain(self, n: int, fd: int) -> None:
        """Move the next ``n`` bytes into the file ``fd`` (plain sockets only): those already
        in the buffer written, the rest spliced from the socket into a pipe and from the pipe
        into the file, never copied into this process. Each splice from the socket waits
        as a receive does (SO_RCVTIMEO, the deadline); an error of the file's is raised as
        the OSError it is, one of the socket's as LinkClosed."""
        have = min(n, self._end - self._start)
        if have:
            _write_all(fd, self._view[self._start:self._start + have])
            self._start += have
            n -= have
            if self._start == self._end:
                self._start = self._end = 0
        if not n:
            return
        if self._pipe is None:
            try:
                self._pipe = os.pipe2(os.O_CLOEXEC)
            except OSError:  # out of descriptors: through the buffer, as on TLS
                self.stream(n, lambda piece: _write_all(fd, piece))
                return
            with contextlib.suppress(OSError):  # the default (64 KiB) still works
                fcntl.fcntl(self._pipe[1], fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        out, into = self._pipe
        sock = self.sock.fileno()
        while n:
            self._before_receive()
            try:
                got = os.splice(sock, into, min(n, PIPE_SIZE), flags=os.SPLICE_F_MOVE)
            except BlockingIOError:
                raise TimeoutError("timed out waiting for the peer") from None
            except OSError as exc:
                raise LinkClosed(f"connection broken: {exc}") from exc
            if not got:
                raise LinkClosed("connection closed by the peer")
            n -= got
            while got:
                put = os.splice(out, fd, got, flags=os.SPLICE_F_MOVE)
                if not put:
                    raise OSError(f"splice into file descriptor {fd} wrote nothing")
                got -= put

    def send(self, data: bytes, more: bool = False) -> None:
        """Send bytes; ``more``: data follows at once, so hold a partial packet (MSG_MORE).
        Each send waits at most the link's timeout for the peer to take the bytes."""
        if self._armed != self.timeout:
            self._arm(self.timeout)
        with _socket_errors("sending to the peer"):
            if more and self.plain:
                self.sock.sendall(data, socket.MSG_MORE)
            else:
                self.sock.sendall(data)

    def send_file(self, file: BufferedReader, offset: int, count: int, prefix: bytes = b"") -> None:
        """Send ``prefix``, then ``count`` bytes of ``file`` from ``offset``. On a plain socket
        the prefix is corked (MSG_MORE) in front of a ``sendfile(2)``; on TLS, where the bytes
        must pass through the SSL object, the file is read into one reused buffer behind the
        prefix and sent SEND_CHUNK bytes at a time: each SSL write makes full 16 KiB records
        (RFC 8446 5.1) of one larger write, and no small record is spent on a PDU header."""
        if self._armed != self.timeout:
            self._arm(self.timeout)
        with _socket_errors("sending to the peer"):
            if self.plain:
                if prefix:
                    self.sock.sendall(prefix, socket.MSG_MORE if count else 0)
                fd, out = file.fileno(), self.sock.fileno()
                while count:
                    sent = self._sendfile(out, fd, offset, count)
                    offset += sent
                    count -= sent
                return
            self._send_through(file, offset, count, prefix)

    def _send_through(self, file: BufferedReader, offset: int, count: int, prefix: bytes) -> None:
        """The TLS half of :meth:`send_file`."""
        if self._out is None:
            self._out = memoryview(bytearray(SEND_CHUNK))
        out, head = self._out, len(prefix)
        if head >= len(out) or not count:
            self.sock.sendall(prefix)
            head = 0
        else:
            out[:head] = prefix
        file.seek(offset)
        while count:
            got = file.readinto(out[head:head + min(count, len(out) - head)])
            if not got:
                raise PduError(f"{getattr(file, 'name', 'file')} is shorter than it was")
            self.sock.sendall(out[:head + got])
            count -= got
            head = 0

    def _sendfile(self, out: int, fd: int, offset: int, count: int) -> int:
        """One sendfile(2) on the (blocking) socket."""
        try:
            sent = os.sendfile(out, fd, offset, count)
        except BlockingIOError:  # SO_SNDTIMEO expired
            raise TimeoutError("timed out sending to the peer") from None
        if sent == 0:
            raise PduError("file ended before the dataset did")
        return sent

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._pipe is not None:
            for end in self._pipe:
                os.close(end)
            self._pipe = None

