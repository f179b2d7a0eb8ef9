"""C-FIND matching and C-MOVE resolution over a :class:`~lab.dicom.archive.store.Store` (DICOM
PS3.4 C).

Models and levels (PS3.4 C.3, C.6): Patient Root has PATIENT, STUDY, SERIES and IMAGE levels;
Study Root has STUDY, SERIES and IMAGE, its STUDY level carrying the patient's attributes too.

Only hierarchical queries are supported (PS3.4 C.4.1.3.1): a query below the top level of its
model must give a single value for the unique key of every level above (e.g. PatientID for a
STUDY-level query in Patient Root); those keys restrict the search. Anything else is refused with
a :class:`QueryError` naming the problem, never answered with an empty result.

Matching (PS3.4 C.2.2.2), on the keys the index supports at the query level:

- universal: an empty value (or ``*`` alone) matches everything, empty values included;
- single value: exact, ignoring leading/trailing spaces; IS values compare as numbers;
- list of UID: UI values separated by ``\\`` match any of them; other keys given several values
  match any of them too (e.g. ModalitiesInStudy ``CT\\MR``);
- wildcard: ``*`` and ``?`` for the VRs that allow them (AE CS LO LT PN SH ST UC UR UT), matched
  in Python with every other character literal; elsewhere wildcards are refused;
- range: DA and TM take ``A-B``, ``-B`` and ``A-`` (inclusive). A TM value of lower precision
  covers the whole interval it names: ``10`` is 10:00:00 to 10:59:59.999999, for single values
  and bounds alike;
- PN values match case-insensitively (and ignore trailing component separators): the common
  practice of PACS, which the standard leaves to the implementation;
- multi-valued attributes (ModalitiesInStudy, SOPClassesInStudy) match if any value matches;
- an attribute the entity lacks matches only universally.

Keys the index does not support at the level (other attributes, keys of lower levels, sequences,
private tags) are not matched and come back empty, so every identifier returned carries exactly
the keys requested, plus QueryRetrieveLevel (and Specific Character Set, UTF-8, when a value
needs more than ASCII: PS3.4 C.4.1.1.3.2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from lab.dicom.archive.store import LEVELS, UNIQUE_KEYS, Level, Store, StoredObject, available
from lab.errors import LabError

Model = Literal["patient", "study"]
#: The levels of each information model, top first (PS3.4 C.6.1, C.6.2).
MODEL_LEVELS: dict[str, tuple[Level, ...]] = {"patient": LEVELS, "study": LEVELS[1:]}
_MODEL_NAMES = {"patient": "Patient Root (PS3.4 C.6.1)", "study": "Study Root (PS3.4 C.6.2)"}
#: VRs for which ``*`` and ``?`` are wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_NOT_KEYS = frozenset({0x00080005, 0x00080052})  # Specific Character Set, Q/R Level
_DA = re.compile(r"\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")
_TM = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")

Value = str | int | list[str]
Matcher = Callable[[str], bool]


class QueryError(LabError):
    """A C-FIND or C-MOVE identifier the SCP cannot process (PS3.4 C.4.1.1.4: the SCP answers
    with a failure status such as 0xA900, Identifier does not match SOP Class)."""


def find(store: Store, model: Model, level: Level, query: Dataset) -> Iterator[Dataset]:
    """The identifiers matching a C-FIND ``query`` at ``level`` in ``model`` (PS3.4 C.4.1).

    The query is checked and the index read before this returns (a QueryError is raised here,
    not while iterating); the identifiers are built as they are iterated.
    """
    requested, records = find_records(store, model, level, query)
    return (query_identifier(level, requested, record) for record in records)


def find_records(store: Store, model: Model, level: Level, query: Dataset,
                 ) -> tuple[list[tuple[int, str, str]], list[dict[str, Any]]]:
    """What :func:`find` answers, before it is made into identifiers: the keys requested (tag,
    VR, keyword, in the query's order) and the matching index records (keyword -> value), so
    that an encoder may write the answers without pydicom (lab.dicom.archive.answers)."""
    _check_level(model, level, query)
    restrict: dict[str, list[str]] = {k: [v] for k, v in _higher_keys(model, level, query).items()}
    supported = set(available(level))
    conditions: list[tuple[str, Callable[[Value], bool]]] = []
    requested: list[tuple[int, str, str]] = []
    for elem in _elements(query):
        vr = _vr(elem)
        requested.append((elem.tag, vr, elem.keyword))
        if elem.keyword not in supported or vr == "SQ":
            continue
        text = _text(elem)
        match = matcher(vr, text)
        if match is not None:
            conditions.append((elem.keyword, match))
        if elem.keyword == UNIQUE_KEYS[level] and (exact := _exact(vr, text)):
            restrict[elem.keyword] = exact
    keys = {keyword for _, _, keyword in requested}  # the index reads only these columns
    # a key restricted in SQL (a unique key's exact values: UIDs, PatientID) is matched there
    # already, by the same equality on the same stripped text: not again for every record
    conditions = [(k, m) for k, m in conditions if k not in restrict]
    records = [r for r in store.records(level, restrict, keys)
               if all(m(r[k]) for k, m in conditions)]
    return requested, records


def resolve_move(store: Store, model: Model, level: Level, identifier: Dataset,
                 ) -> list[StoredObject]:
    """The stored objects a C-MOVE (or C-GET) ``identifier`` names (PS3.4 C.4.2.2.1): the unique
    key of ``level`` with one or more values (a list for UIDs), and a single value for the
    unique key of every level above. Other keys are ignored."""
    _check_level(model, level, identifier)
    keys: dict[str, str | list[str]] = dict(_higher_keys(model, level, identifier))
    key = UNIQUE_KEYS[level]
    text = _text(identifier[key]) if key in identifier else ""
    values = [v.strip() for v in text.split("\\") if v.strip()]
    if not values or "*" in text or "?" in text:
        raise QueryError(f"a {level}-level retrieve needs its unique key {key} with one or more "
                         f"values, not {text!r} (PS3.4 C.4.2.2.1)")
    if len(values) > 1 and key == "PatientID":
        raise QueryError(f"PatientID takes a single value in a retrieve, not {text!r}")
    keys[key] = values
    return store.files_for(level, keys)


# --- the identifier: level and hierarchy ---------------------------------------------------


def _check_level(model: str, level: str, identifier: Dataset) -> None:
    levels = MODEL_LEVELS.get(model)
    if levels is None:
        raise QueryError(f"unknown query/retrieve model {model!r}: expected one of "
                         f"{sorted(MODEL_LEVELS)}")
    if level not in levels:
        raise QueryError(f"QueryRetrieveLevel {level!r} is not a level of {_MODEL_NAMES[model]}: "
                         f"expected one of {', '.join(levels)}")
    given = str(identifier.get("QueryRetrieveLevel", level) or "").strip()
    if given != level:
        raise QueryError(f"the identifier's QueryRetrieveLevel {given!r} is not {level!r}")


def _higher_keys(model: str, level: Level, identifier: Dataset) -> dict[str, str]:
    """The single values of the unique keys of the levels above ``level``, which a hierarchical
    query or retrieve must give (PS3.4 C.4.1.2.1, C.4.2.2.1)."""
    levels = MODEL_LEVELS[model]
    keys = {}
    for upper in levels[: levels.index(level)]:
        key = UNIQUE_KEYS[upper]
        text = (_text(identifier[key]) if key in identifier else "").strip()
        if text in ("", "*"):
            raise QueryError(
                f"a {level}-level query in {_MODEL_NAMES[model]} needs the unique key {key} of "
                f"the {upper} level: only hierarchical queries are supported (PS3.4 C.4.1.3.1), "
                "not relational ones")
        if any(c in text for c in "\\*?"):
            raise QueryError(f"the {upper}-level unique key {key} must be a single value "
                             f"without wildcards, not {text!r}")
        keys[key] = text
    return keys


def _elements(query: Dataset) -> Iterator[DataElement]:
    """The keys of a query: its elements but the Q/R level, the character set and group
    lengths. A value pydicom cannot decode is the SCU's error, reported as such."""
    try:
        elements = list(query)
    except ValueError as exc:
        raise QueryError(f"cannot decode the identifier: {exc}") from exc
    return (e for e in elements if e.tag not in _NOT_KEYS and e.tag.element != 0)


def _vr(elem: DataElement) -> str:
    """The dictionary VR of a public key (robust to UN from implicit-VR peers), else its own."""
    try:
        vr = str(dictionary_VR(elem.tag))
    except KeyError:
        return str(elem.VR)
    return str(elem.VR) if " or " in vr else vr


def _text(elem: DataElement) -> str:
    """A key's value as the string that was sent (values joined with backslashes)."""
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def _exact(vr: str, text: str) -> list[str] | None:
    """The values a unique key matches exactly (to restrict in SQL), or None."""
    values = [v.strip() for v in text.split("\\")]
    if vr == "PN" or not all(values) or any(c in text for c in "*?"):
        return None
    return values


def query_identifier(level: Level, requested: Sequence[tuple[int, str, str]],
                record: dict[str, Any]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    keywords = [keyword for _, _, keyword in requested]
    for tag, vr, keyword in requested:
        value = record.get(keyword)
        ds.add_new(tag, vr, empty_value_for_VR(vr) if value in (None, "", []) else value)
    if any(isinstance(v, str) and not v.isascii() for v in map(record.get, keywords)):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


# --- matching ------------------------------------------------------------------------------


def matcher(vr: str, text: str) -> Callable[[Value], bool] | None:
    """A predicate on stored values for a key of VR ``vr`` given ``text`` (PS3.4 C.2.2.2), or
    None for universal matching. Raises QueryError for a value the VR does not allow."""
    if text.strip() in ("", "*"):
        return None
    singles = [_single(vr, v) for v in text.split("\\")]

    def match(stored: Value) -> bool:
        values = stored if isinstance(stored, list) else [str(stored)]
        return any(m(v) for v in values for m in singles)

    return match


def _single(vr: str, text: str) -> Matcher:
    if "*" in text or "?" in text:
        if vr not in WILDCARD_VRS:
            raise QueryError(f"wildcards are not allowed in {vr} values (PS3.4 C.2.2.2.4): "
                             f"{text!r}")
        pattern = re.compile("".join(
            ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in _norm(vr, text)
        ), re.DOTALL)
        return lambda stored: pattern.fullmatch(_norm(vr, stored)) is not None
    if vr in ("DA", "TM"):
        return _range(vr, text)
    wanted = _norm(vr, text)
    return lambda stored: stored.strip() != "" and _norm(vr, stored) == wanted


def _norm(vr: str, text: str) -> str:
    text = text.strip()
    if vr == "PN":
        return text.rstrip("^=").casefold()
    if vr == "IS" and re.fullmatch(r"[+-]?\d+", text):
        return str(int(text))
    return text


def _range(vr: str, text: str) -> Matcher:
    """Single value or range matching of a DA or TM value (PS3.4 C.2.2.2.1, C.2.2.2.5)."""
    low_text, dash, high_text = text.strip().partition("-")
    if not dash:
        high_text = low_text
    if "-" in high_text or not (low_text or high_text):
        raise QueryError(f"malformed {vr} range {text!r}: expected A, A-B, -B or A-")
    low = _instant(vr, low_text, last=False) if low_text else ""
    high = _instant(vr, high_text, last=True) if high_text else "~"
    if low is None or high is None:
        raise QueryError(f"malformed {vr} value in {text!r} (PS3.5 6.2)")

    def match(stored: str) -> bool:
        instant = _instant(vr, stored, last=False)
        return instant is not None and low <= instant <= high

    return match


def _instant(vr: str, text: str, *, last: bool) -> str | None:
    """A DA or TM value as a fixed-width sortable string, or None if malformed. A time of lower
    precision becomes the first (or, with ``last``, the last) instant it covers. Accepts the
    ACR-NEMA forms YYYY.MM.DD and HH:MM:SS (PS3.5 6.2, Table 6.2-1 notes)."""
    if vr == "DA":
        text = text.strip().replace(".", "")
        return text if _DA.fullmatch(text) else None
    text = text.strip().replace(":", "")
    if not _TM.fullmatch(text):
        return None
    return text + ("235959.999999" if last else "000000.000000")[len(text):]
