"""PS3.15 Table E.1-1 as data: what the Basic Application Level Confidentiality Profile and its
options do to each attribute.

The table is ``confidentiality_e1_1.csv`` beside this module: every row of Table E.1-1
("Application Level Confidentiality Profile Attributes") of **DICOM PS3.15 2024b** — 621
attributes, each with the Basic Profile's action and the action of each option that changes it
(the letters of Table E.1-1a: D dummy value, Z zero length, X remove, K keep, C clean,
U replace UID; ``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*`` leave the choice to the
implementation by the attribute's type in the IOD). Rows name groups with ``XX`` (curves
(50xx,xxxx), overlays (60xx,3000) and (60xx,4000)); the row of the private attributes (odd
groups, "(gggg,eeee) where gggg is odd" in the standard) has the tag ``PRIVATE``.

The options the lab applies (:data:`OPTIONS`) are those whose actions are fully mechanical here;
the Clean Pixel Data, Clean Recognizable Visual Features, Clean Graphics, Clean Structured
Content and Retain Safe Private options need knowledge of the content the lab does not have, so
they are refused rather than claimed. Each option is named in De-identification Method Code
Sequence (0012,0064) by its code of CID 7050 (PS3.16), taken from pydicom's code dictionary.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from lab.errors import LabError

EDITION = "DICOM PS3.15 2024b, Table E.1-1"
TABLE_FILE = "confidentiality_e1_1.csv"

#: The options applied here, by their column name in the table file, with their CID 7050 code.
OPTIONS: dict[str, Code] = {
    "retain-uids": codes.DCM.RetainUidsOption,
    "retain-device-identity": codes.DCM.RetainDeviceIdentityOption,
    "retain-institution-identity": codes.DCM.RetainInstitutionIdentityOption,
    "retain-patient-characteristics": codes.DCM.RetainPatientCharacteristicsOption,
    "retain-long-full-dates": codes.DCM.RetainLongitudinalTemporalInformationFullDatesOption,
    "retain-long-modified-dates":
        codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption,
    "clean-descriptors": codes.DCM.CleanDescriptorsOption,
}
#: Options of the table that the lab does not apply (see the module's docstring).
REFUSED = ("retain-safe-private", "clean-structured-content", "clean-graphics")
BASIC_PROFILE: Code = codes.DCM.BasicApplicationConfidentialityProfile

_ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})


class DeidError(LabError):
    """De-identification or re-identification cannot be done; the message says why."""


@dataclass(frozen=True)
class Row:
    """One attribute of Table E.1-1: ``tag`` as eight hex digits, ``X`` standing for any digit
    in group patterns; ``actions`` maps ``basic`` and each option column to its action."""

    tag: str
    name: str
    actions: dict[str, str]

    def action(self, options: frozenset[str]) -> str:
        """The action with ``options`` applied: an option that keeps (K) wins over one that
        cleans (C), which wins over the Basic Profile's action (PS3.15 E.3: each option
        retains or cleans what the Basic Profile would have removed)."""
        chosen = [self.actions[name] for name in options if self.actions.get(name)]
        for wanted in ("K", "C"):
            if wanted in chosen:
                return wanted
        return self.actions["basic"]


def check_options(options: Iterable[str]) -> frozenset[str]:
    """The options as a set, refusing unknown ones and the ones the lab cannot apply; the Full
    Dates and Modified Dates options exclude each other (PS3.15 E.3.6)."""
    chosen = frozenset(options)
    refused = sorted(chosen & set(REFUSED))
    if refused:
        raise DeidError(f"option(s) {', '.join(refused)} need content knowledge the lab does "
                        f"not have; the lab applies {', '.join(OPTIONS)}")
    unknown = sorted(chosen - set(OPTIONS))
    if unknown:
        raise DeidError(f"unknown option(s) {', '.join(unknown)}: one of {', '.join(OPTIONS)}")
    if {"retain-long-full-dates", "retain-long-modified-dates"} <= chosen:
        raise DeidError("retain-long-full-dates and retain-long-modified-dates exclude each "
                        "other (PS3.15 E.3.6)")
    return chosen


@cache
def table() -> tuple[dict[int, Row], tuple[tuple[re.Pattern[str], Row], ...]]:
    """The rows of Table E.1-1, by tag, and the group patterns (``50XXXXXX``) apart."""
    text = resources.files("lab.dicom.data").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    exact: dict[int, Row] = {}
    patterns = []
    for record in csv.DictReader(lines):
        tag, name = record.pop("tag"), record.pop("name")
        actions = {column: value for column, value in record.items() if value}
        bad = sorted(set(actions.values()) - _ACTIONS)
        if bad or "basic" not in actions or not re.fullmatch(r"[0-9A-FX]{8}|PRIVATE", tag):
            raise DeidError(f"{TABLE_FILE}: malformed row {tag} {name}: {bad}")
        row = Row(tag, name, actions)
        if tag == "PRIVATE":
            patterns.append((re.compile("PRIVATE"), row))
        elif "X" in tag:
            patterns.append((re.compile(tag.replace("X", "[0-9A-F]")), row))
        else:
            exact[int(tag, 16)] = row
    return exact, tuple(patterns)


def row_for(tag: int) -> Row | None:
    """The row of Table E.1-1 for ``tag``, or None when the table does not list it (then the
    Basic Profile keeps it, PS3.15 E.1.1). Every private attribute has the ``PRIVATE`` row."""
    exact, patterns = table()
    if tag in exact:
        return exact[tag]
    text = "PRIVATE" if (tag >> 16) % 2 else f"{tag:08X}"
    return next((row for pattern, row in patterns if pattern.fullmatch(text)), None)
