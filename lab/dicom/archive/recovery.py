"""What :meth:`lab.dicom.archive.store.Store.open` repairs after a crash: scratch files removed
(or stored, when a received dataset was complete in a file of the scratch pool), rows dropped
whose file is gone, and files (re)indexed that no row describes or whose row is stale (a crash
between the rename into ``objects/`` and the index commit). The index is derived data: it can
always be rebuilt from the files."""

from __future__ import annotations

import logging
import mmap
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab.dicom.archive.index import Index
from lab.dicom.archive.schema import WANTED
from lab.dicom.archive.scratch import is_pool_file
from lab.dicom.data.encoded import UID_PATTERN, Parsed, StoreError, parse, split_part10

log = logging.getLogger("lab.dicom.archive.store")


@dataclass(frozen=True)
class Recovery:
    """What :meth:`Store.open` repaired: scratch files removed, rows dropped (file gone), files
    (re)indexed (renamed into place but not committed), and files it could not index."""

    removed_temp: int = 0
    dropped_rows: int = 0
    indexed: int = 0
    unreadable: tuple[Path, ...] = ()


class Store(Protocol):
    """What recovery uses of :class:`lab.dicom.archive.store.Store` (which imports this)."""

    root: Path
    tmp_dir: Path
    objects_dir: Path
    index: Index

    def final_path(self, sop: str) -> Path: ...

    def commit_file(self, tmp: Path, values: dict[str, str], ts: str) -> object: ...


def recover(store: Store) -> Recovery:
    """Remove scratch files, drop rows whose file is gone, and (re)index files that no row
    describes or whose row is stale (a crash between rename and commit)."""
    removed = rolled = 0
    for leftover in store.tmp_dir.iterdir():
        if is_pool_file(leftover) and leftover.stat().st_size and _roll_forward(store, leftover):
            rolled += 1
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
        removed += 1
    rows = store.index.file_states()
    found = sorted(store.objects_dir.glob("*/*.dcm"))
    files = {p.relative_to(store.root).as_posix(): p for p in found}
    gone = [rel for rel in rows if rel not in files]
    todo = [p for rel, p in files.items()
            if rows.get(rel) != ((st := p.stat()).st_size, st.st_mtime_ns)]
    store.index.drop(gone)
    unreadable = []
    for path in todo:
        try:
            _index_file(store, path)
        except StoreError as exc:
            log.warning("cannot index %s: %s", path, exc)
            unreadable.append(path)
            store.index.drop([path.relative_to(store.root).as_posix()])
    return Recovery(removed, len(gone), len(todo) - len(unreadable) + rolled, tuple(unreadable))


def _roll_forward(store: Store, path: Path) -> bool:
    """Store a complete received dataset left in a pool file by a crash (see
    lab.dicom.archive.scratch); False if it is not one (partial, refused: then removed)."""
    try:
        ts, parsed = read_part10(path)
    except StoreError:
        return False
    uids = (ts, parsed.values["SOPClassUID"], parsed.values["SOPInstanceUID"])
    if not all(len(u) <= 64 and UID_PATTERN.fullmatch(u) for u in uids):
        return False  # as store_encoded refuses it (and the UID names the file)
    store.commit_file(path, parsed.values, ts)
    log.warning("stored %s, received before a crash", parsed.values["SOPInstanceUID"])
    return True


def _index_file(store: Store, path: Path) -> None:
    ts, parsed = read_part10(path)
    if store.final_path(parsed.values["SOPInstanceUID"]) != path:
        raise StoreError(f"its SOP Instance UID {parsed.values['SOPInstanceUID']} belongs "
                         "elsewhere")
    store.index.add(path, parsed.values, ts)


def read_part10(path: Path) -> tuple[str, Parsed]:
    """The transfer syntax and parse of a Part-10 file (StoreError if it is not a valid one)."""
    with path.open("rb") as src:
        if os.fstat(src.fileno()).st_size == 0:
            raise StoreError("empty file")
        with mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            _, meta = split_part10(mapped)
            if meta is None:
                raise StoreError("not a DICOM Part-10 file")
            ts, sop_class, sop = (str(meta.get(k, "")) for k in (
                "TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"))
            return ts, parse(mapped, ts, sop_class, sop, WANTED)
