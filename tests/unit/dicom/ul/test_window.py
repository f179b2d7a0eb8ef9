"""The Asynchronous Operations Window (PS3.7 D.3.3.3) on the lean path: the requestor's
pipelined C-STOREs (lab.dicom.ul.requestor.Requestor.store_all) against a peer that answers
only once every request of the window is in (so a requestor that waited for each response
would hang), against the archive's acceptor, and against pynetdicom, which does not grant a
window; and the sub-item's encoding."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from lab.dicom.archive.store import Store
from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.acceptor import Config
from lab.dicom.ul.negotiation import WINDOW
from lab.dicom.ul.requestor import open_association, read_part10

from ..window_peer import accept_granting, read_request, release
from .test_acceptor import _file, make_config, serving

CONTEXTS = [(CTImageStorage, [ExplicitVRLittleEndian])]


def test_window_sub_item_round_trip() -> None:
    rq = pdu.Associate("PACS", "MODALITY", contexts=(pdu.Proposed(1, CTImageStorage, (
        ExplicitVRLittleEndian,)),), other_user_items=(pdu.window_item(7, 1),))
    raw = pdu.encode_associate(pdu.A_ASSOCIATE_RQ, rq)
    assert raw.endswith(bytes((0x53, 0, 0, 4, 0, 7, 0, 1)))  # PS3.7 Table D.3-7
    assert pdu.window(pdu.decode_associate(pdu.A_ASSOCIATE_RQ, raw[6:])) == (7, 1)
    assert pdu.window(rq._replace(other_user_items=())) is None


def _window_peer(listener: socket.socket, grant: int, seen: list[int]) -> None:
    """Accept one association granting ``grant`` outstanding requests; read ``grant`` whole
    C-STORE requests before answering any, then answer them last first."""
    link, _ = accept_granting(listener, grant, 10)
    pending = [read_request(link)[0] for _ in range(grant)]
    seen.append(len(pending))
    for fields in reversed(pending):
        rsp = cmd.response(cmd.C_STORE_RQ, cmd.us(fields, cmd.MESSAGE_ID), 0xB000 + cmd.us(
            fields, cmd.MESSAGE_ID), CTImageStorage, cmd.uid(fields, cmd.AFFECTED_SOP_INSTANCE)
            or "")
        for piece in pdu.fragments(1, True, rsp, 0):
            link.send(piece)
    release(link)


def test_requestor_keeps_the_window_full(tmp_path: Path) -> None:
    """With a window of 3, three requests go out before any response is read; responses
    answered out of order land on their own objects (by Message ID Being Responded To)."""
    files = [_file(tmp_path, f"1.2.3.{i}", pixels=bytes([i]) * 300_000) for i in (1, 2, 3)]
    seen: list[int] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = threading.Thread(target=_window_peer, args=(listener, 3, seen), daemon=True)
        peer.start()
        assoc, _ = open_association("127.0.0.1", listener.getsockname()[1], called="PACS",
                                    calling="MODALITY", contexts=CONTEXTS, max_pdu=0,
                                    timeout=10, window=8)
        assert assoc.window == 3  # what the peer granted of the 8 proposed
        statuses = assoc.store_all([read_part10(f) for f in files], 0)
        assoc.release()
        peer.join(10)
    assert seen == [3]
    assert statuses == [0xB001, 0xB002, 0xB003]  # the warning status carries the message id


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[int, Store]]:
    with Store.open(tmp_path / "store") as store:
        config: Config = make_config(store, max_pdu=0)
        with serving(config) as server:
            yield server.port, store


@pytest.mark.parametrize(("proposed", "granted"), [(1, 1), (4, 4), (0, WINDOW),
                                                   (WINDOW * 4, WINDOW)])
def test_archive_grants_a_bounded_window_and_stores_everything(
        archive: tuple[int, Store], tmp_path: Path, proposed: int, granted: int) -> None:
    port, store = archive
    files = [_file(tmp_path, f"1.2.4.{i}", pixels=bytes([i]) * 200_000) for i in range(1, 7)]
    objects = [read_part10(f) for f in files]
    objects.insert(2, objects[0]._replace(sop_class="1.2.840.10008.5.1.4.1.1.4"))  # no context
    assoc, _ = open_association("127.0.0.1", port, called="PACS", calling="MODALITY",
                                contexts=CONTEXTS, max_pdu=0, timeout=10, window=proposed)
    assert assoc.window == granted
    statuses = assoc.store_all(objects, 0)
    assoc.release()
    assert statuses == [0, 0, -1, 0, 0, 0, 0]
    for f in files:
        stored = store.get(read_part10(f).sop_instance)
        assert stored is not None
        assert stored.path.read_bytes()[-200_000:] == f.read_bytes()[-200_000:]


def test_pynetdicom_grants_no_window_and_gets_one_request_at_a_time(tmp_path: Path) -> None:
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0

    ae = AE(ae_title="PACS")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert server is not None
    try:
        files = [_file(tmp_path, f"1.2.5.{i}", pixels=bytes([i]) * 50_000) for i in (1, 2, 3)]
        assoc, _ = open_association("127.0.0.1", server.server_address[1], called="PACS",
                                    calling="MODALITY", contexts=CONTEXTS, max_pdu=0,
                                    timeout=10, window=4)
        assert assoc.window == 1
        statuses = assoc.store_all([read_part10(f) for f in files], 0)
        assoc.release()
    finally:
        server.shutdown()
    assert statuses == [0, 0, 0]
    assert received == ["1.2.5.1", "1.2.5.2", "1.2.5.3"]
