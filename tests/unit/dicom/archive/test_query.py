"""C-FIND matching and C-MOVE resolution over a real store (PS3.4 C.2.2.2, C.4, C.6).

The archive used throughout::

    PAT1 Doe^John 19600101 M
      ST1 20070115 101500 ACC1 "CT HEAD"   SE11 CT #1 AXIAL (3 images), SE12 MR #2 T1 (1)
      ST2 20071120 143000 ACC2 "CHEST"     SE21 CR #1 (1)
    PAT2 Müller^Jürgen 19751231 F
      ST3 20080301 090000 ACC3 "MR KNEE"   SE31 MR #1 (2, implicit VR)
    PAT3 smith^jane (no birth date)
      ST4 20080302 235959 ACC4 (no desc.)  SE41 CT #1 (1)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)
from pynetdicom.dsutils import decode, encode

from lab.dicom.archive.query import QueryError, find, resolve_move
from lab.dicom.archive.store import Store

from ..conftest import make_dataset, put

# Queries carry values pydicom finds invalid for their VR on purpose (ranges, wildcards).
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

P1, P2, P3 = "PAT1", "PAT2", "PAT3"
ST1, ST2, ST3, ST4 = "1.2.40.1", "1.2.40.2", "1.2.40.3", "1.2.40.4"
SE11, SE12, SE21, SE31, SE41 = "1.2.40.1.1", "1.2.40.1.2", "1.2.40.2.1", "1.2.40.3.1", "1.2.40.4.1"

PATIENTS: dict[str, dict[str, Any]] = {
    P1: {"PatientName": "Doe^John", "PatientBirthDate": "19600101", "PatientSex": "M"},
    P2: {"PatientName": "Müller^Jürgen", "PatientBirthDate": "19751231", "PatientSex": "F",
         "SpecificCharacterSet": "ISO_IR 192"},
    P3: {"PatientName": "smith^jane", "PatientBirthDate": None, "PatientSex": "F"},
}
STUDIES: dict[str, tuple[str, dict[str, Any]]] = {
    ST1: (P1, {"StudyDate": "20070115", "StudyTime": "101500", "AccessionNumber": "ACC1",
               "StudyDescription": "CT HEAD"}),
    ST2: (P1, {"StudyDate": "20071120", "StudyTime": "143000", "AccessionNumber": "ACC2",
               "StudyDescription": "CHEST"}),
    ST3: (P2, {"StudyDate": "20080301", "StudyTime": "090000", "AccessionNumber": "ACC3",
               "StudyDescription": "MR KNEE"}),
    ST4: (P3, {"StudyDate": "20080302", "StudyTime": "235959", "AccessionNumber": "ACC4",
               "StudyDescription": None}),
}
SERIES = {  # series: study, modality, number, description, SOP class, images
    SE11: (ST1, "CT", 1, "AXIAL", CTImageStorage, 3),
    SE12: (ST1, "MR", 2, "T1", MRImageStorage, 1),
    SE21: (ST2, "CR", 1, "PA", ComputedRadiographyImageStorage, 1),
    SE31: (ST3, "MR", 1, "SAG", MRImageStorage, 2),
    SE41: (ST4, "CT", 1, "AXIAL", CTImageStorage, 1),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store.open(tmp_path_factory.mktemp("query") / "pacs") as opened:
        for series, (study, modality, number, description, sop_class, images) in SERIES.items():
            patient, study_attributes = STUDIES[study]
            for n in range(1, images + 1):
                ds = make_dataset(f"{series}.{n}", study=study, series=series,
                                  sop_class=sop_class, PatientID=patient, **PATIENTS[patient],
                                  **study_attributes, Modality=modality, SeriesNumber=number,
                                  SeriesDescription=description, InstanceNumber=n)
                put(opened, ds, ImplicitVRLittleEndian if study == ST3 else ExplicitVRLittleEndian)
        yield opened


def query(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def found(store: Store, model: Any, level: Any, key: str, **keys: Any) -> list[str]:
    """The values of ``key`` in the identifiers found (``key`` is requested universally)."""
    q = query(level, **{key: "", **keys})
    return [str(ds[key].value) for ds in find(store, model, level, q)]


def round_trip(identifier: Dataset, implicit: bool) -> Dataset:
    """The identifier as the SCU gets it: encoded by pynetdicom, then decoded."""
    data = encode(identifier, implicit, True)
    assert data is not None
    return decode(BytesIO(data), implicit, True)


def one(results: Iterable[Dataset]) -> Dataset:
    (result,) = list(results)
    return result


# --- models, levels and the hierarchy -------------------------------------------------------


@pytest.mark.parametrize(("model", "level", "message"), [
    ("study", "PATIENT", "'PATIENT' is not a level of Study Root"),
    ("patient", "FRAME", "'FRAME' is not a level of Patient Root"),
    ("worklist", "STUDY", "unknown query/retrieve model 'worklist'"),
])
def test_levels_outside_the_model_are_refused(store: Store, model: Any, level: Any,
                                              message: str) -> None:
    with pytest.raises(QueryError, match=message):
        find(store, model, level, query(level))
    with pytest.raises(QueryError, match=message):
        resolve_move(store, model, level, query(level, PatientID=P1))


def test_the_identifier_level_must_be_the_level_asked(store: Store) -> None:
    with pytest.raises(QueryError, match="QueryRetrieveLevel 'SERIES' is not 'STUDY'"):
        find(store, "study", "STUDY", query("SERIES"))


@pytest.mark.parametrize(("model", "level", "keys", "message"), [
    ("patient", "STUDY", {}, "needs the unique key PatientID of the PATIENT level"),
    ("patient", "STUDY", {"PatientID": "*"}, "needs the unique key PatientID"),
    ("patient", "SERIES", {"PatientID": P1}, "needs the unique key StudyInstanceUID"),
    ("study", "SERIES", {}, "needs the unique key StudyInstanceUID of the STUDY level"),
    ("study", "IMAGE", {"StudyInstanceUID": ST1}, "needs the unique key SeriesInstanceUID"),
    ("patient", "STUDY", {"PatientID": "PAT*"}, "must be a single value without wildcards"),
    ("study", "SERIES", {"StudyInstanceUID": f"{ST1}\\{ST2}"}, "must be a single value"),
])
def test_relational_queries_are_refused(store: Store, model: Any, level: Any,
                                        keys: dict[str, str], message: str) -> None:
    """find() checks before it returns: the error is not deferred to iteration."""
    with pytest.raises(QueryError, match=message):
        find(store, model, level, query(level, **keys))


def test_higher_level_unique_keys_restrict(store: Store) -> None:
    assert found(store, "patient", "STUDY", "StudyInstanceUID", PatientID=P1) == [ST1, ST2]
    assert found(store, "patient", "STUDY", "StudyInstanceUID", PatientID="NOBODY") == []
    assert found(store, "patient", "SERIES", "SeriesInstanceUID", PatientID=P2,
                 StudyInstanceUID=ST1) == []
    assert found(store, "study", "SERIES", "SeriesInstanceUID", StudyInstanceUID=ST1) == [
        SE11, SE12]


# --- PATIENT level ------------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "expected"), [
    ({}, [P1, P2, P3]),
    ({"PatientID": P2}, [P2]),
    ({"PatientID": "PAT?"}, [P1, P2, P3]),
    ({"PatientID": "pat1"}, []),  # LO: case-sensitive
    ({"PatientName": "DOE^JOHN"}, [P1]),  # PN: case-insensitive
    ({"PatientName": "müller^jürgen"}, [P2]),
    ({"PatientName": "Doe^John^^"}, [P1]),  # trailing component separators
    ({"PatientName": "Doe"}, []),
    ({"PatientName": "d*"}, [P1]),
    ({"PatientName": "?MITH*"}, [P3]),
    ({"PatientName": "*^J*"}, [P1, P2, P3]),
    ({"PatientName": "*"}, [P1, P2, P3]),
    ({"PatientBirthDate": "19700101-"}, [P2]),
    ({"PatientBirthDate": "-19651231"}, [P1]),
    ({"PatientBirthDate": "19600101"}, [P1]),
    ({"PatientBirthDate": "1960.01.01-1975.12.31"}, [P1, P2]),  # ACR-NEMA form
    ({"PatientSex": "F"}, [P2, P3]),
    ({"PatientSex": "O"}, []),
])
def test_patient_level_matching(store: Store, keys: dict[str, str], expected: list[str]) -> None:
    assert found(store, "patient", "PATIENT", "PatientID", **keys) == expected


def test_patient_level_counts(store: Store) -> None:
    result = one(find(store, "patient", "PATIENT", query(
        "PATIENT", PatientID=P1, NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="", NumberOfPatientRelatedInstances="")))
    assert (result.NumberOfPatientRelatedStudies, result.NumberOfPatientRelatedSeries,
            result.NumberOfPatientRelatedInstances) == (2, 3, 5)


# --- STUDY level (both models) --------------------------------------------------------------

STUDY_CASES = [
    ({}, [ST1, ST2, ST3, ST4]),
    ({"StudyDate": "20070101-20071231"}, [ST1, ST2]),
    ({"StudyDate": "-20070131"}, [ST1]),
    ({"StudyDate": "20080101-"}, [ST3, ST4]),
    ({"StudyDate": "20080301"}, [ST3]),
    ({"StudyDate": "20080303-"}, []),
    ({"StudyTime": "1000-1100"}, [ST1]),
    ({"StudyTime": "14"}, [ST2]),  # a whole hour
    ({"StudyTime": "23-"}, [ST4]),  # 23:59:59 is within "up to the end"
    ({"StudyTime": "-0900"}, [ST3]),
    ({"StudyTime": "10:15:00"}, [ST1]),  # ACR-NEMA form
    ({"AccessionNumber": "ACC2"}, [ST2]),
    ({"AccessionNumber": "ACC"}, []),
    ({"StudyDescription": "CT*"}, [ST1]),
    ({"StudyDescription": "ct*"}, []),  # LO: case-sensitive
    ({"StudyDescription": "*KNEE"}, [ST3]),
    ({"StudyDescription": "*"}, [ST1, ST2, ST3, ST4]),  # universal: empty values too
    ({"StudyDescription": "?*"}, [ST1, ST2, ST3]),
    ({"StudyInstanceUID": f"{ST1}\\{ST3}"}, [ST1, ST3]),  # list of UID matching
    ({"StudyInstanceUID": ST4}, [ST4]),
    ({"StudyInstanceUID": "1.2.40.9"}, []),
    ({"ReferringPhysicianName": "house^*"}, [ST1, ST2, ST3, ST4]),
    ({"ModalitiesInStudy": "MR"}, [ST1, ST3]),
    ({"ModalitiesInStudy": "CR\\CT"}, [ST1, ST2, ST4]),
    ({"ModalitiesInStudy": "US"}, []),
    ({"PatientName": "SMITH^JANE"}, [ST4]),  # patient attributes at the study level
    ({"NumberOfStudyRelatedSeries": "2"}, [ST1]),
]


@pytest.mark.parametrize(("keys", "expected"), STUDY_CASES)
def test_study_level_matching_in_study_root(store: Store, keys: dict[str, str],
                                            expected: list[str]) -> None:
    assert found(store, "study", "STUDY", "StudyInstanceUID", **keys) == expected


@pytest.mark.parametrize(("keys", "expected"), STUDY_CASES)
def test_study_level_matching_in_patient_root(store: Store, keys: dict[str, str],
                                              expected: list[str]) -> None:
    """The same matches, within each patient."""
    for patient in (P1, P2, P3):
        mine = [s for s in expected if STUDIES[s][0] == patient]
        assert found(store, "patient", "STUDY", "StudyInstanceUID", PatientID=patient,
                     **keys) == mine


def test_study_level_computed_attributes(store: Store) -> None:
    result = one(find(store, "study", "STUDY", query(
        "STUDY", StudyInstanceUID=ST1, ModalitiesInStudy="", SOPClassesInStudy="",
        NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="")))
    assert list(result.ModalitiesInStudy) == ["CT", "MR"]
    assert sorted(result.SOPClassesInStudy) == sorted([CTImageStorage, MRImageStorage])
    assert (result.NumberOfStudyRelatedSeries, result.NumberOfStudyRelatedInstances) == (2, 4)


# --- SERIES and IMAGE levels ----------------------------------------------------------------

HIGHER = {
    ("study", "SERIES"): {"StudyInstanceUID": ST1},
    ("patient", "SERIES"): {"PatientID": P1, "StudyInstanceUID": ST1},
    ("study", "IMAGE"): {"StudyInstanceUID": ST1, "SeriesInstanceUID": SE11},
    ("patient", "IMAGE"): {"PatientID": P1, "StudyInstanceUID": ST1,
                           "SeriesInstanceUID": SE11},
}


@pytest.mark.parametrize("model", ["study", "patient"])
@pytest.mark.parametrize(("keys", "expected"), [
    ({}, [SE11, SE12]),
    ({"Modality": "MR"}, [SE12]),
    ({"Modality": "mr"}, []),
    ({"SeriesNumber": "2"}, [SE12]),
    ({"SeriesNumber": "02"}, [SE12]),  # IS compares as a number
    ({"SeriesNumber": "3"}, []),
    ({"SeriesDescription": "AX*"}, [SE11]),
    ({"SeriesInstanceUID": f"{SE12}\\{SE31}"}, [SE12]),  # SE31 is in another study
    ({"NumberOfSeriesRelatedInstances": "3"}, [SE11]),
])
def test_series_level_matching(store: Store, model: Any, keys: dict[str, str],
                               expected: list[str]) -> None:
    assert found(store, model, "SERIES", "SeriesInstanceUID", **HIGHER[model, "SERIES"],
                 **keys) == expected


def test_series_level_counts(store: Store) -> None:
    results = find(store, "study", "SERIES", query("SERIES", StudyInstanceUID=ST1,
                                                   NumberOfSeriesRelatedInstances=""))
    assert [r.NumberOfSeriesRelatedInstances for r in results] == [3, 1]


@pytest.mark.parametrize("model", ["study", "patient"])
@pytest.mark.parametrize(("keys", "expected"), [
    ({}, [f"{SE11}.1", f"{SE11}.2", f"{SE11}.3"]),
    ({"SOPInstanceUID": f"{SE11}.3\\{SE11}.1"}, [f"{SE11}.1", f"{SE11}.3"]),
    ({"SOPInstanceUID": f"{SE12}.1"}, []),  # another series
    ({"InstanceNumber": "2"}, [f"{SE11}.2"]),
    ({"SOPClassUID": MRImageStorage}, []),
    ({"SOPClassUID": CTImageStorage}, [f"{SE11}.1", f"{SE11}.2", f"{SE11}.3"]),
])
def test_image_level_matching(store: Store, model: Any, keys: dict[str, str],
                              expected: list[str]) -> None:
    assert found(store, model, "IMAGE", "SOPInstanceUID", **HIGHER[model, "IMAGE"],
                 **keys) == expected


def test_image_level_transfer_syntax(store: Store) -> None:
    keys = {"StudyInstanceUID": ST3, "SeriesInstanceUID": SE31}
    assert found(store, "study", "IMAGE", "AvailableTransferSyntaxUID", **keys) == [
        ImplicitVRLittleEndian] * 2


# --- the identifiers returned ---------------------------------------------------------------


def test_identifiers_carry_exactly_the_requested_keys(store: Store) -> None:
    q = query("STUDY", StudyInstanceUID=ST1, PatientName="", StudyDate="",
              ModalitiesInStudy="", NumberOfStudyRelatedInstances="", BodyPartExamined="",
              SeriesInstanceUID="", ProcedureCodeSequence=[])
    q.add_new(0x00091010, "LO", "")  # a private key
    result = one(find(store, "study", "STUDY", q))
    assert {e.tag for e in result} == {e.tag for e in q}
    assert result.QueryRetrieveLevel == "STUDY"
    assert (result.PatientName, result.StudyDate, result.NumberOfStudyRelatedInstances) == (
        "Doe^John", "20070115", 4)
    for unsupported in ("BodyPartExamined", "SeriesInstanceUID"):  # other, lower level
        assert result[unsupported].is_empty
    assert list(result.ProcedureCodeSequence) == []
    assert result[0x00091010].is_empty
    assert "SpecificCharacterSet" not in result
    for implicit in (True, False):  # what pynetdicom will do with it
        back = round_trip(result, implicit)
        assert [(e.tag, str(e.value)) for e in back if not e.tag.is_private] == [
            (e.tag, str(e.value)) for e in result if not e.tag.is_private]


def test_the_level_is_returned_even_if_not_requested(store: Store) -> None:
    q = Dataset()
    q.PatientID = ""
    result = find(store, "patient", "PATIENT", q)
    assert [(r.QueryRetrieveLevel, r.PatientID) for r in result] == [
        ("PATIENT", P1), ("PATIENT", P2), ("PATIENT", P3)]


def test_non_ascii_values_come_with_a_character_set(store: Store) -> None:
    result = one(find(store, "patient", "PATIENT", query("PATIENT", PatientID=P2,
                                                         PatientName="")))
    assert result.SpecificCharacterSet == "ISO_IR 192"
    assert str(result.PatientName) == "Müller^Jürgen"
    back = round_trip(result, implicit=True)
    assert str(back.PatientName) == "Müller^Jürgen"


@pytest.mark.parametrize(("keys", "message"), [
    ({"StudyDate": "2007*"}, "wildcards are not allowed in DA"),
    ({"StudyDate": "2007-01-01"}, "malformed DA range"),
    ({"StudyDate": "-"}, "malformed DA range"),
    ({"StudyDate": "2007011"}, "malformed DA value"),
    ({"StudyTime": "25"}, "malformed TM value"),
    ({"StudyInstanceUID": "1.2.*"}, "wildcards are not allowed in UI"),
])
def test_malformed_values_are_refused(store: Store, keys: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        find(store, "study", "STUDY", query("STUDY", **keys))


# --- C-MOVE ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "level", "keys", "expected"), [
    ("patient", "PATIENT", {"PatientID": P1, "StudyInstanceUID": f"{ST1}\\{ST2}"}, 5),
    ("patient", "STUDY", {"PatientID": P1, "StudyInstanceUID": ST1}, 4),
    ("patient", "STUDY", {"PatientID": P2, "StudyInstanceUID": ST1}, 0),
    ("study", "STUDY", {"StudyInstanceUID": ST1}, 4),
    ("study", "STUDY", {"StudyInstanceUID": f"{ST2}\\{ST3}"}, 3),
    ("study", "SERIES", {"StudyInstanceUID": ST1, "SeriesInstanceUID": SE11}, 3),
    ("study", "SERIES", {"StudyInstanceUID": ST1, "SeriesInstanceUID": f"{SE11}\\{SE12}"}, 4),
    ("study", "IMAGE", {"StudyInstanceUID": ST1, "SeriesInstanceUID": SE11,
                        "SOPInstanceUID": f"{SE11}.2"}, 1),
    ("patient", "IMAGE", {"PatientID": P1, "StudyInstanceUID": ST1, "SeriesInstanceUID": SE11,
                          "SOPInstanceUID": f"{SE11}.2\\{SE11}.3"}, 2),
    ("study", "STUDY", {"StudyInstanceUID": "1.2.40.9"}, 0),
])
def test_resolve_move(store: Store, model: Any, level: Any, keys: dict[str, str],
                      expected: int) -> None:
    objects = resolve_move(store, model, level, query(level, **keys, PatientName="ignored"))
    assert len(objects) == expected
    for obj in objects:
        assert obj.path.is_file() and obj.size == obj.path.stat().st_size
        assert obj.study_instance_uid in keys["StudyInstanceUID"].split("\\")


def test_resolve_move_gives_what_a_c_store_needs(store: Store) -> None:
    (obj,) = resolve_move(store, "study", "IMAGE", query(
        "IMAGE", StudyInstanceUID=ST3, SeriesInstanceUID=SE31, SOPInstanceUID=f"{SE31}.2"))
    assert (obj.sop_class_uid, obj.transfer_syntax_uid, obj.study_instance_uid,
            obj.series_instance_uid) == (MRImageStorage, ImplicitVRLittleEndian, ST3, SE31)
    assert isinstance(obj.path, Path)


@pytest.mark.parametrize(("model", "level", "keys", "message"), [
    ("study", "STUDY", {}, "needs its unique key StudyInstanceUID"),
    ("study", "STUDY", {"StudyInstanceUID": ""}, "needs its unique key StudyInstanceUID"),
    ("study", "STUDY", {"StudyInstanceUID": "1.2.*"}, "needs its unique key"),
    ("study", "SERIES", {"SeriesInstanceUID": SE11}, "needs the unique key StudyInstanceUID"),
    ("patient", "STUDY", {"StudyInstanceUID": ST1}, "needs the unique key PatientID"),
    ("patient", "PATIENT", {"PatientID": f"{P1}\\{P2}"}, "PatientID takes a single value"),
])
def test_resolve_move_refusals(store: Store, model: Any, level: Any, keys: dict[str, str],
                               message: str) -> None:
    with pytest.raises(QueryError, match=message):
        resolve_move(store, model, level, query(level, **keys))
