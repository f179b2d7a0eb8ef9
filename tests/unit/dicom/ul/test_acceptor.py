"""The lean acceptor and requestor (lab.dicom.ul.acceptor, lab.dicom.ul.requestor) over loopback,
each against pynetdicom as the independent peer, and the acceptor (behind the archive's
association server, lab.dicom.ul.server) against broken peers."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
import sqlite3
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from lab.dicom.archive.store import Store
from lab.dicom.pacs import Archive
from lab.dicom.ul import pdu
from lab.dicom.ul.acceptor import Acceptor, Config
from lab.dicom.ul.requestor import AssociationError, open_association, read_part10
from lab.dicom.ul.server import AssociationServer, listen

from ..conftest import SOP, make_dataset

SUPPORTED = {CTImageStorage: frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian}),
             Verification: frozenset({ImplicitVRLittleEndian})}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as s:
        yield s


def make_config(store: Store, settle: Any = None, **changes: Any) -> Config:
    """The acceptor's configuration as lab.dicom.pacs.make_config makes it, with changes."""
    config = Config(frozenset({"PACS"}), 16384, SUPPORTED, store.scratch.take,
                    functools.partial(Archive(store).store_file, defer_index=True), 10,
                    store.settle if settle is None else settle)
    return dataclasses.replace(config, **changes)


@contextlib.contextmanager
def serving(config: Config, **kw: Any) -> Iterator[AssociationServer]:
    """The archive's association server on a loopback port, for the duration."""
    server = AssociationServer(config, listen("127.0.0.1", 0, 64), **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def acceptor(store: Store) -> Iterator[tuple[int, Config]]:
    """The association server: each connection served, in a thread, by the acceptor."""
    config = make_config(store)
    with serving(config) as server:
        yield server.port, config


def _meta() -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _file(tmp_path: Path, sop: str = SOP, **kw: Any) -> Path:
    ds = make_dataset(sop, **kw)
    ds.file_meta = _meta()
    path = tmp_path / f"{sop}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_pynetdicom_scu_echo_store_against_the_acceptor(
        acceptor: tuple[int, Config], store: Store, tmp_path: Path) -> None:
    port, _ = acceptor
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context("1.2.3.4.5.6", ExplicitVRLittleEndian)  # not supported
    assoc = ae.associate("127.0.0.1", port, ae_title="PACS", max_pdu=0)
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == 16384
    results = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
    assert results == {"1.2.3.4.5.6": pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED}
    assert assoc.send_c_echo().Status == 0
    big = make_dataset(SOP, pixels=bytes(300_000))
    big.file_meta = _meta()
    assert assoc.send_c_store(big).Status == 0
    bad = make_dataset("1.2.3.99", study="not a UID")
    bad.file_meta = _meta()
    assert assoc.send_c_store(bad).Status == 0xC000  # refused, association goes on
    assoc.release()
    assert assoc.is_released
    obj = store.get(SOP)
    assert obj is not None and dcmread(obj.path).PixelData == bytes(300_000)
    assert store.count() == 1 and not _received_left(store)


def test_stored_rows_are_written_after_the_answers(store: Store, tmp_path: Path) -> None:
    """The acceptor settles the store after each C-STORE-RSP (rows are written once a batch
    has gathered) and before it answers an A-RELEASE-RQ (what is left is written): the index,
    read by a connection of its own, holds the three rows as soon as the peer is released (a
    C-MOVE's final response, sent after its sub-association's release, can count on them)."""
    seen: list[tuple[bool, int, int]] = []

    def settle(final: bool) -> None:
        before = _index_rows(store.root)
        store.settle(final)
        seen.append((final, before, _index_rows(store.root)))

    config = make_config(store, settle)
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(target=lambda: Acceptor(config, listener.accept()[0]).serve())
    server.start()
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.getsockname()[1], ae_title="PACS")
    for n in range(3):
        ds = make_dataset(f"1.2.3.{n}")
        ds.file_meta = _meta()
        assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    at_release = _index_rows(store.root)  # not waiting for the acceptor's thread to end
    server.join(10)
    listener.close()
    assert at_release == 3
    assert seen == [(False, 0, 0), (False, 0, 0), (False, 0, 0), (True, 0, 3), (True, 3, 3)]


