"""lab.dicom.data.encoded: the indexed attributes decoded straight from the bytes agree with
pydicom's decoding (which remains the path for other character sets and unusual encodings), and a VR
PS3.5 does not define is refused wherever it is."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from lab.dicom.archive.schema import WANTED as _WANTED
from lab.dicom.archive.store import StoreError
from lab.dicom.data import encoded as enc

from ..conftest import SOP, encoded, make_dataset


def _both(data: bytes, ts: str) -> tuple[dict[str, str] | None, dict[str, str]]:
    implicit, little, _ = enc._syntax(ts)
    walker = enc._Walker(data, 0, little=little,
                         wanted=frozenset(_WANTED.values()) | {enc._CHARSET_TAG})
    walker.dataset(0, implicit)
    return (enc._fast_values(data, walker, _WANTED),
            enc._pydicom_values(data, 0, walker, implicit, little, _WANTED))


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                ExplicitVRBigEndian])
@pytest.mark.parametrize("attrs", [
    {},
    {"PatientName": "Müller^Jörg", "SpecificCharacterSet": "ISO_IR 100"},
    {"PatientName": "Ωμέγα^Σ", "SpecificCharacterSet": "ISO_IR 192"},
    {"StudyDescription": "odd", "PatientID": "P1 ", "SeriesNumber": 12, "InstanceNumber": None},
])
def test_fast_values_agree_with_pydicom(ts: str, attrs: dict[str, Any]) -> None:
    fast, slow = _both(encoded(make_dataset(SOP, **attrs), ts), ts)
    assert fast == slow


@pytest.mark.parametrize("attrs", [
    {"PatientName": "Yamada^Tarou", "SpecificCharacterSet": "ISO 2022 IR 87"},
    {"PatientName": ["A^B", "C^D"]},  # multiple values: pydicom's business
])
def test_unusual_values_go_to_pydicom(attrs: dict[str, Any]) -> None:
    fast, slow = _both(encoded(make_dataset(SOP, **attrs)), ExplicitVRLittleEndian)
    assert fast is None and slow["PatientName"]


def test_an_undefined_vr_is_refused_even_outside_the_indexed_attributes() -> None:
    data = encoded(make_dataset(SOP), ExplicitVRLittleEndian)
    at = data.index(b"\x28\x00\x10\x00US")  # Rows, not indexed
    bad = data[: at + 4] + b"QQ" + data[at + 6 :]
    with pytest.raises(StoreError, match="invalid VR"):
        enc.parse(bad, ExplicitVRLittleEndian, make_dataset(SOP).SOPClassUID, SOP, _WANTED)


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_our_own_header_is_recognised_not_reread(ts: str, monkeypatch: pytest.MonkeyPatch,
                                                 ) -> None:
    ds = make_dataset(SOP)
    body = encoded(ds, ts)
    data = enc.file_meta(ts, ds.SOPClassUID, SOP) + body
    general = enc.parse(data, ts, ds.SOPClassUID, SOP, _WANTED)  # by the header's bytes
    monkeypatch.setattr(enc, "file_meta", lambda *_: b"never the input")  # the general path
    assert enc.parse(data, ts, ds.SOPClassUID, SOP, _WANTED) == general
    assert data[general.offset:] == body and general.has_meta


def test_a_header_of_another_instance_is_still_refused() -> None:
    ds = make_dataset(SOP)
    data = enc.file_meta(ExplicitVRLittleEndian, ds.SOPClassUID, SOP + ".9") + encoded(ds)
    with pytest.raises(StoreError, match="disagrees"):
        enc.parse(data, ExplicitVRLittleEndian, ds.SOPClassUID, SOP, _WANTED)


# --- the first bytes of a received file (parse(..., size=)) ------------------------------------


def _file(ts: str = ExplicitVRLittleEndian, **attrs: Any) -> tuple[bytes, str]:
    ds = make_dataset(SOP, pixels=bytes(range(256)) * 256, **attrs)  # 64 KiB of pixels
    return enc.file_meta(ts, ds.SOPClassUID, SOP) + encoded(ds, ts), ds.SOPClassUID


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                ExplicitVRBigEndian])
def test_the_first_bytes_decide_as_the_whole_file_does(ts: str) -> None:
    data, sop_class = _file(ts)
    head = data[: data.index(bytes(range(256)))]  # up to the Pixel Data's value
    whole = enc.parse(data, ts, sop_class, SOP, _WANTED)
    assert enc.parse(head, ts, sop_class, SOP, _WANTED, size=len(data)) == whole
    assert enc.parse(data, ts, sop_class, SOP, _WANTED, size=len(data)) == whole


def test_first_bytes_that_end_inside_the_attributes_are_not_enough() -> None:
    data, sop_class = _file()
    at = data.index(b"\x10\x00\x10\x00PN")  # Patient's Name: before it, not every value
    for cut in (at + 4, at + 12, 200, len(enc.file_meta(ExplicitVRLittleEndian, sop_class, SOP))):
        with pytest.raises(enc.Incomplete):
            enc.parse(data[:cut], ExplicitVRLittleEndian, sop_class, SOP, _WANTED,
                      size=len(data))


def test_first_bytes_judge_lengths_against_the_whole_size() -> None:
    """A file shorter than its Pixel Data's length says is refused from its first bytes, and
    one longer than its elements (bytes after the last) is walked into the rest: Incomplete."""
    data, sop_class = _file()
    head = data[: data.index(bytes(range(256)))]
    with pytest.raises(StoreError, match="truncated"):
        enc.parse(head, ExplicitVRLittleEndian, sop_class, SOP, _WANTED, size=len(data) - 2)
    with pytest.raises(enc.Incomplete):
        enc.parse(head, ExplicitVRLittleEndian, sop_class, SOP, _WANTED, size=len(data) + 8)


def test_first_bytes_refuse_what_the_whole_file_refuses() -> None:
    data, sop_class = _file()
    at = data.index(b"\x28\x00\x10\x00US")
    bad = data[: at + 4] + b"QQ" + data[at + 6:]
    head = bad[: bad.index(bytes(range(256)))]
    with pytest.raises(StoreError, match="invalid VR"):
        enc.parse(head, ExplicitVRLittleEndian, sop_class, SOP, _WANTED, size=len(bad))


def test_first_bytes_of_a_foreign_or_deflated_file_are_not_enough() -> None:
    data, sop_class = _file()
    other = enc.file_meta(ExplicitVRLittleEndian, sop_class, SOP + ".9")
    body = data[len(other) - 2:]  # (same length: the UID is 2 bytes longer)
    with pytest.raises(enc.Incomplete):
        enc.parse(other + body[:2000], ExplicitVRLittleEndian, sop_class, SOP, _WANTED,
                  size=len(other) + len(body))
    deflated = "1.2.840.10008.1.2.1.99"
    with pytest.raises(enc.Incomplete):
        enc.parse(enc.file_meta(deflated, sop_class, SOP) + b"\0" * 100, deflated, sop_class,
                  SOP, _WANTED, size=10_000)
