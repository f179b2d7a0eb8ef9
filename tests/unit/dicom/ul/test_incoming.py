"""A C-STORE dataset received into a scratch file (lab.dicom.ul.incoming): the file holds the File
Meta Information (PS3.10 7.1) and then exactly the bytes received, in order."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from lab.dicom.data.encoded import file_meta, split_part10
from lab.dicom.ul import command as cmd
from lab.dicom.ul.incoming import HEAD, Incoming
from lab.dicom.ul.link import Link

TS, SOP_CLASS, SOP = "1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"


def _incoming(tmp_path: Path) -> Incoming:
    path = tmp_path / "recv-1.dcm"
    path.touch()
    fields = {cmd.AFFECTED_SOP_CLASS: SOP_CLASS.encode(), cmd.AFFECTED_SOP_INSTANCE: SOP.encode()}
    return Incoming(fields, 1, TS, take=lambda: (os.open(path, os.O_WRONLY), path))


def test_header_then_every_piece_in_order(tmp_path: Path) -> None:
    incoming = _incoming(tmp_path)
    pieces = [b"\x08\x00\x16\x00UI\x04\x00", b"1.23", bytes(range(256)) * 300]
    for piece in pieces:
        incoming.write(memoryview(piece))
    incoming.close()
    data = incoming.path.read_bytes()
    assert data == file_meta(TS, SOP_CLASS, SOP) + b"".join(pieces)
    offset, meta = split_part10(data)
    assert meta is not None and meta["MediaStorageSOPInstanceUID"] == SOP
    assert data[offset:] == b"".join(pieces)
    assert data.startswith(incoming.head) and len(incoming.head) > offset  # what was kept
    assert incoming.stat is not None and incoming.stat.st_size == len(data)


def test_the_first_bytes_are_kept_as_well_as_written(tmp_path: Path) -> None:
    """From a socket: HEAD bytes of the dataset pass through memory and are kept (with the
    File Meta Information before them), the rest goes to the file by splice(2)."""
    dataset = bytes(range(256)) * 1024
    ours, theirs = socket.socketpair()
    sender = threading.Thread(target=theirs.sendall, args=(dataset,))
    sender.start()
    try:
        incoming = _incoming(tmp_path)
        link = Link(ours, 10.0)
        incoming.receive(link, 100_000)
        incoming.receive(link, len(dataset) - 100_000)
        incoming.close()
    finally:
        sender.join()
        ours.close()
        theirs.close()
    data = incoming.path.read_bytes()
    meta = file_meta(TS, SOP_CLASS, SOP)
    assert data == meta + dataset
    assert incoming.head == meta + dataset[:HEAD]
    assert incoming.stat is not None and incoming.stat.st_size == len(data)


def test_an_empty_dataset_still_gets_its_header(tmp_path: Path) -> None:
    incoming = _incoming(tmp_path)
    incoming.close()
    assert incoming.path.read_bytes() == file_meta(TS, SOP_CLASS, SOP)


def test_discard_removes_the_file(tmp_path: Path) -> None:
    incoming = _incoming(tmp_path)
    incoming.write(memoryview(b"abcd"))
    incoming.discard()
    assert not incoming.path.exists()