def _index_rows(root: Path) -> int:
    with sqlite3.connect(root / "index.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])


def test_wrong_called_ae_is_rejected(acceptor: tuple[int, Config]) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", acceptor[0], ae_title="NOT_PACS")
    assert assoc.is_rejected
    with pytest.raises(AssociationError, match="called AE title not recognized"):
        open_association("127.0.0.1", acceptor[0], called="OTHER", calling="MODALITY",
                         contexts=[(Verification, [ImplicitVRLittleEndian])], max_pdu=0,
                         timeout=5)


def test_transfer_syntax_negotiation(acceptor: tuple[int, Config]) -> None:
    assoc, _ = open_association(
        "127.0.0.1", acceptor[0], called="PACS", calling="MODALITY", max_pdu=0, timeout=5,
        contexts=[(CTImageStorage, ["1.2.840.10008.1.2.4.50", ImplicitVRLittleEndian]),
                  (CTImageStorage, ["1.2.840.10008.1.2.4.50"])])
    assert assoc.accepted == {1: ImplicitVRLittleEndian}  # context 3: no syntax supported
    assoc.release()


def test_cut_off_dataset_leaves_nothing(acceptor: tuple[int, Config], store: Store) -> None:
    """A C-STORE whose dataset stops half way, then an A-ABORT or a dropped connection."""
    for ending in (pdu.encode_abort(0, 0), b""):
        assoc, _ = open_association("127.0.0.1", acceptor[0], called="PACS",
                                    calling="MODALITY", max_pdu=0, timeout=5,
                                    contexts=[(CTImageStorage, [ExplicitVRLittleEndian])])
        from lab.dicom.ul import command as cmd
        for piece in pdu.fragments(1, True, cmd.store_rq(1, CTImageStorage, SOP), 0):
            assoc.link.send(piece)
        assoc.link.send(pdu.pdu(pdu.P_DATA_TF, pdu.pdv(1, 0, b"\x08\x00" * 500)))
        assoc.link.send(ending)
        assoc.link.close()
    _wait_for(lambda: not _received_left(store))
    assert store.count() == 0


@pytest.mark.parametrize("garbage", [
    b"\x04\x00\x00\x00\x00\x08\x00\x00\x00\x04\x07\x03zz",  # PDV on an unaccepted context
    b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x01\x01\x03",  # PDV length below 2
    b"\x01\x00\x00\x00\x00\x04abcd",  # a second A-ASSOCIATE-RQ
    b"\x0a\x00\x00\x00\x00\x00",  # no such PDU type
])
def test_malformed_pdus_are_aborted(acceptor: tuple[int, Config], garbage: bytes) -> None:
    assoc, _ = open_association("127.0.0.1", acceptor[0], called="PACS", calling="MODALITY",
                                max_pdu=0, timeout=5,
                                contexts=[(CTImageStorage, [ExplicitVRLittleEndian])])
    assoc.link.send(garbage)
    kind, length = assoc.link.header()
    assert kind == pdu.A_ABORT and assoc.link.body(length)[2] == 2  # source: service provider
    assoc.link.close()


def _received_left(store: Store) -> list[Path]:
    """Files in the store's tmp/ holding data (the pool's empty spares do not count). The
    acceptor may remove a file between the listing and its stat: a vanished file holds nothing."""
    left = []
    for p in store.tmp_dir.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_size:
                left.append(p)
    return left


def _wait_for(condition: Any) -> None:
    import time

    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_requestor_stores_into_pynetdicom_within_its_maximum(tmp_path: Path) -> None:
    received: list[bytes] = []
    pdata: list[int] = []

    def on_store(event: Any) -> int:
        received.append(bytes(event.request.DataSet.getvalue()))
        return 0

    ae = AE(ae_title="PACS")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.maximum_pdu_size = 8192
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_PDU_RECV, lambda e: pdata.append(len(e.pdu.encode()) - 6)
         if e.pdu.pdu_type == 4 else None)])
    assert server is not None
    try:
        files = [_file(tmp_path, f"1.2.3.{i}", pixels=bytes([i]) * 40_000) for i in (1, 2)]
        assoc, _ = open_association("127.0.0.1", server.server_address[1], called="PACS",
                                    calling="MODALITY", max_pdu=0, timeout=5,
                                    contexts=[(CTImageStorage, [ExplicitVRLittleEndian])])
        statuses = [assoc.store_status(read_part10(f), i, 0) for i, f in enumerate(files, 1)]
        assoc.release()
    finally:
        server.shutdown()
    assert statuses == [0, 0]
    for f, got in zip(files, received, strict=True):
        assert got == f.read_bytes()[read_part10(f).offset:]
    assert pdata and max(pdata) == 8192


def test_part10_reader_refuses_non_dicom(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(bytes(128) + b"DICM" + struct.pack("<HH2sHL", 2, 0, b"UL", 4, 1000))
    with pytest.raises(ValueError, match="truncated"):
        read_part10(path)
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a DICOM Part-10 file"):
        read_part10(path)
