"""The value rules of the indexed VRs (lab.dicom.data.vr, PS3.5 6.2): what the archive refuses."""

from __future__ import annotations

import pytest

from lab.dicom.data import vr
from lab.dicom.data.vr import problem


@pytest.mark.parametrize(("vr", "text"), [
    ("PN", "DOE^JOHN"), ("PN", "A" * 64 + "=" + "B" * 64),  # 64 characters per component group
    ("LO", "a\x1b$Bb"),  # ESC: ISO 2022 code extensions (PS3.5 6.1.2.5.3)
    ("CS", "ORIGINAL\\PRIMARY"), ("IS", " 12 "), ("DA", "20240229"), ("TM", "235960.123456"),
    ("UI", "1.2.840.10008.1.2"), ("SH", ""), ("XX", "anything printable"),
])
def test_valid_values_pass(vr: str, text: str) -> None:
    assert problem(vr, text) is None


@pytest.mark.parametrize(("vr", "text", "why"), [
    ("PN", "A" * 65, "longer"), ("PN", "A" * 65 + "=B", "longer"), ("UI", "1" * 65, "longer"),
    ("LO", "a\x00b", "control"), ("LO", "a\x1fb", "control"), ("LO", "a\x7fb", "control"),
    ("PN", "M\ufffdLLER", "control"), ("CS", "ORIGINAL\\primary", "not a valid CS"),
    ("DA", "20241301", "not a valid DA"), ("UI", "1..2", "not a valid UI"),
    ("IS", "1.5", "not a valid IS"), ("TM", "2460", "not a valid TM"),
])
def test_invalid_values_are_named(vr: str, text: str, why: str) -> None:
    assert why in (problem(vr, text) or "")


def test_remembered_checks_agree_and_stay_bounded() -> None:
    cases = [("DA", "20241301"), ("DA", "20240229"), ("PN", "A" * 65), ("UI", "1.2.3"),
             ("LO", "x" * (vr.CHECKED_LENGTH + 1) + "\x00")]
    for _ in range(2):  # the second time from the cache, where it was kept
        assert [vr.checked(*c) for c in cases] == [problem(*c) for c in cases]
    for n in range(vr.CHECKED_CACHE + 50):
        vr.checked("IS", str(n))
    assert vr._checked.cache_info().currsize <= vr.CHECKED_CACHE
