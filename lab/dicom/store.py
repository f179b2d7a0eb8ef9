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
reading and writing of encoded bytes is :mod:`lab.dicom.encoded`; what the index holds, and
its table, is :mod:`lab.dicom.schema`.

Crash safety rests on one ordering: a file is written in ``tmp/`` and fsync'ed, renamed into
``objects/`` (atomic on POSIX; the directory is fsync'ed too), and only then is its index row
committed. At any crash the index may thus lack a row, or hold a stale row for a complete file,
but it never describes a missing or partial file; :meth:`Store.open` repairs the rest. The index
is derived data: it can always be rebuilt from the files. The fsyncs make an acknowledged
object survive a power cut: a dataset received into a file of the scratch pool
(:mod:`lab.dicom.scratch`, names made durable in advance) needs one ``fdatasync``, and
:meth:`Store.open` finishes its move if the rename did not reach the disk; any other file needs
two flushes (the file, then its directory). A store opened with ``sync=False`` skips them all,
keeping the ordering and the repair.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.datadict import tag_for_keyword

from lab.dicom.encoded import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    UID_PATTERN,
    Parsed,
    StoreError,
    file_meta,
    parse,
    split_part10,
)
from lab.dicom.schema import (
    ATTRIBUTES,
    COLUMNS,
    COMPUTED,
    DDL,
    LEVELS,
    LISTS,
    OBJECT_COLUMNS,
    ORDER,
    SCHEMA_VERSION,
    UNIQUE_KEYS,
    Level,
    available,
    study_paths,
    where_clause,
)
from lab.dicom.scratch import ScratchPool, is_pool_file

#: The public interface, with what it re-exports from the modules it was split into.
__all__ = ["ATTRIBUTES", "COMPUTED", "IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME",
           "LEVELS", "UNIQUE_KEYS", "Level", "Recovery", "Store", "StoreError", "StoredObject",
           "available", "study_paths"]

log = logging.getLogger(__name__)

#: What the index decodes of each dataset (keyword: tag).
_WANTED = {k: tag_for_keyword(k) or 0 for k in ATTRIBUTES}


@dataclass(frozen=True)
class StoredObject:
    """One stored SOP Instance: its Part-10 file and what a C-MOVE/C-GET needs to send it."""

    path: Path
    size: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    series_instance_uid: str


@dataclass(frozen=True)
class Recovery:
    """What :meth:`Store.open` repaired: scratch files removed, rows dropped (file gone), files
    (re)indexed (renamed into place but not committed), and files it could not index."""

    removed_temp: int = 0
    dropped_rows: int = 0
    indexed: int = 0
    unreadable: tuple[Path, ...] = ()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the store --------------------------------------------------------------------------------


