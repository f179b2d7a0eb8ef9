"""A dataset moved from a plain socket into its file by splice(2) (lab.dicom.ul.link.Link.drain,
lab.dicom.ul.incoming.Incoming.receive): every byte in order, the part already read ahead
included; a stalled peer bounded by the deadline; a peer gone in the middle reported."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.dicom.data.encoded import file_meta
from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.incoming import Incoming
from lab.dicom.ul.link import PIPE_SIZE, Link, LinkClosed

TS, SOP_CLASS, SOP = "1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on the loopback: (sender, receiver)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
    with sender, receiver:
        yield sender, receiver


def _send_later(sock: socket.socket, pieces: list[bytes], pause: float = 0.0) -> threading.Thread:
    def run() -> None:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(pause)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_drain_moves_every_byte_in_order_read_ahead_part_first(
        tcp: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    sender, receiver = tcp
    data = os.urandom(3 * PIPE_SIZE + 12345)  # more than the pipe holds: several splices
    header = pdu.HEADER.pack(pdu.P_DATA_TF, len(data))
    sender.sendall(header + data[:1000])  # the start arrives with the header
    time.sleep(0.05)
    link = Link(receiver, 5)  # no lookahead: the first read takes what is there
    assert link.header() == (pdu.P_DATA_TF, len(data))
    thread = _send_later(sender, [data[1000:]])
    target = tmp_path / "out"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        link.drain(len(data), fd)
    finally:
        os.close(fd)
    thread.join()
    assert target.read_bytes() == data
    sender.sendall(b"after")  # the link stops exactly at the end of what it was asked for
    assert link.read(5) == b"after"
    link.close()


def test_a_lookahead_leaves_the_dataset_in_the_socket(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = tcp
    sender.sendall(pdu.HEADER.pack(pdu.P_DATA_TF, 106) + pdu.PDV_HEADER.pack(102, 1, 0)
                   + b"x" * 100)
    time.sleep(0.05)
    link = Link(receiver, 5)
    link.lookahead = pdu.PDV_HEADER.size
    link.header()
    assert link.pdv_header() == (100, 1, 0)
    assert link._end - link._start == 0  # nothing of the data was read into the buffer
    link.close()


def test_a_stalled_peer_is_bounded_by_the_deadline(
        tcp: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    sender, receiver = tcp
    sender.sendall(b"y" * 1000)  # then nothing: 9000 bytes are still owed
    link = Link(receiver, 30)
    link.deadline(0.3)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o644)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            link.drain(10_000, fd)
    finally:
        os.close(fd)
    assert time.monotonic() - start < 5
    link.close()


def test_a_peer_gone_in_the_middle_is_reported(
        tcp: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    sender, receiver = tcp
    sender.sendall(b"z" * 5000)
    sender.close()
    link = Link(receiver, 5)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(LinkClosed):
            link.drain(10_000, fd)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"z" * 5000
    link.close()


def test_incoming_receive_writes_the_header_then_the_spliced_dataset(
        tcp: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    sender, receiver = tcp
    path = tmp_path / "recv-1.dcm"
    path.touch()
    fields = {cmd.AFFECTED_SOP_CLASS: SOP_CLASS.encode(), cmd.AFFECTED_SOP_INSTANCE: SOP.encode()}
    incoming = Incoming(fields, 1, TS, take=lambda: (os.open(path, os.O_WRONLY), path))
    pieces = [os.urandom(70_000), os.urandom(131_066), os.urandom(5)]
    thread = _send_later(sender, pieces, pause=0.01)
    link = Link(receiver, 5)
    link.lookahead = pdu.PDV_HEADER.size
    for piece in pieces:
        incoming.receive(link, len(piece))
    incoming.close()
    thread.join()
    assert path.read_bytes() == file_meta(TS, SOP_CLASS, SOP) + b"".join(pieces)
    link.close()


def test_without_a_pipe_the_bytes_go_through_the_buffer(
        tcp: tuple[socket.socket, socket.socket], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pipe(flags: int) -> tuple[int, int]:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "pipe2", no_pipe)
    sender, receiver = tcp
    data = os.urandom(300_000)
    thread = _send_later(sender, [data])
    link = Link(receiver, 5)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        link.drain(len(data), fd)
    finally:
        os.close(fd)
    thread.join()
    assert (tmp_path / "out").read_bytes() == data
    link.close()
