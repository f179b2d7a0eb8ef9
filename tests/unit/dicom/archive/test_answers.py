"""C-FIND answers written straight from index records are byte for byte what pydicom writes for
the same identifier (lab.dicom.archive.query.query_identifier + encode_identifier), and the fast
path steps aside for what it cannot encode."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from lab.dicom.archive import answers
from lab.dicom.archive.qrscp import encode_identifier
from lab.dicom.archive.query import query_identifier


def _keys(*keywords: str) -> list[tuple[int, str, str]]:
    out = []
    for kw in keywords:
        tag = tag_for_keyword(kw)
        assert tag is not None
        out.append((tag, str(dictionary_VR(tag)), kw))
    return out


STUDY_KEYS = _keys("StudyInstanceUID", "PatientName", "PatientID", "StudyDate", "StudyTime",
                   "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "AccessionNumber",
                   "StudyDescription")
RECORDS: list[dict[str, Any]] = [
    {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1", "PatientName": "Doe^Jane",
     "PatientID": "P1", "StudyDate": "20261203", "StudyTime": "101010.5",
     "ModalitiesInStudy": ["CT", "MR"], "NumberOfStudyRelatedInstances": 100,
     "AccessionNumber": "", "StudyDescription": "odd"},
    {"StudyInstanceUID": "1.2.3", "PatientName": "Müller^Jürgen=ミュラー", "PatientID": "P22",
     "StudyDate": "", "StudyTime": "", "ModalitiesInStudy": [],
     "NumberOfStudyRelatedInstances": 0, "AccessionNumber": None, "StudyDescription": "Kopf"},
]


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("record", RECORDS, ids=["ascii", "utf8"])
def test_the_fast_answer_is_pydicoms_byte_for_byte(ts: str, record: dict[str, Any]) -> None:
    keys = list(reversed(STUDY_KEYS))  # the query's order is not the tags' order
    fast = answers.encoder("STUDY", keys, ts)
    assert fast is not None
    slow = encode_identifier(query_identifier("STUDY", keys, record), ts)
    assert fast(record) == slow
    assert b"ISO_IR 192" in slow if not record["PatientName"].isascii() else True


def test_image_level_answers_match_too() -> None:
    keys = _keys("SOPInstanceUID", "InstanceNumber", "SOPClassUID", "StudyInstanceUID",
                 "SeriesInstanceUID")
    record = {"SOPInstanceUID": "1.2.3.4.5", "InstanceNumber": "17",
              "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "StudyInstanceUID": "1.2",
              "SeriesInstanceUID": "1.2.3"}
    fast = answers.encoder("IMAGE", keys, ExplicitVRLittleEndian)
    assert fast is not None
    assert fast(record) == encode_identifier(query_identifier("IMAGE", keys, record),
                                             ExplicitVRLittleEndian)


@pytest.mark.parametrize("ts", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_other_transfer_syntaxes_go_through_pydicom(ts: str) -> None:
    assert answers.encoder("STUDY", STUDY_KEYS, ts) is None


def test_keys_of_other_vrs_go_through_pydicom() -> None:
    assert answers.encoder("STUDY", _keys("ReferencedStudySequence"),
                           ExplicitVRLittleEndian) is None
    assert answers.encoder("IMAGE", _keys("Rows"), ExplicitVRLittleEndian) is None
