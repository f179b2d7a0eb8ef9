"""Socket tuning for DICOM associations (both ends).

DICOM's request/response pattern (a P-DATA PDU, then a short response) suffers from Nagle's
algorithm meeting delayed ACKs: without TCP_NODELAY each small PDU can wait ~40 ms. These helpers
set it on the listening socket (Linux copies it to accepted sockets) and on every socket an SCU
creates.
"""

from __future__ import annotations

import socket
from typing import Any

from pynetdicom import AE
from pynetdicom.transport import AssociationSocket


def _nodelay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tune_association_server(server: Any) -> None:
    """TCP_NODELAY on a pynetdicom AssociationServer's listening socket."""
    _nodelay(server.socket)


class TunedAE(AE):
    """An AE whose outgoing association sockets have TCP_NODELAY set."""

    def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> AssociationSocket:
        sock = super()._create_socket(assoc, address, tls_args)
        _nodelay(sock.socket)
        return sock
