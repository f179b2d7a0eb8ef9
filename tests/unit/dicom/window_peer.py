"""A Storage SCP written for the window tests (tests/unit/dicom/ul/test_window.py and
archive/test_move_window.py): it grants an Asynchronous Operations Window (PS3.7 D.3.3.3) and
reads whole C-STORE requests, so a test decides when to answer them and can count how many were
outstanding — what no independent peer lets a test do."""

from __future__ import annotations

import socket

from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.link import Link


def accept_granting(listener: socket.socket, grant: int,
                    timeout: float = 20) -> tuple[Link, pdu.Associate]:
    """Accept one association on ``listener``, every proposed context with its first transfer
    syntax, granting ``grant`` outstanding requests; the link and the A-ASSOCIATE-RQ."""
    conn, _ = listener.accept()
    link = Link(conn, timeout)
    kind, length = link.header()
    rq = pdu.decode_associate(kind, link.body(length))
    results = tuple(pdu.Result(cx.id, pdu.ACCEPTANCE, cx.transfer_syntaxes[0])
                    for cx in rq.contexts)
    link.send(pdu.encode_associate(pdu.A_ASSOCIATE_AC, pdu.Associate(
        rq.called, rq.calling, results=results, max_length=0,
        other_user_items=(pdu.window_item(grant, 1),))))
    return link, rq


def read_request(link: Link) -> tuple[dict[int, bytes], bytes]:
    """One whole C-STORE-RQ: its command set and dataset."""
    command, data = bytearray(), bytearray()
    while True:
        kind, length = link.header()
        assert kind == pdu.P_DATA_TF
        while length:
            n, _, control = link.pdv_header()
            chunk = link.body(n, 1 << 24)
            length -= n + pdu.PDV_HEADER.size
            if control & pdu.COMMAND:
                command += chunk
            else:
                data += chunk
                if control & pdu.LAST:
                    return cmd.decode(command), bytes(data)


def release(link: Link) -> None:
    """Answer the requestor's A-RELEASE-RQ and close."""
    _kind, length = link.header()
    link.body(length)
    link.send(pdu.RELEASE_RP)
    link.close()
