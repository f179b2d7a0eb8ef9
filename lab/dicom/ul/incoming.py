"""A dataset the archive's acceptor is receiving (lab.dicom.ul.acceptor): a C-STORE dataset streamed
into a scratch file behind its File Meta Information (PS3.10 7.1), a C-FIND/C-MOVE identifier
(or an N-ACTION dataset) into a bounded buffer, or a refused request's dataset read and dropped."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from lab.dicom.data.encoded import file_meta
from lab.dicom.ul import command as cmd
from lab.dicom.ul.link import Link
from lab.dicom.ul.pdu import PduError

#: The largest identifier taken (encoded, and inflated): a query is a few hundred bytes.
IDENTIFIER_LIMIT = 1 << 18
#: The first bytes of a C-STORE dataset kept in memory as well as written, so that the store
#: checks and indexes it without reading the file back (an image's attributes come before its
#: Pixel Data: a few KiB); Store.store_encoded reads the file when they are not enough.
HEAD = 1 << 14
#: Gives a new scratch file, open for writing (lab.dicom.archive.scratch.ScratchPool.take).
ScratchFile = Callable[[], tuple[int, Path]]


class Incoming:
    """A dataset being received: into a scratch file (a C-STORE), into a bounded buffer (an
    identifier), or nowhere (a refused request, whose response waits for its last fragment)."""

    def __init__(self, fields: Mapping[int, bytes], cid: int, ts: str, *,
                 take: ScratchFile | None = None, collect: bool = False,
                 refusal: int = 0, limit: int = IDENTIFIER_LIMIT) -> None:
        self.fields, self.cid, self.ts, self.refusal = fields, cid, ts, refusal
        self.sop_class = cmd.uid(fields, cmd.AFFECTED_SOP_CLASS) or ""
        self.sop_instance = cmd.uid(fields, cmd.AFFECTED_SOP_INSTANCE) or ""
        self.buffer = bytearray() if collect else None
        self.limit = limit  # of what is collected
        self.fd, self.path = -1, Path()
        #: The File Meta Information, written together with the first piece of the dataset.
        self._head = b""
        #: A C-STORE's file as written, up to its File Meta Information and HEAD bytes of the
        #: dataset; its status once closed.
        self.head = b""
        self.stat: os.stat_result | None = None
        if take is not None:
            self.fd, self.path = take()
            self._head = file_meta(ts, self.sop_class, self.sop_instance)

    def receive(self, link: Link, n: int) -> None:
        """The next ``n`` bytes of the dataset, from ``link``: into the scratch file without
        passing through this process where the socket allows it (Link.drain), else through
        :meth:`write`."""
        if self.fd >= 0 and self.buffer is None and link.plain:
            if self._head:  # the dataset's first bytes through memory (HEAD)
                first = min(n, HEAD)
                self.write(memoryview(link.read(first)))
                n -= first
            if n:
                link.drain(n, self.fd)
        else:
            link.stream(n, self.write)

    def write(self, data: memoryview) -> None:
        if self.buffer is not None:
            if len(self.buffer) + len(data) > self.limit:
                raise PduError(f"dataset longer than {self.limit} bytes")
            self.buffer += data
        if self.fd < 0:
            return
        if self._head:  # one writev(2) for the header and the first piece
            head, self._head = self._head, b""
            self.head = head + data[:HEAD]
            done = os.writev(self.fd, (head, data))
            if done < len(head):
                self._write_all(memoryview(head)[done:])
                done = len(head)
            data = data[done - len(head):]
        self._write_all(data)

    def _write_all(self, data: memoryview) -> None:
        while data:
            data = data[os.write(self.fd, data):]

    def close(self) -> None:
        if self.fd >= 0:
            if self._head:  # an empty dataset: the file still gets its header
                self._write_all(memoryview(self._head))
                self.head, self._head = self._head, b""
            self.stat = os.fstat(self.fd)
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        if self.path != Path():
            self.path.unlink(missing_ok=True)
