"""The archive's association server: a listening socket and a thread per connection, each
served by the lab's acceptor (:mod:`lab.dicom.acceptor`), optionally over DICOM TLS (PS3.15
Annex B), with every resource a peer can hold bounded.

- Connections: at most ``max_associations`` established associations and as many connections
  again still in their first phase (TLS handshake, A-ASSOCIATE-RQ). A connection beyond that is
  answered at once with an A-ASSOCIATE-RJ (transient, temporary congestion, PS3.8 9.3.4) and
  closed, so the accepting thread never waits for anyone.
- Time: the TLS handshake and the A-ASSOCIATE-RQ must arrive within ARTIM (PS3.8 9.1.5); an
  association whose slots are all taken is rejected (transient, local limit exceeded) rather
  than queued; after that the acceptor's idle timeout and minimum rate apply. So idle, slow or
  malformed connections hold a first-phase place for ARTIM at most and never an association
  slot that a legitimate peer could use.
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

from lab.dicom import pdu
from lab.dicom.acceptor import Acceptor, Config
from lab.dicom.tlsopts import negotiated

log = logging.getLogger("lab.dicom.pacs")

#: Defaults of the archive's limits (``python -m lab.dicom.pacs --help`` explains them).
MAX_ASSOCIATIONS = 128
BACKLOG = 512
#: A-ASSOCIATE-RJ sent, unread, to a connection beyond every limit: rejected transient,
#: service provider (presentation related function), temporary congestion (PS3.8 Table 9-21).
_CONGESTED = pdu.encode_reject(2, 3, 1)


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
                 max_associations: int = MAX_ASSOCIATIONS) -> None:
        if max_associations < 1:
            raise ValueError("max_associations must be at least 1")
        self.config = config
        self.listener = listener
        self.tls = tls
        self.slots = threading.BoundedSemaphore(max_associations)
        self.places = threading.BoundedSemaphore(2 * max_associations)
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def serve_forever(self) -> None:
        """Accept connections, each served in a thread of its own, until shut down."""
        while not self._stopping.is_set():
            try:
                conn, peer = self.listener.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                log.warning("accept failed: %s", exc)  # e.g. out of file descriptors
                time.sleep(0.05)
                continue
            if not self.places.acquire(blocking=False):
                self._congested(conn, peer)
                continue
            try:
                threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                                 name=f"association-{peer[0]}").start()
            except RuntimeError as exc:  # no thread could be started
                log.warning("cannot serve %s: %s", peer[0], exc)
                self.places.release()
                self._congested(conn, peer)

    def shutdown(self) -> None:
        """Stop accepting (associations under way end on their own)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _congested(self, conn: socket.socket, peer: Any) -> None:
        log.warning("too many connections: %s refused", _who(peer))
        try:
            if self.tls is None:
                conn.setblocking(False)
                with contextlib.suppress(OSError):
                    conn.send(_CONGESTED)
        finally:
            conn.close()

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        try:
            sock: socket.socket | None = conn
            if self.tls is not None:
                sock = self._handshake(conn, peer)
            if sock is not None:
                Acceptor(self.config, sock, slots=self.slots).serve()
        finally:
            conn.close()
            self.places.release()

    def _handshake(self, conn: socket.socket, peer: Any) -> ssl.SSLSocket | None:
        """The TLS handshake, each of its waits bounded by ARTIM; None if it failed."""
        assert self.tls is not None
        conn.settimeout(self.config.artim)
        try:
            wrapped = self.tls.wrap_socket(conn, server_side=True)
        except OSError as exc:  # ssl.SSLError, a reset, a timeout
            log.warning("TLS handshake with %s refused: %s", _who(peer), exc)
            return None
        info = negotiated(wrapped)
        log.info("TLS from %s: %s %s in %.4f s", _who(peer), info["tls_version"],
                 info["cipher"], info["handshake_seconds"] or 0.0)
        return wrapped


def _who(peer: Any) -> str:
    return str(peer[0]).removeprefix("::ffff:")  # an IPv4 client of a dual-stack socket
