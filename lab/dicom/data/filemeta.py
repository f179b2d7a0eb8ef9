"""The File Meta Information the archive writes in front of every dataset it stores (PS3.10 7.1):
encoded here rather than by pydicom's writer, which would cost more than the rest of a store;
and the Part-10 header of a file split from its dataset (:func:`split_part10`). Re-exported by
:mod:`lab.dicom.data.encoded`, which reads what this writes."""

from __future__ import annotations

import mmap
import struct

from lab.dicom.data.errors import StoreError
from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

#: The VRs whose explicit VR header has a 32-bit length (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
#: Every VR of PS3.5 6.2 (2023): any other in an explicit VR dataset is malformed.
VRS = LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
     b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)


def _meta_element(element: int, vr: bytes, value: bytes, pad: bytes = b"\0") -> bytes:
    """One File Meta element, explicit VR little endian, padded to even length (PS3.5 7.1.2)."""
    value += pad * (len(value) % 2)
    if vr in LONG_VRS:
        return struct.pack("<HH2s2xL", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def file_meta(ts: str, sop_class: str, sop_instance: str) -> bytes:
    """Preamble, 'DICM' and the File Meta Information (PS3.10 7.1), encoded here: it is the
    only thing the store encodes, and pydicom's writer would cost more than the rest of a
    store. The elements every object shares are encoded once (:data:`_VERSION`, :data:`_OURS`)."""
    body = b"".join((
        _VERSION,
        _meta_element(0x0002, b"UI", sop_class.encode()),
        _meta_element(0x0003, b"UI", sop_instance.encode()),
        _meta_element(0x0010, b"UI", ts.encode()),
        _OURS,
    ))
    return _PREAMBLE + _meta_element(0x0000, b"UL", struct.pack("<L", len(body))) + body


_PREAMBLE = b"\0" * 128 + b"DICM"
_VERSION = _meta_element(0x0001, b"OB", b"\0\1")  # File Meta Information Version
_OURS = (_meta_element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode())
         + _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode(), b" "))


#: The File Meta elements read (PS3.10 Table 7.1-1), by element number of group 0002.
_META_KEYWORDS = {0x0002: "MediaStorageSOPClassUID", 0x0003: "MediaStorageSOPInstanceUID",
                  0x0010: "TransferSyntaxUID", 0x0012: "ImplementationClassUID"}


def split_part10(buf: bytes | mmap.mmap) -> tuple[int, dict[str, str] | None]:
    """Offset of the dataset and the File Meta Information's UIDs (keyword: UID) if ``buf``
    starts with a Part-10 header (128-byte preamble, 'DICM', group 0002 led by its group length,
    explicit VR little endian: PS3.10 7.1)."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        return 0, None
    if len(buf) < 144 or buf[132:138] != b"\x02\x00\x00\x00UL":
        raise StoreError("File Meta Information lacks its group length (PS3.10 7.1)")
    end = 144 + struct.unpack_from("<L", buf, 140)[0]
    if end > len(buf):
        raise StoreError("File Meta Information is truncated")
    meta: dict[str, str] = {}
    pos = 144
    while pos < end:
        if pos + 8 > end:
            raise StoreError("File Meta Information ends inside an element header")
        group, element = struct.unpack_from("<HH", buf, pos)
        vr = bytes(buf[pos + 4 : pos + 6])
        if group != 0x0002 or vr not in VRS:
            raise StoreError(f"File Meta Information is malformed at byte {pos} (PS3.10 7.1)")
        if vr in LONG_VRS:
            if pos + 12 > end:
                raise StoreError("File Meta Information ends inside an element header")
            length, pos = struct.unpack_from("<L", buf, pos + 8)[0], pos + 12
        else:
            length, pos = struct.unpack_from("<H", buf, pos + 6)[0], pos + 8
        if pos + length > end:
            raise StoreError("File Meta Information element overruns its group length")
        if element in _META_KEYWORDS:
            meta[_META_KEYWORDS[element]] = (
                bytes(buf[pos : pos + length]).decode("ascii", "replace").rstrip(" \x00"))
        pos += length
    return end, meta
