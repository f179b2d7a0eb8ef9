"""The archive's C-MOVE sub-operations with an Asynchronous Operations Window (PS3.7 D.3.3.3):
against a Move Destination that answers only once the window it granted is full (so a sender
that waited for each response would hang), the archive keeps exactly that many C-STOREs in
flight, and every object arrives once, bit for bit as stored. pynetdicom is the independent SCU
that asks for the move."""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from lab.dicom.archive.qrscp import MOVE_WINDOW
from lab.dicom.archive.store import Store
from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.requestor import read_part10

from ..conftest import STUDY, make_dataset, put
from ..ul.test_acceptor import serving
from ..window_peer import accept_granting, read_request, release
from .test_qrscp import MOVE, _scu, qr_config

OBJECTS = 11


@dataclass
class Seen:
    """What the destination saw: requests outstanding when it answered, datasets by UID."""

    outstanding: list[int] = field(default_factory=list)
    digests: dict[str, list[str]] = field(default_factory=dict)
    proposed: tuple[int, int] | None = None


def _destination(listener: socket.socket, grant: int, total: int, seen: Seen) -> None:
    """One association granting ``grant`` requests outstanding; answers nothing until
    ``grant`` requests (or all ``total``) are in, then answers them all."""
    link, rq = accept_granting(listener, grant, 20)
    seen.proposed = pdu.window(rq)
    received = 0
    while received < total:
        pending = []
        while len(pending) < grant and received < total:
            fields, data = read_request(link)
            pending.append(fields)
            received += 1
            uid = cmd.uid(fields, cmd.AFFECTED_SOP_INSTANCE) or ""
            seen.digests.setdefault(uid, []).append(hashlib.sha256(data).hexdigest())
        seen.outstanding.append(len(pending))
        for fields in pending:
            rsp = cmd.response(cmd.C_STORE_RQ, cmd.us(fields, cmd.MESSAGE_ID), 0, CTImageStorage,
                               cmd.uid(fields, cmd.AFFECTED_SOP_INSTANCE) or "")
            for piece in pdu.fragments(1, True, rsp, 0):
                link.send(piece)
    release(link)


@pytest.mark.parametrize("grant", [1, 4, 8, MOVE_WINDOW])
def test_move_keeps_the_granted_window_full_and_delivers_each_object_once(
        tmp_path: Path, grant: int) -> None:
    seen = Seen()
    with Store.open(tmp_path / "store") as store, \
            socket.create_server(("127.0.0.1", 0)) as listener:
        stored = [put(store, make_dataset(f"1.2.9.{n}", pixels=bytes([n]) * 40_000))
                  for n in range(OBJECTS)]
        peer = threading.Thread(target=_destination, args=(listener, grant, OBJECTS, seen),
                                daemon=True)
        peer.start()
        with serving(qr_config(store, listener.getsockname()[1])) as server:
            assoc = _scu().associate("127.0.0.1", server.port, ae_title="PACS")
            move = Dataset()
            move.QueryRetrieveLevel, move.StudyInstanceUID = "STUDY", STUDY
            statuses: list[Any] = [s for s, _ in assoc.send_c_move(move, "DEST", MOVE)]
            assoc.release()
        peer.join(20)
        expected = {}
        for obj in stored:
            part = read_part10(obj.path)
            body = obj.path.read_bytes()[part.offset:]
            expected[obj.sop_instance_uid] = [hashlib.sha256(body).hexdigest()]
    assert seen.proposed == (MOVE_WINDOW, 1)
    full, rest = divmod(OBJECTS, grant)
    assert seen.outstanding == [grant] * full + ([rest] if rest else [])
    assert seen.digests == expected  # each object once, bit for bit as stored
    assert [int(s.Status) for s in statuses] == [0xFF00] * OBJECTS + [0x0000]
    assert statuses[-1].NumberOfCompletedSuboperations == OBJECTS
