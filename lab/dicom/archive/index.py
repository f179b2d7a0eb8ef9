"""The archive's SQLite index, the other half of :mod:`lab.dicom.archive.store`: one row per stored
SOP Instance, and the lookups C-FIND and C-MOVE make on it.

The index is derived data. The store renames a complete file into place before it adds the
file's row, and rebuilds rows from the files when it opens, so a row never describes a missing
or partial file. A row may also be added later than its file (``defer``): the archive answers a
C-STORE first and writes the rows of many objects in one transaction (:meth:`Index.settle`).
Every lookup writes the deferred rows first, so nobody reading the index can tell; a crash
before they are written leaves files without rows, which the store indexes when it opens.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.dicom.archive.schema import (
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
    where_clause,
)
from lab.dicom.data.encoded import StoreError

log = logging.getLogger("lab.dicom.archive.store")

#: Deferred rows written together (see Index.settle).
SETTLE_BATCH = 64
#: Adds or replaces the row of a file (parameters in COLUMNS order).
_UPSERT = (f"INSERT OR REPLACE INTO instances ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(COLUMNS))})")


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


class Index:
    """The index of the store at ``root`` (``root/index.sqlite``). Thread-safe."""

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root = root
        self._prefix = f"{root}{os.sep}"  # of the paths of files in the store, as text
        self._db = db
        self._lock = threading.Lock()
        #: Rows of files already in place, not yet written (see settle()).
        self._pending: list[list[Any]] = []

    @classmethod
    def open(cls, root: Path) -> Index:
        """Open (or create) the index; one of an older schema is emptied, to be rebuilt from
        the files. Raises StoreError."""
        try:
            db = sqlite3.connect(root / "index.sqlite", isolation_level=None,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode = WAL")
            # A commit lost to a power cut only leaves a file unindexed, which the store repairs.
            db.execute("PRAGMA synchronous = NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] not in (0, SCHEMA_VERSION):
                db.execute("DROP TABLE IF EXISTS instances")
            db.executescript(DDL)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the index of {root}: {exc}") from exc
        return cls(root, db)

    def close(self) -> None:
        with self._lock:
            self._settle()
            self._db.close()

    # --- writing ---------------------------------------------------------------------------

    def add(self, path: Path, values: Mapping[str, str], ts: str, *,
            defer: bool = False, stat: os.stat_result | None = None) -> StoredObject:
        """Add (or replace) the row of a file in place: now, or at the next settle().
        ``stat``: the file's, if the caller has it (spares a path lookup)."""
        if stat is None:
            stat = path.stat()
        text = str(path)  # relative to the root by its text: this runs for every object stored
        relative = (text[len(self._prefix):] if text.startswith(self._prefix)
                    else path.relative_to(self.root).as_posix())
        row = {**values, "TransferSyntaxUID": ts, "path": relative,
               "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        with self._lock:
            self._pending.append([row[c] for c in COLUMNS])
            if not defer:
                try:
                    self._settle(raise_errors=True)
                except sqlite3.Error as exc:  # the file is complete: the next open indexes it
                    raise StoreError(f"cannot index {path.name}: {exc}") from exc
        return StoredObject(path, stat.st_size, values["SOPClassUID"], values["SOPInstanceUID"],
                            ts, values["StudyInstanceUID"], values["SeriesInstanceUID"])

    def settle(self, final: bool = True) -> None:
        """Write the deferred rows; with ``final`` false only once SETTLE_BATCH of them have
        gathered (one transaction for them all costs about what one row alone does)."""
        with self._lock:
            if final or len(self._pending) >= SETTLE_BATCH:
                self._settle()

    def _settle(self, raise_errors: bool = False) -> None:
        """Write the pending rows (lock held), in one transaction. On an SQLite error they
        stay pending (the next settle tries again; a restart indexes their files anyway)."""
        if not self._pending:
            return
        try:
            if len(self._pending) == 1:  # one statement: SQLite commits it on its own
                self._db.execute(_UPSERT, self._pending[0])
            else:
                with self._transaction():
                    self._db.executemany(_UPSERT, self._pending)
        except sqlite3.Error as exc:
            if raise_errors:
                self._pending.pop()  # the caller's row: it reports the error itself
                raise
            log.warning("cannot index %d stored objects yet: %s", len(self._pending), exc)
            return
        self._pending.clear()

    def drop(self, paths: Collection[str]) -> None:
        """Remove the rows of these files (paths relative to the root)."""
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM instances WHERE path = ?", [(p,) for p in paths])

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

    def file_states(self) -> dict[str, tuple[int, int]]:
        """Size and mtime (ns) of every indexed file, by path relative to the root."""
        with self._lock:
            self._settle()
            return {r["path"]: (r["size"], r["mtime_ns"])
                    for r in self._db.execute("SELECT path, size, mtime_ns FROM instances")}

    def count(self) -> int:
        """Number of stored SOP Instances."""
        with self._lock:
            self._settle()
            return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def get(self, sop_instance_uid: str) -> StoredObject | None:
        """The stored object of that SOP Instance UID, if any."""
        with self._lock:
            self._settle()
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
            self._settle()
            rows = self._db.execute(sql, params).fetchall()
        return [self._object(row) for row in rows]

    def records(self, level: Level, restrict: Mapping[str, str | Collection[str]] | None = None,
                keys: Collection[str] | None = None) -> list[dict[str, Any]]:
        """One record per entity at ``level`` (keyed by the keywords of :func:`available`, or
        only those of them in ``keys`` and the level's unique key), optionally restricted to
        entities whose attributes take the given values. Counts are ints, ModalitiesInStudy
        and SOPClassesInStudy sorted lists, the rest text ('' when absent). Matching proper is
        :mod:`lab.dicom.archive.query`'s business."""
        names = [n for n in available(level)
                 if keys is None or n in keys or n == UNIQUE_KEYS[level]]
        columns = [n if n in ATTRIBUTES else f"{COMPUTED[n][1]} AS {n}" for n in names]
        where, params = where_clause(restrict or {})
        group = "" if level == "IMAGE" else f" GROUP BY {UNIQUE_KEYS[level]}"
        sql = f"SELECT {', '.join(columns)} FROM instances{where}{group} ORDER BY {ORDER[level]}"
        with self._lock:
            self._settle()
            rows = self._db.execute(sql, params).fetchall()
        return [{n: sorted(filter(None, (row[n] or "").split(","))) if n in LISTS else row[n]
                 for n in names} for row in rows]
