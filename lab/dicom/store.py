"""The PACS's archive: DICOM Part-10 files on disk plus an SQLite index, safe against crashes.

Layout under the store's root::

    index.sqlite                  the index (WAL mode): one row per stored SOP Instance
    objects/<xx>/<SOP UID>.dcm    the files; <xx> = two hex digits of the UID's SHA-1 (fan-out)
    tmp/                          scratch: files being written (and pynetdicom's chunked receives)
    lock                          flock'ed by the one process that has the store open

Storing never decodes the dataset received over the network: the element headers of the encoded
bytes are walked (PS3.5 7.1, 7.5) to prove the dataset complete and well formed, only the
attributes the index needs are decoded, and the bytes are written unchanged after a File Meta
Information header (PS3.10 7.1). So storing costs little more than writing the bytes.

Crash safety rests on one ordering: a file is written in ``tmp/`` and fsync'ed, renamed into
``objects/`` (atomic on POSIX; the directory is fsync'ed too), and only then is its index row
committed. At any crash the index may thus lack a row, or hold a stale row for a complete file,
but it never describes a missing or partial file; :meth:`Store.open` repairs the rest. The index
is derived data: it can always be rebuilt from the files.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import re
import shutil
import sqlite3
import struct
import tempfile
import threading
import uuid
import zlib
from collections.abc import Collection, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, Literal, NoReturn

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPIPHTJ2KReferencedDeflate,
)

from lab.errors import LabError

log = logging.getLogger(__name__)

Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
LEVELS: tuple[Level, ...] = ("PATIENT", "STUDY", "SERIES", "IMAGE")
#: The unique key of each level (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE_KEYS: dict[Level, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
#: The indexed attributes of each level (PS3.4 tables C.6-1 to C.6-4, C.6-5 to C.6-7).
_INDEXED: dict[Level, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
              "StudyDescription", "ReferringPhysicianName"),
    "SERIES": ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription"),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
ATTRIBUTES: dict[str, Level] = {k: lv for lv, keys in _INDEXED.items() for k in keys}
#: Attributes computed from the index at one level, and how (SQL over the level's rows).
COMPUTED: dict[str, tuple[Level, str]] = {
    "NumberOfPatientRelatedStudies": ("PATIENT", "COUNT(DISTINCT StudyInstanceUID)"),
    "NumberOfPatientRelatedSeries": ("PATIENT", "COUNT(DISTINCT SeriesInstanceUID)"),
    "NumberOfPatientRelatedInstances": ("PATIENT", "COUNT(*)"),
    "ModalitiesInStudy": ("STUDY", "group_concat(DISTINCT Modality)"),
    "SOPClassesInStudy": ("STUDY", "group_concat(DISTINCT SOPClassUID)"),
    "NumberOfStudyRelatedSeries": ("STUDY", "COUNT(DISTINCT SeriesInstanceUID)"),
    "NumberOfStudyRelatedInstances": ("STUDY", "COUNT(*)"),
    "NumberOfSeriesRelatedInstances": ("SERIES", "COUNT(*)"),
    "AvailableTransferSyntaxUID": ("IMAGE", "TransferSyntaxUID"),
}
_LISTS = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})  # CS/UI: ',' never occurs
_ORDER: dict[Level, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyDate, StudyTime, StudyInstanceUID",
    "SERIES": "CAST(SeriesNumber AS INTEGER), SeriesInstanceUID",
    "IMAGE": "CAST(InstanceNumber AS INTEGER), SOPInstanceUID",
}

#: Our implementation's identity in File Meta Information (PS3.10 7.1, PS3.7 D.3.3.2): a
#: UUID-derived UID (PS3.5 B.2), so the lab needs no registered root.
IMPLEMENTATION_CLASS_UID = f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'teleradlab:store').int}"
IMPLEMENTATION_VERSION_NAME = "TELERADLAB_01"
_SCHEMA_VERSION = 1
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # PS3.5 9.1; also keeps file names safe
#: Deflate, JPIP Referenced Deflate (1.2.840.10008.1.2.4.95, not named by pydicom 3.0), HTJ2K.
_DEFLATED = frozenset({DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.4.95",
                       JPIPHTJ2KReferencedDeflate})


class StoreError(LabError):
    """A dataset was refused (malformed, truncated, inconsistent) or the store is unusable."""


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


def available(level: Level) -> tuple[str, ...]:
    """Keywords a record at ``level`` carries: the indexed attributes of that level and the
    levels above, and the attributes computed at that level."""
    depth = LEVELS.index(level)
    plain = tuple(k for k, lv in ATTRIBUTES.items() if LEVELS.index(lv) <= depth)
    return plain + tuple(k for k, (lv, _) in COMPUTED.items() if lv == level)


# --- reading an encoded dataset without decoding it ----------------------------------------

_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_LAST_INDEXED = 0x00200013  # Instance Number: the index needs nothing past it
_WANTED = {k: tag_for_keyword(k) or 0 for k in ATTRIBUTES}
_MAX_DEPTH = 32
_Buffer = bytes | mmap.mmap


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Walker:
    """Walks the element headers of an encoded dataset (PS3.5 7.1, 7.5) skipping the values:
    every defined length must fit and every undefined length must be closed by its delimiter,
    which is what a truncated or garbled dataset fails. Records where the elements the index
    needs end, so that only those bytes are decoded."""

    def __init__(self, buf: _Buffer, start: int, *, little: bool) -> None:
        self.buf, self.start, self.end = buf, start, len(buf)
        endian = "<" if little else ">"
        self.tag, self.u16, self.u32 = (struct.Struct(endian + f) for f in ("HH", "H", "L"))
        self.index_end: int | None = None

    def fail(self, pos: int, why: str) -> NoReturn:
        raise StoreError(f"malformed dataset at byte {pos - self.start}: {why}")

    def header(self, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
        """Tag, VR (b'' if implicit), value length and value position of the element at pos."""
        if pos + 8 > self.end:
            self.fail(pos, "truncated element header")
        group, element = self.tag.unpack_from(self.buf, pos)
        tag = group << 16 | element
        if implicit or tag >> 16 == 0xFFFE:  # items and delimiters never carry a VR
            return tag, b"", self.u32.unpack_from(self.buf, pos + 4)[0], pos + 8
        vr = bytes(self.buf[pos + 4 : pos + 6])
        if not (vr.isalpha() and vr.isupper()):
            self.fail(pos, f"invalid VR {vr!r} for {_tag(tag)}")
        if vr not in _LONG_VRS:
            return tag, vr, self.u16.unpack_from(self.buf, pos + 6)[0], pos + 8
        if pos + 12 > self.end:
            self.fail(pos, "truncated element header")
        return tag, vr, self.u32.unpack_from(self.buf, pos + 8)[0], pos + 12

    def skip(self, at: int, tag: int, pos: int, length: int) -> int:
        if pos + length > self.end:
            self.fail(at, f"{_tag(tag)} needs {length} bytes, {self.end - pos} left (truncated)")
        return pos + length

    def dataset(self, pos: int, implicit: bool, depth: int = 0) -> int:
        """Walk one dataset: the top level runs to the end of the buffer, a nested one (an item
        of undefined length) to its Item Delimitation Item. Returns the position after it."""
        if depth > _MAX_DEPTH:
            self.fail(pos, "sequences nested too deep")
        last = -1
        while pos < self.end:
            at = pos
            tag, vr, length, pos = self.header(pos, implicit)
            if tag == _ITEM_END and depth:
                return pos
            if tag >> 16 == 0xFFFE:
                self.fail(at, f"unexpected item or delimiter {_tag(tag)}")
            if tag <= last:
                self.fail(at, f"{_tag(tag)} after {_tag(last)}: tags must ascend (PS3.5 7.1)")
            if not depth and tag >> 16 == 0x0002:
                self.fail(at, "File Meta Information (group 0002) inside the dataset")
            if not depth and tag > _LAST_INDEXED and self.index_end is None:
                self.index_end = at
            last = tag
            if length != _UNDEFINED:
                pos = self.skip(at, tag, pos, length)
            elif implicit or vr in (b"SQ", b"UN", b"OB", b"OW"):
                pos = self.items(pos, implicit or vr == b"UN", depth)  # UN: PS3.5 6.2.2
            else:
                self.fail(at, f"undefined length for VR {vr.decode()} of {_tag(tag)}")
        if depth:
            self.fail(pos, "item without Item Delimitation Item (truncated)")
        return pos

    def items(self, pos: int, implicit: bool, depth: int) -> int:
        """Walk the items of an undefined-length value (a sequence, or encapsulated pixel data
        fragments) up to its Sequence Delimitation Item."""
        while True:
            at = pos
            tag, _, length, pos = self.header(pos, implicit=True)
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                self.fail(at, f"expected an item, found {_tag(tag)}")
            if length == _UNDEFINED:
                pos = self.dataset(pos, implicit, depth + 1)
            else:
                pos = self.skip(at, tag, pos, length)


@dataclass(frozen=True)
class _Parsed:
    offset: int  # where the dataset starts in the input (after a Part-10 header, if any)
    has_meta: bool
    values: dict[str, str]


def _split_part10(buf: _Buffer) -> tuple[int, Dataset | None]:
    """Offset of the dataset and the File Meta Information if ``buf`` starts with a Part-10
    header (128-byte preamble, 'DICM', group 0002 led by its group length: PS3.10 7.1)."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        return 0, None
    if len(buf) < 144 or buf[132:138] != b"\x02\x00\x00\x00UL":
        raise StoreError("File Meta Information lacks its group length (PS3.10 7.1)")
    end = 144 + struct.unpack_from("<L", buf, 140)[0]
    if end > len(buf):
        raise StoreError("File Meta Information is truncated")
    return end, read_dataset(BytesIO(buf[132:end]), False, True)


