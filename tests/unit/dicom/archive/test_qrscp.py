"""The archive's Query/Retrieve service (lab.dicom.archive.qrscp) behind its association server,
against pynetdicom as the independent SCU and as the independent Move Destination; and the server's
limits (lab.dicom.ul.server): idle first-phase connections, a full archive, slow peers."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from lab.dicom.archive.qrscp import FIND_MODELS, MOVE_MODELS, TRANSFER_SYNTAXES, QueryService
from lab.dicom.archive.store import Store
from lab.dicom.data.dsig import sign, verify
from lab.dicom.data.generate import generate_study
from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.acceptor import Config
from lab.dicom.ul.requestor import open_association, read_part10
from lab.dicom.ul.server import LogThrottle

from ..conftest import STUDY, make_dataset, put
from ..data.test_dsig import make_signer
from ..ul.test_acceptor import SUPPORTED, make_config, serving

FIND = StudyRootQueryRetrieveInformationModelFind
MOVE = StudyRootQueryRetrieveInformationModelMove


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as s:
        for n in range(3):
            put(s, make_dataset(f"1.2.3.{n}", PatientName="Doe^Jane", PatientID="P7"))
        yield s


@pytest.fixture
def destination() -> Iterator[tuple[int, list[Dataset]]]:
    """pynetdicom as the C-MOVE destination: what it received."""
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0

    ae = AE(ae_title="DEST")
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert server is not None
    yield server.server_address[1], received
    server.shutdown()


def qr_config(store: Store, dest_port: int) -> Config:
    """The archive's configuration with its Q/R service, as lab.dicom.pacs makes it."""
    supported = dict(SUPPORTED)
    for sop_class in (*FIND_MODELS, *MOVE_MODELS):
        supported[sop_class] = TRANSFER_SYNTAXES
    service = QueryService(store, {"DEST": ("127.0.0.1", dest_port)}, ae_title="PACS",
                           timeout=5)
    return make_config(store, supported=supported, query=service,
                       find_classes=frozenset(FIND_MODELS), move_classes=frozenset(MOVE_MODELS))


def _scu() -> AE:
    ae = AE(ae_title="MODALITY")
    for context in (Verification, FIND, MOVE):
        ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def test_find_and_move_answered_to_pynetdicom(
        store: Store, destination: tuple[int, list[Dataset]]) -> None:
    port, received = destination
    with serving(qr_config(store, port)) as server:
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="PACS")
        assert assoc.is_established
        query = Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID, query.PatientName = "STUDY", "", ""
        found = [(int(s.Status), i) for s, i in assoc.send_c_find(query, FIND)]
        move = Dataset()
        move.QueryRetrieveLevel, move.StudyInstanceUID = "STUDY", STUDY
        moved = [s for s, _ in assoc.send_c_move(move, "DEST", MOVE)]
        unknown = [int(s.Status) for s, _ in assoc.send_c_move(move, "NOWHERE", MOVE)]
        assoc.release()
    assert [s for s, _ in found] == [0xFF00, 0x0000]
    assert found[0][1].StudyInstanceUID == STUDY and found[0][1].PatientName == "Doe^Jane"
    assert [int(s.Status) for s in moved] == [0xFF00] * 3 + [0x0000]
    assert moved[-1].NumberOfCompletedSuboperations == 3
    assert sorted(ds.SOPInstanceUID for ds in received) == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    assert unknown == [0xA801]


def test_move_to_a_dead_destination_fails_every_suboperation(store: Store) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with serving(qr_config(store, dead_port)) as server:
        assoc = _scu().associate("127.0.0.1", server.port, ae_title="PACS")
        move = Dataset()
        move.QueryRetrieveLevel, move.StudyInstanceUID = "STUDY", STUDY
        (status, identifier), = list(assoc.send_c_move(move, "DEST", MOVE))
        assoc.release()
    assert int(status.Status) == 0xA702 and status.NumberOfFailedSuboperations == 3
    assert sorted(identifier.FailedSOPInstanceUIDList) == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]


