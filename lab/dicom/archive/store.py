"""The PACS's archive: DICOM Part-10 files on disk plus an SQLite index, safe against crashes.

Layout under the store's root::

    index.sqlite                  the index (WAL mode): one row per stored SOP Instance
    objects/<xx>/<SOP UID>.dcm    the files; <xx> = two hex digits of the UID's SHA-1 (fan-out)
    tmp/                          scratch: files being written (and pynetdicom's chunked receives)
    lock                          flock'ed by the one process that has the store open

Storing never decodes the dataset received over the network: the element headers of the encoded
bytes are walked (PS3.5 7.1, 7.5) to prove the dataset complete and well formed, only the
attributes the index needs are decoded, and the bytes are written unchanged after a File Meta
Information header (PS3.10 7.1). So storing costs little more than writing the bytes. That
reading and writing of encoded bytes is :mod:`lab.dicom.data.encoded`; what the index holds, and
its table, is :mod:`lab.dicom.archive.schema`; its rows and lookups, :mod:`lab.dicom.archive.index`.

Crash safety rests on one ordering: a file is written in ``tmp/`` and fsync'ed, renamed into
``objects/`` (atomic on POSIX; the directory is fsync'ed too), and only then is its index row
committed (at once, or soon after with ``defer_index``). At any crash the index may thus lack a
row, or hold a stale row for a complete file, but it never describes a missing or partial file;
:meth:`Store.open` repairs the rest. The index is derived data: it can always be rebuilt from
the files. The fsyncs make an acknowledged object survive a power cut: a dataset received into
a file of the scratch pool (:mod:`lab.dicom.archive.scratch`, names made durable in advance) needs
one ``fdatasync``, and :meth:`Store.open` finishes its move if the rename did not reach the disk;
any other file needs two flushes (the file, then its directory). A store opened with
``sync=False`` skips them all, keeping the ordering and the repair.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import shutil
import tempfile
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from lab.dicom.archive.index import SETTLE_BATCH, Index, StoredObject
from lab.dicom.archive.recovery import Recovery, recover
from lab.dicom.archive.schema import (
    ATTRIBUTES,
    COMPUTED,
    LEVELS,
    UNIQUE_KEYS,
    WANTED,
    Level,
    available,
    study_paths,
)
from lab.dicom.archive.scratch import ScratchPool, is_pool_file
from lab.dicom.data.encoded import (
    UID_PATTERN,
    Incomplete,
    StoreError,
    file_meta,
    parse,
)

#: The public interface, with what it re-exports from the modules it was split into.
__all__ = ["ATTRIBUTES", "COMPUTED", "LEVELS", "SETTLE_BATCH", "UNIQUE_KEYS", "Level", "Recovery",
           "Store", "StoreError", "StoredObject", "available", "study_paths"]

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _start_writeback(fd: int) -> None:
    """Start writing the file's dirty pages to disk without waiting for them (Linux:
    POSIX_FADV_DONTNEED submits them, WB_SYNC_NONE, and drops only pages already clean), so
    that the checks made before its fdatasync run while the disk works. Measured here: the
    fdatasync of a 0.5 MB object then waits 0.5 ms instead of 1 ms."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _make_fan_out(objects: Path, sync: bool) -> None:
    """Create the 256 fan-out directories of ``objects/`` that are missing (their names made
    durable by one flush), so that storing never creates a directory: that costs a mkdir and a
    flush of ``objects/``, about 0.5 ms, on the first object of each."""
    made = False
    for fan in range(256):
        path = objects / f"{fan:02x}"
        if not path.is_dir():
            path.mkdir()
            made = True
    if made and sync:
        _fsync_dir(objects)


# --- the store --------------------------------------------------------------------------------


