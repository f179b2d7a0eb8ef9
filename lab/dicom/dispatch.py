"""The archive's association server: pynetdicom's, with Verification and Storage associations
taken by the lean acceptor (:mod:`lab.dicom.acceptor`).

Each accepted connection gets its own thread (pynetdicom's threaded server). There the
A-ASSOCIATE-RQ is peeked at: if every presentation context it proposes is one the acceptor
serves, the acceptor takes the association; otherwise (Query/Retrieve, a mix, anything it
cannot read) pynetdicom serves it exactly as before, the request still unread on the socket.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from lab.dicom.acceptor import Acceptor, Config, peek_request


class DispatchingServer(ThreadedAssociationServer):
    """A ThreadedAssociationServer that hands Verification/Storage associations to the lean
    acceptor configured in :attr:`native` (None: pynetdicom serves everything)."""

    native: Config | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # As AE.start_server registers its servers: shutdown() unregisters them.
        self.ae._servers.append(self)

    def finish_request(self, request: Any, client_address: Any) -> None:
        config = self.native
        if config is not None and isinstance(request, socket.socket) and not isinstance(
                request, ssl.SSLSocket):
            rq = peek_request(request, config.timeout)
            if rq is not None and all(cx.abstract_syntax in config.supported
                                      for cx in rq.contexts):
                Acceptor(config, request).serve()
                return
            request.settimeout(None)  # as accepted: pynetdicom's transport sets its own waits
        super().finish_request(request, client_address)