def _syntax(ts: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated): every transfer syntax but these encodes the
    dataset in explicit VR little endian (PS3.5 10 and Annex A)."""
    return ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian, ts in _DEFLATED


def _inflate(buf: _Buffer, offset: int) -> bytes:
    """The dataset of a deflated transfer syntax (raw RFC 1951 deflate, PS3.5 A.5)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(buf[offset:]) + inflater.flush()
    except zlib.error as exc:
        raise StoreError(f"malformed deflated dataset: {exc}") from None
    if not inflater.eof:
        raise StoreError("deflated dataset is truncated")
    return data


def _text(ds: Dataset, tag: int) -> str:
    """One indexed value as text. PN/LO/SH are decoded with the Specific Character Set (PS3.5
    6.1); the other indexed VRs (UI, DA, TM, CS, IS) use only the default repertoire, and taking
    their bytes as they are keeps a malformed IS or DA from refusing the whole object."""
    if dictionary_VR(tag) in ("PN", "LO", "SH"):
        value = ds[tag].value
        text = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value or "")
    else:
        raw = ds.get_item(tag)
        value = raw.value if raw is not None else b""
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")
    return text.strip(" \x00")


def _parse(buf: _Buffer, ts: str, sop_class: str, sop_instance: str) -> _Parsed:
    """Validate an encoded dataset (optionally behind a Part-10 header) and decode the indexed
    attributes, checking they agree with the request (PS3.4 B.2.3: refuse rather than guess)."""
    offset, meta = _split_part10(buf)
    if meta is not None:
        found = (str(meta.get(k, "")) for k in
                 ("TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"))
        if tuple(found) != (ts, sop_class, sop_instance):
            raise StoreError("the file's File Meta Information disagrees with the request")
    implicit, little, deflated = _syntax(ts)
    data, start = (_inflate(buf, offset), 0) if deflated else (buf, offset)
    if start >= len(data):
        raise StoreError("empty dataset")
    walker = _Walker(data, start, little=little)
    walker.dataset(start, implicit)
    head = data[start : len(data) if walker.index_end is None else walker.index_end]
    ds = read_dataset(BytesIO(head), implicit, little, specific_tags=list(_WANTED.values()))
    values = {k: _text(ds, tag) if tag in ds else "" for k, tag in _WANTED.items()}
    for keyword, expected in (("SOPClassUID", sop_class), ("SOPInstanceUID", sop_instance)):
        if values[keyword] != expected:
            raise StoreError(f"dataset {keyword} {values[keyword]!r} differs from the "
                             f"request's {expected!r}")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not _UID.fullmatch(values[keyword]):
            raise StoreError(f"dataset {keyword} {values[keyword]!r} is missing or not a UID "
                             "(Type 1, PS3.3 C.7.2.1, C.7.3.1)")
    return _Parsed(offset, meta is not None, values)