class Store:
    """Files plus index under one root directory; open with :meth:`open`, close (or use as a
    context manager) when done. Thread-safe: pynetdicom runs each association in its own
    thread. One process at a time: :meth:`open` takes an exclusive lock on the directory."""

    def __init__(self, root: Path, db: sqlite3.Connection, lock_fd: int,
                 sync: bool = True) -> None:
        self.root = root
        self.sync = sync
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self.recovery = Recovery()
        #: Scratch files to receive datasets into (see lab.dicom.scratch).
        self.scratch = ScratchPool(self.tmp_dir, sync)
        self._db = db
        self._lock_fd = lock_fd
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: Path, *, sync: bool = True) -> Store:
        """Create or open the store at ``root`` and bring the index back in line with the
        files (see :attr:`recovery`). ``sync=False`` skips the fsyncs: an object is then safe
        from a crash of the process but not from a power cut (the index still never describes
        a partial file once :meth:`open` has repaired it)."""
        root = Path(root).absolute()
        for path in (root, root / "objects", root / "tmp"):
            path.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreError(f"store {root} is open in another process") from None
        try:
            db = sqlite3.connect(root / "index.sqlite", isolation_level=None,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode = WAL")
            # A commit lost to a power cut only leaves a file unindexed, which open() repairs.
            db.execute("PRAGMA synchronous = NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] not in (0, SCHEMA_VERSION):
                db.execute("DROP TABLE IF EXISTS instances")  # rebuilt from the files below
            db.executescript(DDL)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise StoreError(f"cannot open the index of {root}: {exc}") from exc
        store = cls(root, db, lock_fd, sync)
        try:
            store.recovery = store._recover()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()
            os.close(self._lock_fd)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- storing ---------------------------------------------------------------------------

    def store_encoded(self, dataset: bytes | Path, transfer_syntax_uid: str,
                      sop_class_uid: str, sop_instance_uid: str) -> StoredObject:
        """Store a dataset as received in a C-STORE request (PS3.4 B.2), without decoding it.

        ``dataset`` is the encoded dataset (bytes, or a file), optionally behind a Part-10
        header whose File Meta Information must then agree with the three UIDs, which come from
        the request and its presentation context. A file inside :attr:`tmp_dir` (pynetdicom's
        chunked receive, with ``tempfile.tempdir`` pointed there) is the store's scratch and is
        moved into place when it has that header; any other file is copied and left as is. An
        existing instance of the same SOP Instance UID is replaced atomically.

        Raises StoreError, leaving nothing behind, if the dataset is malformed, truncated or
        inconsistent with the request; OSError if the disk fails.
        """
        ts, sop_class, sop = (str(u).strip(" \0") for u in
                              (transfer_syntax_uid, sop_class_uid, sop_instance_uid))
        for name, uid in (("Transfer Syntax", ts), ("SOP Class", sop_class), ("SOP Instance", sop)):
            if len(uid) > 64 or not UID_PATTERN.fullmatch(uid):
                raise StoreError(f"{name} UID {uid!r} is not a valid UID (PS3.5 9.1)")
        if isinstance(dataset, Path):
            return self._store_file(dataset, ts, sop_class, sop)
        parsed = parse(dataset, ts, sop_class, sop, _WANTED)
        tmp = self._write_temp(file_meta(ts, sop_class, sop), memoryview(dataset)[parsed.offset:])
        return self._commit(tmp, parsed.values, ts)

    def _store_file(self, source: Path, ts: str, sop_class: str, sop: str) -> StoredObject:
        with source.open("rb") as src:
            if os.fstat(src.fileno()).st_size == 0:
                raise StoreError("empty dataset")
            with mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                parsed = parse(mapped, ts, sop_class, sop, _WANTED)
            if parsed.has_meta and source.absolute().parent == self.tmp_dir:
                if not is_pool_file(source):
                    self._fsync(src.fileno())
                    return self._commit(source, parsed.values, ts)
                if self.sync:  # its name is on disk already: one flush makes it durable
                    os.fdatasync(src.fileno())
                return self._commit(source, parsed.values, ts, name_durable=True)
            src.seek(parsed.offset)
            tmp = self._write_temp(file_meta(ts, sop_class, sop), src)
        return self._commit(tmp, parsed.values, ts)

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

    def _final_path(self, sop: str) -> Path:
        fan = hashlib.sha1(sop.encode(), usedforsecurity=False).hexdigest()[:2]
        return self.objects_dir / fan / f"{sop}.dcm"

    def _commit(self, tmp: Path, values: dict[str, str], ts: str,
                name_durable: bool = False) -> StoredObject:
        """Rename a complete, flushed file into place, then index it: this order is what keeps
        the index from ever describing a missing or partial file. The new name is flushed
        unless the old one was durable (a pool file: recovery finishes the move). An object a
        pool file replaces is unlinked first rather than renamed over: ext4 (auto_da_alloc)
        writes out the data of a file renamed over another there and then, milliseconds per
        object; a crash between the two leaves the new object to recovery, and a C-MOVE of
        that very instance at that very moment finds no file."""
        final = self._final_path(values["SOPInstanceUID"])
        with self._lock:
            try:
                if not final.parent.is_dir():
                    final.parent.mkdir()
                    self._fsync_dir(self.objects_dir)
                if name_durable:
                    final.unlink(missing_ok=True)
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if not name_durable:
                self._fsync_dir(final.parent)
            row = self._upsert(final, values, ts)
        return self._object(row)

    def _upsert(self, path: Path, values: dict[str, str], ts: str) -> dict[str, Any]:
        stat = path.stat()
        row = {**values, "TransferSyntaxUID": ts, "path": path.relative_to(self.root).as_posix(),
               "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        sql = (f"INSERT OR REPLACE INTO instances ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(COLUMNS))})")
        try:  # one statement: SQLite commits it on its own (autocommit, isolation_level=None)
            self._db.execute(sql, [row[c] for c in COLUMNS])
        except sqlite3.Error as exc:  # the file is complete: the next open() indexes it
            raise StoreError(f"cannot index {path.name}: {exc}") from exc
        return row

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- reading ---------------------------------------------------------------------------

    def _object(self, row: Mapping[str, Any]) -> StoredObject:
        return StoredObject(self.root / row["path"], *(row[c] for c in OBJECT_COLUMNS[1:]))

    def count(self) -> int:
        """Number of stored SOP Instances."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def get(self, sop_instance_uid: str) -> StoredObject | None:
        """The stored object of that SOP Instance UID, if any."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(OBJECT_COLUMNS)} FROM instances "
                                   "WHERE SOPInstanceUID = ?", (sop_instance_uid,)).fetchone()
        return None if row is None else self._object(row)

    def files_for(self, level: Level, keys: Mapping[str, str | Collection[str]],
                  ) -> list[StoredObject]:
        """The stored objects under the entities named by unique keys (C-MOVE/C-GET, PS3.4
        C.4.2): ``keys`` must hold the unique key of ``level`` and may hold those of the levels
        above; each maps to one value or a list of values (list of UID matching)."""
        if level not in LEVELS:
            raise StoreError(f"unknown level {level!r}")
        allowed = {UNIQUE_KEYS[lv] for lv in LEVELS[: LEVELS.index(level) + 1]}
        if UNIQUE_KEYS[level] not in keys or set(keys) - allowed:
            raise StoreError(f"a {level}-level retrieve needs {UNIQUE_KEYS[level]} and may add "
                             f"only unique keys of the levels above, not {sorted(keys)}")
        where, params = where_clause(keys)
        sql = (f"SELECT {', '.join(OBJECT_COLUMNS)} FROM instances{where} "
               "ORDER BY StudyInstanceUID, SeriesInstanceUID, CAST(InstanceNumber AS INTEGER), "
               "SOPInstanceUID")
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [self._object(row) for row in rows]

    def records(self, level: Level, restrict: Mapping[str, str | Collection[str]] | None = None,
                ) -> list[dict[str, Any]]:
        """One record per entity at ``level`` (keyed by the keywords of :func:`available`),
        optionally restricted to entities whose attributes take the given values. Counts are
        ints, ModalitiesInStudy and SOPClassesInStudy sorted lists, the rest text ('' when
        absent). Matching proper is :mod:`lab.dicom.query`'s business."""
        names = available(level)
        columns = [n if n in ATTRIBUTES else f"{COMPUTED[n][1]} AS {n}" for n in names]
        where, params = where_clause(restrict or {})
        group = "" if level == "IMAGE" else f" GROUP BY {UNIQUE_KEYS[level]}"
        sql = f"SELECT {', '.join(columns)} FROM instances{where}{group} ORDER BY {ORDER[level]}"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [{n: sorted(filter(None, (row[n] or "").split(","))) if n in LISTS else row[n]
                 for n in names} for row in rows]

    # --- recovery --------------------------------------------------------------------------

    def _recover(self) -> Recovery:
        """Remove scratch files, drop rows whose file is gone, and (re)index files that no row
        describes or whose row is stale (a crash between rename and commit)."""
        removed = rolled = 0
        for leftover in self.tmp_dir.iterdir():
            if is_pool_file(leftover) and leftover.stat().st_size and self._roll_forward(leftover):
                rolled += 1
                continue
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
            removed += 1
        rows = {r["path"]: (r["size"], r["mtime_ns"])
                for r in self._db.execute("SELECT path, size, mtime_ns FROM instances")}
        found = sorted(self.objects_dir.glob("*/*.dcm"))
        files = {p.relative_to(self.root).as_posix(): p for p in found}
        gone = [rel for rel in rows if rel not in files]
        todo = [p for rel, p in files.items()
                if rows.get(rel) != ((st := p.stat()).st_size, st.st_mtime_ns)]
        with self._transaction():
            self._db.executemany("DELETE FROM instances WHERE path = ?", [(g,) for g in gone])
        unreadable = []
        for path in todo:
            try:
                self._index_file(path)
            except StoreError as exc:
                log.warning("cannot index %s: %s", path, exc)
                unreadable.append(path)
                with self._transaction():
                    self._db.execute("DELETE FROM instances WHERE path = ?",
                                     (path.relative_to(self.root).as_posix(),))
        return Recovery(removed, len(gone), len(todo) - len(unreadable) + rolled,
                        tuple(unreadable))

    def _roll_forward(self, path: Path) -> bool:
        """Store a complete received dataset left in a pool file by a crash (see
        lab.dicom.scratch); False if it is not one (partial, refused: then removed)."""
        try:
            ts, parsed = self._read_part10(path)
        except StoreError:
            return False
        uids = (ts, parsed.values["SOPClassUID"], parsed.values["SOPInstanceUID"])
        if not all(len(u) <= 64 and UID_PATTERN.fullmatch(u) for u in uids):
            return False  # as store_encoded refuses it (and the UID names the file)
        self._commit(path, parsed.values, ts)
        log.warning("stored %s, received before a crash", parsed.values["SOPInstanceUID"])
        return True

    def _index_file(self, path: Path) -> None:
        ts, parsed = self._read_part10(path)
        if self._final_path(parsed.values["SOPInstanceUID"]) != path:
            raise StoreError(f"its SOP Instance UID {parsed.values['SOPInstanceUID']} belongs "
                             "elsewhere")
        self._upsert(path, parsed.values, ts)

    def _read_part10(self, path: Path) -> tuple[str, Parsed]:
        with path.open("rb") as src:
            if os.fstat(src.fileno()).st_size == 0:
                raise StoreError("empty file")
            with mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                _, meta = split_part10(mapped)
                if meta is None:
                    raise StoreError("not a DICOM Part-10 file")
                ts, sop_class, sop = (str(meta.get(k, "")) for k in ("TransferSyntaxUID",
                                      "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"))
                return ts, parse(mapped, ts, sop_class, sop, _WANTED)