class Store:
    """Files plus index under one root directory; open with :meth:`open`, close (or use as a
    context manager) when done. Thread-safe: pynetdicom runs each association in its own
    thread. One process at a time: :meth:`open` takes an exclusive lock on the directory."""

    def __init__(self, root: Path, index: Index, lock_fd: int, sync: bool = True) -> None:
        self.root = root
        self.sync = sync
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self._tmp_str = str(self.tmp_dir)
        self._objects_str = str(self.objects_dir)
        self.recovery = Recovery()
        #: Scratch files to receive datasets into (see lab.dicom.archive.scratch).
        self.scratch = ScratchPool(self.tmp_dir, sync)
        self.index = index
        self._lock_fd = lock_fd
        self._lock = threading.Lock()  # of the files: a rename and its row go together

    @classmethod
    def open(cls, root: Path, *, sync: bool = True) -> Store:
        """Create or open the store at ``root`` and bring the index back in line with the
        files (see :attr:`recovery`). ``sync=False`` skips the fsyncs: an object is then safe
        from a crash of the process but not from a power cut (the index still never describes
        a partial file once :meth:`open` has repaired it)."""
        root = Path(root).absolute()
        for path in (root, root / "objects", root / "tmp"):
            path.mkdir(parents=True, exist_ok=True)
        _make_fan_out(root / "objects", sync)
        lock_fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreError(f"store {root} is open in another process") from None
        try:
            index = Index.open(root)  # one of an older schema comes back empty: rebuilt below
        except StoreError:
            os.close(lock_fd)
            raise
        store = cls(root, index, lock_fd, sync)
        try:
            store.recovery = recover(store)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.scratch.close()
        with self._lock:
            self.index.close()
            os.close(self._lock_fd)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- storing ---------------------------------------------------------------------------

    def store_encoded(self, dataset: bytes | Path, transfer_syntax_uid: str,
                      sop_class_uid: str, sop_instance_uid: str, *, head: bytes = b"",
                      stat: os.stat_result | None = None,
                      defer_index: bool = False) -> StoredObject:
        """Store a dataset as received in a C-STORE request (PS3.4 B.2), without decoding it.

        ``dataset`` is the encoded dataset (bytes, or a file), optionally behind a Part-10
        header whose File Meta Information must then agree with the three UIDs, which come from
        the request and its presentation context. A file inside :attr:`tmp_dir` (pynetdicom's
        chunked receive, with ``tempfile.tempdir`` pointed there) is the store's scratch and is
        moved into place when it has that header; any other file is copied and left as is. An
        existing instance of the same SOP Instance UID is replaced atomically.

        ``head`` and ``stat``: a file of the scratch pool as its receiver wrote it (our File Meta
        Information and the dataset's first bytes) and its status; the dataset is then checked
        and indexed from them without reading the file, which is read only if they are not
        enough (:class:`~lab.dicom.data.encoded.Incomplete`).

        ``defer_index``: the object's index row is written by :meth:`settle` (or by whatever
        reads the index first) rather than before returning, so that a C-STORE can be answered
        first and the rows of many written at once: the object is in place either way, and a
        crash before its row is written leaves a file without a row, which :meth:`open` indexes.

        Raises StoreError, leaving nothing behind, if the dataset is malformed, truncated or
        inconsistent with the request; OSError if the disk fails.
        """
        ts, sop_class, sop = (str(u).strip(" \0") for u in
                              (transfer_syntax_uid, sop_class_uid, sop_instance_uid))
        for name, uid in (("Transfer Syntax", ts), ("SOP Class", sop_class), ("SOP Instance", sop)):
            if len(uid) > 64 or not UID_PATTERN.fullmatch(uid):
                raise StoreError(f"{name} UID {uid!r} is not a valid UID (PS3.5 9.1)")
        if isinstance(dataset, Path):
            if head and stat is not None:
                stored = self._store_received(dataset, head, stat, ts, sop_class, sop,
                                              defer_index)
                if stored is not None:
                    return stored
            return self._store_file(dataset, ts, sop_class, sop, defer_index)
        parsed = parse(dataset, ts, sop_class, sop, WANTED)
        tmp = self._write_temp(file_meta(ts, sop_class, sop), memoryview(dataset)[parsed.offset:])
        return self.commit_file(tmp, parsed.values, ts, defer_index=defer_index)

    def _store_received(self, source: Path, head: bytes, stat: os.stat_result, ts: str,
                        sop_class: str, sop: str, defer_index: bool) -> StoredObject | None:
        """A pool file checked from its first bytes (see :meth:`store_encoded`); None if they
        are not enough or the file is not one of the pool's."""
        where, name = os.path.split(os.path.abspath(source))
        if where != self._tmp_str or not is_pool_file(name):
            return None
        try:
            parsed = parse(head, ts, sop_class, sop, WANTED, size=stat.st_size)
        except Incomplete:
            return None
        if not parsed.has_meta:
            return None
        if self.sync:  # its name is on disk already: one flush makes it durable
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        return self.commit_file(source, parsed.values, ts, name_durable=True,
                                defer_index=defer_index, stat=stat)

    def _store_file(self, source: Path, ts: str, sop_class: str, sop: str,
                    defer_index: bool) -> StoredObject:
        """Store a file: one descriptor serves the check (a read-only map), the flush and the
        size and time the index records, so a received object costs no path lookup but its
        open and its rename (this runs for every object an association brings)."""
        where, name = os.path.split(os.path.abspath(source))
        in_tmp = where == self._tmp_str
        pool = in_tmp and is_pool_file(name)
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.fstat(fd)
            if stat.st_size == 0:
                raise StoreError("empty dataset")
            if pool and self.sync:
                _start_writeback(fd)  # the disk works while the dataset is checked
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
                parsed = parse(mapped, ts, sop_class, sop, WANTED)
            if parsed.has_meta and in_tmp:
                if not pool:
                    self._fsync(fd)
                    return self.commit_file(source, parsed.values, ts,
                                            defer_index=defer_index, stat=stat)
                if self.sync:  # its name is on disk already: one flush makes it durable
                    os.fdatasync(fd)
                return self.commit_file(source, parsed.values, ts, name_durable=True,
                                        defer_index=defer_index, stat=stat)
            with os.fdopen(fd, "rb", closefd=False) as src:
                src.seek(parsed.offset)
                tmp = self._write_temp(file_meta(ts, sop_class, sop), src)
        finally:
            os.close(fd)
        return self.commit_file(tmp, parsed.values, ts, defer_index=defer_index)

    def _write_temp(self, header: bytes, body: memoryview | BinaryIO) -> Path:
        """Write header + body to a new scratch file and flush it to disk."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="store-", suffix=".part")
        try:
            with open(fd, "wb") as out:
                out.write(header)
                if isinstance(body, memoryview):
                    out.write(body)
                else:
                    shutil.copyfileobj(body, out, 1 << 20)
                out.flush()
                self._fsync(out.fileno())
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)

    def _fsync(self, fd: int) -> None:
        if self.sync:
            os.fsync(fd)

    def _fsync_dir(self, path: Path) -> None:
        if self.sync:
            _fsync_dir(path)

    def final_path(self, sop: str) -> Path:
        fan = hashlib.sha1(sop.encode(), usedforsecurity=False).hexdigest()[:2]
        return Path(f"{self._objects_str}/{fan}/{sop}.dcm")  # one Path made, not three

    def commit_file(self, tmp: Path, values: dict[str, str], ts: str, *,
                name_durable: bool = False, defer_index: bool = False,
                stat: os.stat_result | None = None) -> StoredObject:
        """Rename a complete, flushed file into place, then index it: this order is what keeps
        the index from ever describing a missing or partial file. The new name is flushed
        unless the old one was durable (a pool file: recovery finishes the move). An object a
        pool file replaces is unlinked first rather than renamed over: ext4 (auto_da_alloc)
        writes out the data of a file renamed over another there and then, milliseconds per
        object; a crash between the two leaves the new object to recovery, and a C-MOVE of
        that very instance at that very moment finds no file. ``stat``: the file's, if the
        caller has it (a rename keeps the size and modification time the index records)."""
        final = self.final_path(values["SOPInstanceUID"])
        with self._lock:
            try:
                if name_durable and os.path.lexists(final):
                    os.unlink(final)
                try:
                    os.replace(tmp, final)
                except FileNotFoundError:  # its fan-out directory was removed since open()
                    if not os.path.isfile(tmp):
                        raise
                    final.parent.mkdir()
                    self._fsync_dir(self.objects_dir)
                    os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if not name_durable:
                self._fsync_dir(final.parent)
            return self.index.add(final, values, ts, defer=defer_index, stat=stat)

    def settle(self, final: bool = True) -> None:
        """Write the index rows that stores with ``defer_index`` left (see Index.settle)."""
        self.index.settle(final)

    # --- reading: the index's ----------------------------------------------------------------

    def count(self) -> int:
        """Number of stored SOP Instances."""
        return self.index.count()

    def get(self, sop_instance_uid: str) -> StoredObject | None:
        """The stored object of that SOP Instance UID, if any."""
        return self.index.get(sop_instance_uid)

    def files_for(self, level: Level, keys: Mapping[str, str | Collection[str]],
                  ) -> list[StoredObject]:
        """See :meth:`lab.dicom.archive.index.Index.files_for` (C-MOVE/C-GET)."""
        return self.index.files_for(level, keys)

    def records(self, level: Level, restrict: Mapping[str, str | Collection[str]] | None = None,
                keys: Collection[str] | None = None) -> list[dict[str, Any]]:
        """See :meth:`lab.dicom.archive.index.Index.records` (C-FIND)."""
        return self.index.records(level, restrict, keys)
