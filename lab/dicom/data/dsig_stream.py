"""The byte stream a DICOM digital signature's MAC is computed over (PS3.3 C.12.1.1.3.1.1).

The signed Data Elements are encoded one after the other, in the order of the data set, in the
MAC Calculation Transfer Syntax (an explicit VR little endian one, PS3.5 7.1.2) with these
rules of PS3.3 C.12.1.1.3.1.1:

- an ordinary element is its tag, VR, value length and value, exactly as in PS3.5 7.1.2;
- a sequence is its tag and VR (with the two reserved bytes) but no value length, then each
  item as the Item tag (FFFE,E000) without the item length followed by the item's elements,
  never an Item Delimitation tag, and finally the Sequence Delimitation tag (FFFE,E0DD) with no
  length: so the stream does not depend on whether lengths were defined or undefined;
- encapsulated Pixel Data (PS3.5 A.4) is treated like a sequence: each fragment (the Basic
  Offset Table first) is the Item tag and the fragment's bytes, without the item length;
- never signed, at any depth: group lengths (gggg,0000), Length to End (0008,0001), groups below
  0008, the Digital Signatures Sequence (group FFFA), the MAC Parameters Sequence (4FFE,0001),
  Data Set Trailing Padding (FFFC,FFFC), elements of VR UN, and sequences holding a UN element.

Values come from the bytes as read where pydicom still holds them raw (an explicit VR little
endian file), so a verifier sees exactly what the signer encoded; elements set or changed in
memory are encoded by pydicom's writer. DCMTK's dcmsign forms the same stream (its
``writeSignatureFormat``), which is what makes signatures interoperate.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITATION = b"\xfe\xff\xdd\xe0"
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
#: VRs whose explicit VR encoding has two reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT",
                       "UV"})
_UNDEFINED = 0xFFFFFFFF


class StreamError(ValueError):
    """An element cannot be encoded into the MAC byte stream (e.g. an ambiguous VR)."""


def signable_tag(tag: BaseTag) -> bool:
    """False for the tags PS3.3 C.12.1.1.3.1.1 keeps out of every MAC calculation."""
    return not (
        tag.element == 0
        or tag.group < 0x0008
        or tag == 0x00080001
        or tag.group == 0xFFFA
        or tag == 0x4FFE0001
        or tag == 0xFFFCFFFC
        or tag.group == 0xFFFE
    )


def signable(ds: Dataset, tag: BaseTag) -> bool:
    """True when the element ``tag`` of ``ds`` may be signed: a signable tag, not of VR UN, and
    (a sequence) with no UN element in any of its items at any depth (PS3.3 C.12.1.1.3.1.1)."""
    if not signable_tag(tag):
        return False
    vr = _vr(ds, tag)
    if vr == "UN":
        return False
    if vr == "SQ":
        return all(_item_free_of_un(item) for item in ds[tag].value)
    return True


def _item_free_of_un(item: Dataset) -> bool:
    return all(signable(item, Tag(tag)) or not signable_tag(Tag(tag))
               for tag in sorted(item.keys()))


def mac_stream(ds: Dataset, tags: Iterable[int]) -> bytes:
    """The bytes the MAC covers: the elements ``tags`` of ``ds`` (those present), in data set
    order, encoded as PS3.3 C.12.1.1.3.1.1 says."""
    wanted = {Tag(tag) for tag in tags}
    return b"".join(encode_element(ds, Tag(tag)) for tag in sorted(ds.keys()) if tag in wanted)


def item_stream(item: Dataset, leave_out: Iterable[int]) -> bytes:
    """The signable elements of a Digital Signatures Sequence item, except ``leave_out`` (the
    certificate, the signature and certified timestamp, which cannot sign themselves)."""
    skipped = {Tag(tag) for tag in leave_out}
    return b"".join(encode_element(item, Tag(tag)) for tag in sorted(item.keys())
                    if tag not in skipped and signable(item, Tag(tag)))


def encode_element(ds: Dataset, tag: BaseTag) -> bytes:
    """One element of ``ds`` in the signature format (see the module's rules)."""
    raw = ds.get_item(tag)
    vr = _raw_vr(ds, tag)
    if _vr(ds, tag) == "SQ":
        return _header(tag, "SQ") + _sequence(ds[tag].value)
    if isinstance(raw, RawDataElement) and vr is not None and raw.value is not None:
        if tag == _PIXEL_DATA and raw.length == _UNDEFINED:
            return _encapsulated(tag, vr, bytes(raw.value))
        return _header(tag, vr) + _length(vr, len(raw.value)) + bytes(raw.value)
    return _converted(ds, tag)


def _vr(ds: Dataset, tag: BaseTag) -> str:
    """The VR as read, else as pydicom converted it (only then is the element converted)."""
    return _raw_vr(ds, tag) or str(ds[tag].VR)


def _raw_vr(ds: Dataset, tag: BaseTag) -> str | None:
    """The VR as read from an explicit VR file (None if implicit or already converted)."""
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement) and raw.VR is not None and not raw.is_implicit_VR:
        return str(raw.VR)
    return None


def _converted(ds: Dataset, tag: BaseTag) -> bytes:
    elem = correct_ambiguous_vr_element(ds[tag], ds, True)
    if not isinstance(elem, DataElement) or " or " in elem.VR:
        raise StreamError(f"cannot encode {tag} for a signature: ambiguous VR {elem.VR}")
    if elem.tag == _PIXEL_DATA and elem.is_undefined_length:
        return _encapsulated(tag, elem.VR, bytes(elem.value))
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_data_element(fp, elem, _encodings(ds))
    return fp.getvalue()


def _encodings(ds: Dataset) -> list[str]:
    charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
    return convert_encodings(list(charset) if not isinstance(charset, str) else charset)


def _sequence(items: Sequence) -> bytes:
    parts = []
    for item in items:
        parts.append(_ITEM)
        parts.extend(encode_element(item, Tag(tag)) for tag in sorted(item.keys())
                     if signable(item, Tag(tag)))
    parts.append(_SEQUENCE_DELIMITATION)
    return b"".join(parts)


def _encapsulated(tag: BaseTag, vr: str, value: bytes) -> bytes:
    fragments = (_ITEM + fragment for fragment in generate_fragments(value))
    return _header(tag, vr) + b"".join(fragments) + _SEQUENCE_DELIMITATION


def _header(tag: BaseTag, vr: str) -> bytes:
    """Tag and VR, with the reserved bytes for a long VR; the caller adds the length."""
    head = struct.pack("<HH", tag.group, tag.element) + vr.encode("ascii")
    return head + b"\x00\x00" if vr in _LONG_VRS else head


def _length(vr: str, length: int) -> bytes:
    return struct.pack("<L" if vr in _LONG_VRS else "<H", length)