def _meta_element(element: int, vr: bytes, value: bytes, pad: bytes = b"\0") -> bytes:
    """One File Meta element, explicit VR little endian, padded to even length (PS3.5 7.1.2)."""
    value += pad * (len(value) % 2)
    if vr in _LONG_VRS:
        return struct.pack("<HH2s2xL", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _file_meta(ts: str, sop_class: str, sop_instance: str) -> bytes:
    """Preamble, 'DICM' and the File Meta Information (PS3.10 7.1), encoded here: it is the
    only thing the store encodes, and pydicom's writer would cost more than the rest of a
    store."""
    body = b"".join((
        _meta_element(0x0001, b"OB", b"\0\1"),  # File Meta Information Version
        _meta_element(0x0002, b"UI", sop_class.encode()),
        _meta_element(0x0003, b"UI", sop_instance.encode()),
        _meta_element(0x0010, b"UI", ts.encode()),
        _meta_element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode()),
        _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode(), b" "),
    ))
    length = _meta_element(0x0000, b"UL", struct.pack("<L", len(body)))
    return b"\0" * 128 + b"DICM" + length + body


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the store --------------------------------------------------------------------------------

_OBJECT = ("path", "size", "SOPClassUID", "SOPInstanceUID", "TransferSyntaxUID",
           "StudyInstanceUID", "SeriesInstanceUID")
