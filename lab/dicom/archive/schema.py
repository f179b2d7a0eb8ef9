"""The schema of the archive's index (:mod:`lab.dicom.archive.store`): what is indexed at each
query/retrieve level, what is computed from the index, and the one table that holds it.

The levels, their unique keys and their attributes are those of the Patient Root and Study Root
information models (PS3.4 C.6.1, C.6.2). The index holds one row per stored SOP Instance, its
attributes of every level side by side, so an entity of a higher level is a GROUP BY of rows.
:func:`where_clause` restricts that table; :func:`study_paths` reads it from another process.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Collection, Mapping
from contextlib import closing
from pathlib import Path
from typing import Literal

from pydicom.datadict import tag_for_keyword

from lab.dicom.data.encoded import StoreError

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
#: Their tags (keyword: tag): what the store decodes of every dataset.
WANTED = {k: tag_for_keyword(k) or 0 for k in ATTRIBUTES}
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
#: Computed attributes that are lists of values.
LISTS = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})  # CS/UI: ',' never occurs
#: How the records of each level are sorted.
ORDER: dict[Level, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyDate, StudyTime, StudyInstanceUID",
    "SERIES": "CAST(SeriesNumber AS INTEGER), SeriesInstanceUID",
    "IMAGE": "CAST(InstanceNumber AS INTEGER), SOPInstanceUID",
}


@functools.cache
def available(level: Level) -> tuple[str, ...]:
    """Keywords a record at ``level`` carries: the indexed attributes of that level and the
    levels above, and the attributes computed at that level (worked out once per level)."""
    depth = LEVELS.index(level)
    plain = tuple(k for k, lv in ATTRIBUTES.items() if LEVELS.index(lv) <= depth)
    return plain + tuple(k for k, (lv, _) in COMPUTED.items() if lv == level)


# --- the table -------------------------------------------------------------------------------

SCHEMA_VERSION = 1  # PRAGMA user_version: an index of another version is rebuilt from the files
#: The columns a :class:`lab.dicom.archive.store.StoredObject` is made of, in its field order.
OBJECT_COLUMNS = ("path", "size", "SOPClassUID", "SOPInstanceUID", "TransferSyntaxUID",
                  "StudyInstanceUID", "SeriesInstanceUID")
COLUMNS = (*ATTRIBUTES, "TransferSyntaxUID", "path", "size", "mtime_ns")
DDL = f"""
CREATE TABLE IF NOT EXISTS instances (
    {", ".join(f"{k} TEXT NOT NULL" for k in (*ATTRIBUTES, "TransferSyntaxUID"))},
    path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (SOPInstanceUID)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS by_patient ON instances (PatientID);
CREATE INDEX IF NOT EXISTS by_study ON instances (StudyInstanceUID);
CREATE INDEX IF NOT EXISTS by_series ON instances (SeriesInstanceUID);
PRAGMA user_version = {SCHEMA_VERSION};
"""


def where_clause(keys: Mapping[str, str | Collection[str]]) -> tuple[str, list[str]]:
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
