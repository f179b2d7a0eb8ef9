"""The archive's association server: pynetdicom's, with Verification and Storage associations
taken by the lean acceptor (:mod:`lab.dicom.acceptor`), optionally over DICOM TLS.

Each accepted connection gets its own thread (pynetdicom's threaded server). There the TLS
handshake is made, if the server has a context (PS3.15 Annex B; in the connection's thread, with
a timeout, so a client that fails or stalls its handshake holds up nobody else), and the
A-ASSOCIATE-RQ is looked at: if every presentation context it proposes is one the acceptor
serves, the acceptor takes the association; otherwise (Query/Retrieve, a mix, anything it
cannot read) pynetdicom serves it exactly as before. On a plain socket the request is only
peeked at; on a TLS one it is read, then replayed to pynetdicom by :class:`_Replay`.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from lab.dicom import pdu
from lab.dicom.acceptor import Acceptor, Config, peek_request
from lab.dicom.link import Link, LinkClosed
from lab.dicom.tlsopts import negotiated

log = logging.getLogger("lab.dicom.pacs")


class _Replay(ssl.SSLSocket):
    """A TLS socket whose first bytes read are ``replay`` (what was read to route it)."""

    replay = b""

    def pending(self) -> int:
        return len(self.replay) + super().pending()

    def _take(self, n: int) -> bytes:
        data, self.replay = self.replay[:n], self.replay[n:]
        return data

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        return self._take(buflen) if self.replay else super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if not self.replay:
            return super().recv_into(buffer, nbytes or 0, flags)
        data = self._take(nbytes or len(buffer))
        buffer[: len(data)] = data
        return len(data)


class DispatchingServer(ThreadedAssociationServer):
    """A ThreadedAssociationServer that hands Verification/Storage associations to the lean
    acceptor configured in :attr:`native` (None: pynetdicom serves everything), over TLS if
    :attr:`tls` is set (then pynetdicom's own ``ssl_context`` must stay None)."""

    native: Config | None = None
    tls: ssl.SSLContext | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # As AE.start_server registers its servers: shutdown() unregisters them.
        self.ae._servers.append(self)

    def finish_request(self, request: Any, client_address: Any) -> None:
        config = self.native
        timeout = config.timeout if config is not None else 30.0
        if self.tls is not None:
            request = self._handshake(request, client_address, timeout)
            if request is None:
                return
            rq, raw = _read_request(request, timeout)
            if config is not None and _native(rq, config):
                Acceptor(config, request, replay=raw).serve()
                return
            request.__class__ = _Replay
            request.replay = raw
        elif config is not None and _native(peek_request(request, timeout), config):
            Acceptor(config, request).serve()
            return
        request.settimeout(None)  # as accepted: pynetdicom's transport sets its own waits
        super().finish_request(request, client_address)

    def _handshake(self, request: socket.socket, peer: Any, timeout: float) -> Any:
        assert self.tls is not None
        who = str(peer[0]).removeprefix("::ffff:")  # an IPv4 client of a dual-stack socket
        request.settimeout(timeout)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError, a reset, a timeout
            log.warning("TLS handshake with %s refused: %s", who, exc)
            request.close()
            return None
        info = negotiated(wrapped)
        log.info("TLS from %s: %s %s in %.4f s", who, info["tls_version"], info["cipher"],
                 info["handshake_seconds"] or 0.0)
        return wrapped


def _native(rq: pdu.Associate | None, config: Config) -> bool:
    return rq is not None and all(cx.abstract_syntax in config.supported for cx in rq.contexts)


def _read_request(sock: socket.socket, timeout: float) -> tuple[pdu.Associate | None, bytes]:
    """The first PDU, read whole (bytes as read), decoded if it is an A-ASSOCIATE-RQ."""
    link = Link(sock, timeout)
    try:
        kind, length = link.header()
        raw = pdu.HEADER.pack(kind, length) + link.body(length)
    except (LinkClosed, pdu.PduError, TimeoutError):
        return None, b""
    if kind != pdu.A_ASSOCIATE_RQ:
        return None, raw
    try:
        return pdu.decode_associate(kind, raw[pdu.HEADER.size:]), raw
    except pdu.PduError:
        return None, raw
