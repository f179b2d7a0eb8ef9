"""What a valid value of each text VR the archive indexes looks like (PS3.5 6.2, Table 6.2-1),
and the fixed element sizes of the binary VRs.

The archive checks every indexed attribute against these rules before it acknowledges an object
(PS3.4 B.2.3: refuse rather than store what it cannot file), so a value in the wrong character
set, too long, or of another form never reaches the index or a C-FIND answer.
"""

from __future__ import annotations

import functools
import re

#: Dates, times and UIDs (PS3.5 6.2, 9.1).
DA = re.compile(r"\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")
TM = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")
UI = re.compile(r"[0-9]+(\.[0-9]+)*")
_IS = re.compile(r"[+-]?\d{1,12}")
_CS = re.compile(r"[A-Z0-9_ ]{0,16}")
#: The most characters of one value (PS3.5 Table 6.2-1; PN: per component group).
_MAX_CHARS = {"AE": 16, "CS": 16, "DA": 8, "IS": 12, "LO": 64, "PN": 64, "SH": 16, "UI": 64}
#: Control characters a text value may hold: ESC for ISO 2022 code extensions (PS3.5 6.1.2.5.3);
#: any other, DEL, or U+FFFD (what a byte of another character set was decoded to) makes it bad.
_BAD_CHAR = re.compile("[\x00-\x1a\x1c-\x1f\x7f\ufffd]")
_PATTERNS = {"DA": DA, "TM": TM, "UI": UI, "IS": _IS, "CS": _CS}
#: Bytes per value of the binary VRs (PS3.5 Table 6.2-1): a length must be a multiple.
FIXED_SIZES = {b"AT": 4, b"FL": 4, b"FD": 8, b"SL": 4, b"SS": 2, b"UL": 4, b"US": 2, b"OD": 8,
               b"OF": 4, b"OL": 4, b"OW": 2, b"OV": 8, b"SV": 8, b"UV": 8}


def problem(vr: str, text: str) -> str | None:
    """Why ``text`` (a value as decoded, padding removed, values joined by backslashes) is not
    a valid value of ``vr``, or None if it is (an empty value always is)."""
    if not text:
        return None
    if _BAD_CHAR.search(text):  # one scan in C: this runs for every indexed value of every object
        return "holds a control character or a byte of another character set"
    limit = _MAX_CHARS.get(vr)
    pattern = _PATTERNS.get(vr)
    for value in text.split("\\"):
        if limit is not None and len(value) > limit and (
                vr != "PN" or any(len(part) > limit for part in value.split("="))):
            return f"is longer than the {limit} characters of a {vr} value"
        if pattern is not None:
            value = value.strip(" ")
            if value and not pattern.fullmatch(value):
                return f"is not a valid {vr} value"
    return None


def checked(vr: str, text: str) -> str | None:
    """:func:`problem`, remembered for short values: the objects of a study repeat most of
    the values the archive indexes (patient, study, series), and this runs for each of them in
    every object stored. At most CHECKED_CACHE values of at most CHECKED_LENGTH characters are
    kept."""
    return _checked(vr, text) if len(text) <= CHECKED_LENGTH else problem(vr, text)


CHECKED_CACHE, CHECKED_LENGTH = 1024, 128
_checked = functools.lru_cache(maxsize=CHECKED_CACHE)(problem)
