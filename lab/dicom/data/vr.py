"""What a valid value of each text VR the archive indexes looks like (PS3.5 6.2, Table 6.2-1),
and the fixed element sizes of the binary VRs.

The archive checks every indexed attribute against these rules before it acknowledges an object
(PS3.4 B.2.3: refuse rather than store what it cannot file), so a value in the wrong character
set, too long, or of another form never reaches the index or a C-FIND answer.
"""

from __future__ import annotations

import re

#: Dates, times and UIDs (PS3.5 6.2, 9.1).
DA = re.compile(r"\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")
TM = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")
UI = re.compile(r"[0-9]+(\.[0-9]+)*")
_IS = re.compile(r"[+-]?\d{1,12}")
_CS = re.compile(r"[A-Z0-9_ ]{0,16}")
#: The most characters of one value (PS3.5 Table 6.2-1; PN: per component group).
_MAX_CHARS = {"AE": 16, "CS": 16, "DA": 8, "IS": 12, "LO": 64, "PN": 64, "SH": 16, "UI": 64}
#: Control characters a text value may hold: ESC for ISO 2022 code extensions (PS3.5 6.1.2.5.3).
_ESC = "\x1b"
#: Bytes per value of the binary VRs (PS3.5 Table 6.2-1): a length must be a multiple.
FIXED_SIZES = {b"AT": 4, b"FL": 4, b"FD": 8, b"SL": 4, b"SS": 2, b"UL": 4, b"US": 2, b"OD": 8,
               b"OF": 4, b"OL": 4, b"OW": 2, b"OV": 8, b"SV": 8, b"UV": 8}


def problem(vr: str, text: str) -> str | None:
    """Why ``text`` (a value as decoded, padding removed, values joined by backslashes) is not
    a valid value of ``vr``, or None if it is (an empty value always is)."""
    if not text:
        return None
    if any((c < " " and c != _ESC) or c in "\x7f\ufffd" for c in text):
        return "holds a control character or a byte of another character set"
    values = text.split("\\")
    limit = _MAX_CHARS.get(vr)
    for value in values:
        parts = value.split("=") if vr == "PN" else [value]
        if limit is not None and any(len(part) > limit for part in parts):
            return f"is longer than the {limit} characters of a {vr} value"
        pattern = {"DA": DA, "TM": TM, "UI": UI, "IS": _IS, "CS": _CS}.get(vr)
        if pattern is not None and value.strip(" ") and not pattern.fullmatch(value.strip(" ")):
            return f"is not a valid {vr} value"
    return None
