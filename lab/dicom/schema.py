"""The schema of the archive's index (:mod:`lab.dicom.store`): what is indexed at each
query/retrieve level, what is computed from the index, and the one table that holds it.

The levels, their unique keys and their attributes are those of the Patient Root and Study Root
information models (PS3.4 C.6.1, C.6.2). The index holds one row per stored SOP Instance, its
attributes of every level side by side, so an entity of a higher level is a GROUP BY of rows.
"""

from __future__ import annotations

from typing import Literal

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
#: Computed attributes that are lists of values.
LISTS = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})  # CS/UI: ',' never occurs
#: How the records of each level are sorted.
ORDER: dict[Level, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyDate, StudyTime, StudyInstanceUID",
    "SERIES": "CAST(SeriesNumber AS INTEGER), SeriesInstanceUID",
    "IMAGE": "CAST(InstanceNumber AS INTEGER), SOPInstanceUID",
}


def available(level: Level) -> tuple[str, ...]:
    """Keywords a record at ``level`` carries: the indexed attributes of that level and the
    levels above, and the attributes computed at that level."""
    depth = LEVELS.index(level)
    plain = tuple(k for k, lv in ATTRIBUTES.items() if LEVELS.index(lv) <= depth)
    return plain + tuple(k for k, (lv, _) in COMPUTED.items() if lv == level)


# --- the table -------------------------------------------------------------------------------

SCHEMA_VERSION = 1  # PRAGMA user_version: an index of another version is rebuilt from the files
#: The columns a :class:`lab.dicom.store.StoredObject` is made of, in its field order.
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