@pytest.mark.parametrize("identifier", [
    b"\x08\x00\x52\x00\x05\x00\x00\x00STU",  # an element longer than what is left
    b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY\xff\x10\x00\x10\x00\x04\x00\x00\x00\xff\xfe\x00\x01",
    b"\xff" * 64,
])
def test_undecodable_identifier_gets_a_failure_status(
        store: Store, identifier: bytes) -> None:
    """An identifier pydicom cannot decode: a failure response, and the association goes on."""
    with serving(qr_config(store, 1)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        rq = pdu.Associate("PACS", "MODALITY", max_length=0, contexts=(
            pdu.Proposed(1, FIND, (ImplicitVRLittleEndian,)),))
        sock.sendall(pdu.encode_associate(pdu.A_ASSOCIATE_RQ, rq))
        assert _read_pdu(sock)[0] == pdu.A_ASSOCIATE_AC
        command = cmd.encode({cmd.AFFECTED_SOP_CLASS: FIND, cmd.COMMAND_FIELD: cmd.C_FIND_RQ,
                              cmd.MESSAGE_ID: 7, cmd.PRIORITY: 0, cmd.DATA_SET_TYPE: 0})
        sock.sendall(pdu.pdu(pdu.P_DATA_TF, pdu.pdv(1, 3, command)))
        sock.sendall(pdu.pdu(pdu.P_DATA_TF, pdu.pdv(1, 2, identifier)))
        kind, body = _read_pdu(sock)
        assert kind == pdu.P_DATA_TF
        fields = cmd.decode(body[6:])
        assert cmd.us(fields, cmd.STATUS) >> 12 in (0xA, 0xC)
        assert cmd.us(fields, cmd.RESPONDED_TO) == 7
        sock.sendall(pdu.RELEASE_RQ)
        assert _read_pdu(sock)[0] == pdu.A_RELEASE_RP
        sock.close()


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = _exactly(sock, 6)
    kind, length = pdu.HEADER.unpack(head)
    return kind, _exactly(sock, length)


def _exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = sock.recv(n - len(out))
        assert got, "connection closed"
        out += got
    return out


def _echo_seconds(port: int) -> float:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    start = time.monotonic()
    assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    return time.monotonic() - start


def test_idle_connections_hold_no_association_slot(store: Store) -> None:
    """Twenty connections that send nothing, with two association slots: a legitimate peer is
    still served at once, and ARTIM closes the idle ones."""
    with serving(make_config(store, artim=1.0), max_associations=2) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        assert _echo_seconds(server.port) < 1.0
        started = time.monotonic()
        for sock in idle:
            sock.settimeout(5)
            assert _closed(sock)
            sock.close()
        assert time.monotonic() - started < 2.5


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closed (or reset) the connection: reading gives an end of stream."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_full_archive_rejects_transiently(store: Store) -> None:
    with serving(make_config(store), max_associations=1) as server:
        first = _scu().associate("127.0.0.1", server.port, ae_title="PACS")
        assert first.is_established
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        rq = pdu.Associate("PACS", "OTHER", max_length=0, contexts=(
            pdu.Proposed(1, Verification, (ImplicitVRLittleEndian,)),))
        sock.sendall(pdu.encode_associate(pdu.A_ASSOCIATE_RQ, rq))
        kind, body = _read_pdu(sock)
        sock.close()
        first.release()
        assert kind == pdu.A_ASSOCIATE_RJ and tuple(body[1:4]) == (2, 3, 2)
        assert _echo_seconds(server.port) < 1.0  # the slot came back


def test_slow_sender_is_dropped_by_artim(store: Store) -> None:
    """An A-ASSOCIATE-RQ sent a byte every 0.1 s, which would take far longer than ARTIM (1 s):
    the archive closes the connection by then, whatever the trickle."""
    with serving(make_config(store, artim=1.0)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        rq = pdu.encode_associate(pdu.A_ASSOCIATE_RQ, pdu.Associate(
            "PACS", "SLOW", max_length=0,
            contexts=(pdu.Proposed(1, Verification, (ImplicitVRLittleEndian,)),)))
        started = time.monotonic()
        with contextlib.suppress(OSError):  # a reset or broken pipe: dropped too
            for byte in rq[:40]:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        sock.settimeout(3)
        assert _closed(sock)
        assert time.monotonic() - started < 5
        sock.close()


def test_log_throttle_keeps_a_flood_of_warnings_short() -> None:
    """100 identical warnings in a burst: 5 let through; after the window, one more that says
    how many were left out. Other kinds and INFO lines are not held back."""
    logger = logging.getLogger("test.throttle")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(LogThrottle(burst=5, window=0.2))
    logger.addHandler(handler)
    try:
        for n in range(100):
            logger.warning("refused %s", n)
        logger.warning("another kind")
        logger.info("info %s", 1)
        time.sleep(0.25)
        logger.warning("refused %s", "late")
    finally:
        logger.removeHandler(handler)
    assert lines == [*(f"refused {n}" for n in range(5)), "another kind", "info 1",
                     "refused late [95 more like it left out]"]


def test_signatures_survive_storage_and_move_bit_for_bit(tmp_path: Path) -> None:
    """A signed object (PS3.15 Annex C) stored into the archive and moved to pynetdicom arrives
    with the very bytes that were sent, and its signature verifies at the destination: the
    archive keeps Digital Signatures through storage and C-MOVE."""
    signer = make_signer("site-a")
    study = generate_study("CT", tmp_path / "ct", objects=1)
    signed = sign(dcmread(study.files[0]), signer.key, signer.cert)
    path = tmp_path / "signed.dcm"
    signed.save_as(path, enforce_file_format=True)
    part10 = read_part10(path)
    raw: list[bytes] = []

    def on_store(event: Any) -> int:
        raw.append(bytes(event.request.DataSet.getvalue()))
        return 0

    ae = AE(ae_title="DEST")
    ae.add_supported_context(part10.sop_class, part10.transfer_syntax)
    dest = ae.start_server(("127.0.0.1", 0), block=False,
                           evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert dest is not None
    with Store.open(tmp_path / "store") as store, \
            serving(qr_config(store, dest.server_address[1])) as server:
        assoc, _ = open_association("127.0.0.1", server.port, called="PACS", calling="MODALITY",
                                    contexts=[(part10.sop_class, [part10.transfer_syntax])],
                                    max_pdu=0, timeout=5)
        assert assoc.store_status(part10, 1, 0) == 0
        assoc.release()
        move = Dataset()
        move.QueryRetrieveLevel, move.StudyInstanceUID = "STUDY", signed.StudyInstanceUID
        scu = _scu().associate("127.0.0.1", server.port, ae_title="PACS")
        final = [s for s, _ in scu.send_c_move(move, "DEST", MOVE)][-1]
        scu.release()
    dest.shutdown()
    assert int(final.Status) == 0 and final.NumberOfCompletedSuboperations == 1
    assert raw == [path.read_bytes()[part10.offset:]]
    moved = dcmread(BytesIO(raw[0]), force=True)
    moved.file_meta = signed.file_meta
    results = verify(moved, [signer.ca])
    assert len(results) == 1 and results[0].ok, results
