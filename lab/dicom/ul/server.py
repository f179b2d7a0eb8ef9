"""The archive's association server: a listening socket and a thread per connection, each
served by the lab's acceptor (:mod:`lab.dicom.ul.acceptor`), optionally over DICOM TLS (PS3.15
Annex B), with every resource a peer can hold bounded.

- First phase: a connection has ARTIM (PS3.8 9.1.5) for its TLS handshake and its
  A-ASSOCIATE-RQ, and holds no association slot meanwhile. At most ``max_pending`` connections
  are in that phase; a new one beyond it takes the place of the oldest, which is closed (a
  legitimate peer sends its request within milliseconds, so the oldest is the one that waits).
- Associations: at most ``max_associations``. When all are taken, the one idle the longest (for
  at least MIN_IDLE seconds) is ended with an A-ABORT to make room; if none is idle, the new
  request is rejected (transient, local limit exceeded, PS3.8 9.3.4) rather than queued. After
  that the acceptor's idle timeout and minimum rate apply.
So idle, slow or malformed connections can hold nothing a legitimate peer needs for long.
- The listen backlog is configurable (the kernel caps it at net.core.somaxconn).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from typing import Any

from lab.dicom.ul.acceptor import Acceptor, Config
from lab.dicom.ul.tlsopts import negotiated

log = logging.getLogger("lab.dicom.pacs")

#: Defaults of the archive's limits (``python -m lab.dicom.pacs --help`` explains them).
MAX_ASSOCIATIONS = 128
MAX_PENDING = 512
BACKLOG = 512
#: An association idle this long may be ended to make room for a new one.
MIN_IDLE = 1.0


class Slots:
    """The association slots: at most ``count`` held, by the acceptors serving them."""

    def __init__(self, count: int) -> None:
        self._free = threading.BoundedSemaphore(count)
        self._lock = threading.Lock()
        self._held: dict[Acceptor, None] = {}

    def acquire(self, acceptor: Acceptor) -> bool:
        """A slot for ``acceptor``: a free one, or the slot of the association idle the
        longest (at least MIN_IDLE seconds), which is evicted; False if there is neither."""
        if not self._free.acquire(blocking=False):
            victim = self._idlest()
            if victim is None:
                return False
            log.warning("archive full: the association with %s, idle, ends to make room",
                        victim.calling)
            victim.evict()
            if not self._free.acquire(timeout=2.0):
                return False
        with self._lock:
            self._held[acceptor] = None
        return True

    def release(self, acceptor: Acceptor) -> None:
        with self._lock:
            del self._held[acceptor]
        self._free.release()

    def _idlest(self) -> Acceptor | None:
        now = time.monotonic()
        with self._lock:
            idle = [(a.idle_since, id(a), a) for a in self._held
                    if a.idle_since is not None and now - a.idle_since >= MIN_IDLE]
        return min(idle)[2] if idle else None


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket: ``::`` takes IPv6 and IPv4 alike (dual stack), with TCP_NODELAY
    set (inherited by accepted sockets: DICOM's request/response pattern must not wait for
    Nagle's algorithm)."""
    if host in ("::", ""):
        sock = socket.create_server(("::", port), family=socket.AF_INET6, backlog=backlog,
                                    dualstack_ipv6=socket.has_dualstack_ipv6())
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class AssociationServer:
    """Serves the connections of ``listener`` with ``config`` until :meth:`shutdown`."""

    def __init__(self, config: Config, listener: socket.socket, *,
                 tls: ssl.SSLContext | None = None,
                 max_associations: int = MAX_ASSOCIATIONS,
                 max_pending: int = MAX_PENDING) -> None:
        if max_associations < 1 or max_pending < 1:
            raise ValueError("max_associations and max_pending must be at least 1")
        self.config = config
        self.listener = listener
        self.tls = tls
        self.slots = Slots(max_associations)
        self.max_pending = max_pending
        #: Connections in their first phase, oldest first, each with the socket serving it.
        self._pending: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def serve_forever(self) -> None:
        """Accept connections, each served in a thread of its own, until shut down."""
        serial = 0
        while not self._stopping.is_set():
            try:
                conn, peer = self.listener.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                log.warning("accept failed: %s", exc)  # e.g. out of file descriptors
                time.sleep(0.05)
                continue
            serial += 1
            self._enter(serial, conn)
            try:
                threading.Thread(target=self._serve, args=(serial, conn, peer), daemon=True,
                                 name=f"association-{serial}").start()
            except RuntimeError as exc:  # no thread could be started
                log.warning("cannot serve %s: %s", _who(peer), exc)
                self._leave(serial)
                conn.close()

    def shutdown(self) -> None:
        """Stop accepting (associations under way end on their own)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _enter(self, serial: int, conn: socket.socket) -> None:
        """A new connection enters its first phase; the oldest is closed if that is full."""
        with self._lock:
            victim = None
            if len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                victim = self._pending.pop(oldest)
            self._pending[serial] = conn
        if victim is not None:
            log.warning("too many connections without an A-ASSOCIATE-RQ: the oldest closed")
            with contextlib.suppress(OSError):
                socket.socket.shutdown(victim, socket.SHUT_RDWR)  # its thread wakes up

    def _leave(self, serial: int) -> None:
        with self._lock:
            self._pending.pop(serial, None)

    def _serve(self, serial: int, conn: socket.socket, peer: Any) -> None:
        try:
            sock: socket.socket | None = conn
            if self.tls is not None:
                sock = self._handshake(serial, conn, peer)
            if sock is not None:
                Acceptor(self.config, sock, slots=self.slots,
                         requested=lambda: self._leave(serial)).serve()
        finally:
            self._leave(serial)
            conn.close()

    def _handshake(self, serial: int, conn: socket.socket, peer: Any) -> ssl.SSLSocket | None:
        """The TLS handshake, each of its waits bounded by ARTIM; None if it failed."""
        assert self.tls is not None
        conn.settimeout(self.config.artim)
        try:
            wrapped = self.tls.wrap_socket(conn, server_side=True)
        except OSError as exc:  # ssl.SSLError, a reset, a timeout
            log.warning("TLS handshake with %s refused: %s", _who(peer), exc)
            return None
        with self._lock:
            if serial in self._pending:
                self._pending[serial] = wrapped  # the socket to shut down now
        info = negotiated(wrapped)
        log.info("TLS from %s: %s %s in %.4f s", _who(peer), info["tls_version"],
                 info["cipher"], info["handshake_seconds"] or 0.0)
        return wrapped


class LogThrottle(logging.Filter):
    """At most ``burst`` warnings of one kind (their message template) per ``window`` seconds:
    a flood of hostile connections must not fill the disk with the same line. The first one
    let through after a quiet spell says how many were left out."""

    def __init__(self, burst: int = 20, window: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, int, int]] = {}  # start, count, left out

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = (record.name, str(record.msg)), time.monotonic()
        with self._lock:
            start, count, left_out = self._seen.get(key, (now, 0, 0))
            if now - start > self.window:
                if left_out:
                    record.msg = f"{record.msg} [{left_out} more like it left out]"
                start, count, left_out = now, 0, 0
            count += 1
            allowed = count <= self.burst
            self._seen[key] = (start, count, left_out + (not allowed))
        return allowed


def _who(peer: Any) -> str:
    return str(peer[0]).removeprefix("::ffff:")  # an IPv4 client of a dual-stack socket