_COLUMNS = (*ATTRIBUTES, "TransferSyntaxUID", "path", "size", "mtime_ns")
_DDL = f"""
CREATE TABLE IF NOT EXISTS instances (
    {", ".join(f"{k} TEXT NOT NULL" for k in (*ATTRIBUTES, "TransferSyntaxUID"))},
    path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (SOPInstanceUID)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS by_patient ON instances (PatientID);
CREATE INDEX IF NOT EXISTS by_study ON instances (StudyInstanceUID);
CREATE INDEX IF NOT EXISTS by_series ON instances (SeriesInstanceUID);
PRAGMA user_version = {_SCHEMA_VERSION};
"""


class Store:
    """Files plus index under one root directory; open with :meth:`open`, close (or use as a
    context manager) when done. Thread-safe: pynetdicom runs each association in its own
    thread. One process at a time: :meth:`open` takes an exclusive lock on the directory."""

    def __init__(self, root: Path, db: sqlite3.Connection, lock_fd: int) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self.recovery = Recovery()
        self._db = db
        self._lock_fd = lock_fd
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: Path) -> Store:
        """Create or open the store at ``root`` and bring the index back in line with the
        files (see :attr:`recovery`)."""
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
            if db.execute("PRAGMA user_version").fetchone()[0] not in (0, _SCHEMA_VERSION):
                db.execute("DROP TABLE IF EXISTS instances")  # rebuilt from the files below
            db.executescript(_DDL)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise StoreError(f"cannot open the index of {root}: {exc}") from exc
        store = cls(root, db, lock_fd)
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
            if len(uid) > 64 or not _UID.fullmatch(uid):
                raise StoreError(f"{name} UID {uid!r} is not a valid UID (PS3.5 9.1)")
        if isinstance(dataset, Path):
            return self._store_file(dataset, ts, sop_class, sop)
        parsed = _parse(dataset, ts, sop_class, sop)
        tmp = self._write_temp(_file_meta(ts, sop_class, sop), memoryview(dataset)[parsed.offset:])
        return self._commit(tmp, parsed.values, ts)

    def _store_file(self, source: Path, ts: str, sop_class: str, sop: str) -> StoredObject:
        with source.open("rb") as src:
            if os.fstat(src.fileno()).st_size == 0:
                raise StoreError("empty dataset")
            with mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                parsed = _parse(mapped, ts, sop_class, sop)
            if parsed.has_meta and source.absolute().parent == self.tmp_dir:
                os.fsync(src.fileno())
                return self._commit(source, parsed.values, ts)
            src.seek(parsed.offset)
            tmp = self._write_temp(_file_meta(ts, sop_class, sop), src)
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
                os.fsync(out.fileno())
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)

    def _final_path(self, sop: str) -> Path:
        fan = hashlib.sha1(sop.encode(), usedforsecurity=False).hexdigest()[:2]
        return self.objects_dir / fan / f"{sop}.dcm"

    def _commit(self, tmp: Path, values: dict[str, str], ts: str) -> StoredObject:
        """Rename a complete, flushed file into place, then index it: this order is what keeps
        the index from ever describing a missing or partial file."""
        final = self._final_path(values["SOPInstanceUID"])
        with self._lock:
            try:
                if not final.parent.is_dir():
                    final.parent.mkdir()
                    _fsync_dir(self.objects_dir)
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(final.parent)
            row = self._upsert(final, values, ts)
        return self._object(row)

    def _upsert(self, path: Path, values: dict[str, str], ts: str) -> dict[str, Any]:
        stat = path.stat()
        row = {**values, "TransferSyntaxUID": ts, "path": path.relative_to(self.root).as_posix(),
               "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        sql = (f"INSERT OR REPLACE INTO instances ({', '.join(_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_COLUMNS))})")
        try:
            with self._transaction():
                self._db.execute(sql, [row[c] for c in _COLUMNS])
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
        return StoredObject(self.root / row["path"], *(row[c] for c in _OBJECT[1:]))

    def count(self) -> int:
        """Number of stored SOP Instances."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def get(self, sop_instance_uid: str) -> StoredObject | None:
        """The stored object of that SOP Instance UID, if any."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_OBJECT)} FROM instances "
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
        where, params = _where(keys)
        sql = (f"SELECT {', '.join(_OBJECT)} FROM instances{where} ORDER BY StudyInstanceUID, "
               "SeriesInstanceUID, CAST(InstanceNumber AS INTEGER), SOPInstanceUID")
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
        where, params = _where(restrict or {})
        group = "" if level == "IMAGE" else f" GROUP BY {UNIQUE_KEYS[level]}"
        sql = f"SELECT {', '.join(columns)} FROM instances{where}{group} ORDER BY {_ORDER[level]}"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [{n: sorted(filter(None, (row[n] or "").split(","))) if n in _LISTS else row[n]
                 for n in names} for row in rows]

    # --- recovery --------------------------------------------------------------------------

    def _recover(self) -> Recovery:
        """Remove scratch files, drop rows whose file is gone, and (re)index files that no row
        describes or whose row is stale (a crash between rename and commit)."""
        removed = 0
        for leftover in self.tmp_dir.iterdir():
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
        return Recovery(removed, len(gone), len(todo) - len(unreadable), tuple(unreadable))

    def _index_file(self, path: Path) -> None:
        with path.open("rb") as src:
            if os.fstat(src.fileno()).st_size == 0:
                raise StoreError("empty file")
            with mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                _, meta = _split_part10(mapped)
                if meta is None:
                    raise StoreError("not a DICOM Part-10 file")
                uids = [str(meta.get(k, "")) for k in ("TransferSyntaxUID",
                        "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")]
                parsed = _parse(mapped, *uids)
        if self._final_path(uids[2]) != path:
            raise StoreError(f"its SOP Instance UID {uids[2]} belongs elsewhere")
        self._upsert(path, parsed.values, uids[0])


def _where(keys: Mapping[str, str | Collection[str]]) -> tuple[str, list[str]]:
    """A WHERE clause restricting indexed attributes to lists of values."""
    clauses, params = [], []
    for keyword, value in keys.items():
        if keyword not in ATTRIBUTES:  # also what keeps the interpolated name safe
            raise StoreError(f"{keyword!r} is not an indexed attribute")
        values = [value] if isinstance(value, str) else list(value)
        clauses.append(f"{keyword} IN ({', '.join('?' * len(values))})" if values else "0")
        params += values
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def study_paths(root: Path, study_instance_uid: str) -> list[Path]:
    """Files of one study as indexed in the store at ``root``, read without taking the store's
    lock: SQLite's write-ahead log lets a reader in while the archive keeps writing, so another
    process (the receiver-side verifier) can check what an archive holds while it runs."""
    index = (Path(root) / "index.sqlite").absolute()
    if not index.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT path FROM instances WHERE StudyInstanceUID = ? "
                              "ORDER BY path", (study_instance_uid,)).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the index of {root}: {exc}") from exc
    return [Path(root) / row[0] for row in rows]
