"""Socket tuning for DICOM associations (both ends).

DICOM's request/response pattern (a P-DATA PDU, then a short response) suffers from Nagle's
algorithm meeting delayed ACKs: without TCP_NODELAY each small PDU can wait ~40 ms. These helpers
set it on the listening socket (Linux copies it to accepted sockets) and on every socket an SCU
creates.

:class:`TunedAE` also makes every association it runs, requested or accepted, event driven
rather than polling (:mod:`lab.dicom.fastio`): accepted ones through its server's request
handler, :class:`TunedRequestHandler`.
"""

from __future__ import annotations

import socket
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket, RequestHandler

from lab.dicom.fastio import upgrade_socket, wait_for_messages


def _nodelay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tune_association_server(server: Any) -> None:
    """TCP_NODELAY on a pynetdicom AssociationServer's listening socket."""
    _nodelay(server.socket)


class TunedRequestHandler(RequestHandler):
    """Creates each accepted association as pynetdicom does, then makes it event driven."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        if assoc.dul.socket is not None:
            upgrade_socket(assoc.dul.socket)
        wait_for_messages(assoc)
        return assoc


class TunedAE(AE):
    """An AE whose associations have TCP_NODELAY set and are event driven."""

    def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> AssociationSocket:
        sock = super()._create_socket(assoc, address, tls_args)
        _nodelay(sock.socket)
        return upgrade_socket(sock)

    def make_server(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("request_handler", TunedRequestHandler)
        return super().make_server(*args, **kwargs)
