"""The File Meta Information the archive writes in front of every dataset it stores (PS3.10 7.1):
encoded here rather than by pydicom's writer, which would cost more than the rest of a store.
Re-exported by :mod:`lab.dicom.data.encoded`, which reads what this writes."""

from __future__ import annotations

import struct

from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

#: The VRs whose explicit VR header has a 32-bit length (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
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
