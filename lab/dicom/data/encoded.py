"""Encoded DICOM datasets, read and written without decoding them: what lets the store
(:mod:`lab.dicom.archive.store`) keep a received dataset's bytes unchanged and still refuse a bad
one.

- The element headers of an encoded dataset are walked (PS3.5 7.1, 7.5), skipping the values,
  which proves the dataset complete and well formed; only the leading attributes an index needs
  are then decoded (:func:`parse`).
- A Part-10 header, when present, is split off and its File Meta Information read (PS3.10 7.1:
  :func:`split_part10`); the store writes its own with :func:`file_meta`
  (:mod:`lab.dicom.data.filemeta`), the only thing it encodes.
"""

from __future__ import annotations

import functools
import mmap
import struct
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import NoReturn

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPIPHTJ2KReferencedDeflate,
)

from lab.dicom.data import vr as vrs
from lab.dicom.data.errors import StoreError as StoreError
from lab.dicom.data.filemeta import LONG_VRS as _LONG_VRS
from lab.dicom.data.filemeta import VRS as _VRS
from lab.dicom.data.filemeta import file_meta as file_meta
from lab.dicom.data.filemeta import split_part10 as split_part10

UID_PATTERN = vrs.UI  # PS3.5 9.1; also keeps file names safe
#: Deflate, JPIP Referenced Deflate (1.2.840.10008.1.2.4.95, not named by pydicom 3.0), HTJ2K.
_DEFLATED = frozenset({DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.4.95",
                       JPIPHTJ2KReferencedDeflate})


_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: Character sets whose text a Python codec decodes as pydicom would, without code extensions.
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_CHARSET_TAG = 0x00080005
_MAX_DEPTH = 32
#: The most a deflated dataset may inflate to (PS3.5 A.5), and one inflated at a time, so that
#: a small "deflate bomb" cannot take the archive's memory; larger ones are refused.
INFLATE_LIMIT = 64 << 20
_INFLATING = threading.Lock()
#: What can be parsed: bytes, or a file mapped into memory.
Buffer = bytes | mmap.mmap


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Walker:
    """Walks the element headers of an encoded dataset (PS3.5 7.1, 7.5) skipping the values:
    every defined length must fit and every undefined length must be closed by its delimiter,
    which is what a truncated or garbled dataset fails. Records where the elements the index
    needs end (``index_end``), so that only those bytes are decoded."""

    def __init__(self, buf: Buffer, start: int, *, little: bool,
                 wanted: frozenset[int], end: int | None = None) -> None:
        self.buf, self.start, self.end = buf, start, len(buf) if end is None else end
        self.wanted = wanted
        self.last_wanted = max(wanted)  # the highest tag to decode: nothing past it is needed
        #: Where the wanted top-level elements are: tag -> (VR or b'', value position, length).
        self.found: dict[int, tuple[bytes, int, int]] = {}
        endian = "<" if little else ">"
        self.u32 = struct.Struct(endian + "L")
        #: Tag, VR and 16-bit length of an explicit VR element; tag and length of an implicit one.
        self.explicit, self.implicit = (struct.Struct(endian + f) for f in ("HH2sH", "HHL"))
        self.index_end: int | None = None

    def fail(self, pos: int, why: str) -> NoReturn:
        raise StoreError(f"malformed dataset at byte {pos - self.start}: {why}")

    def header(self, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
        """Tag, VR (b'' if implicit), value length and value position of the element at pos."""
        if pos + 8 > self.end:
            self.fail(pos, "truncated element header")
        if implicit:
            group, element, length = self.implicit.unpack_from(self.buf, pos)
            return group << 16 | element, b"", length, pos + 8
        group, element, vr, length = self.explicit.unpack_from(self.buf, pos)
        tag = group << 16 | element
        if group == 0xFFFE:  # items and delimiters never carry a VR
            return tag, b"", self.u32.unpack_from(self.buf, pos + 4)[0], pos + 8
        if vr in _LONG_VRS:
            if pos + 12 > self.end:
                self.fail(pos, "truncated element header")
            return tag, vr, self.u32.unpack_from(self.buf, pos + 8)[0], pos + 12
        if vr not in _VRS:
            self.fail(pos, f"invalid VR {vr!r} for {_tag(tag)} (PS3.5 6.2)")
        size = vrs.FIXED_SIZES.get(vr)
        if size is not None and length % size:
            self.fail(pos, f"{_tag(tag)} is {vr.decode()} of {length} bytes, not a multiple of "
                      f"{size} (PS3.5 6.2)")
        return tag, vr, length, pos + 8

    def skip(self, at: int, tag: int, pos: int, length: int) -> int:
        if pos + length > self.end:
            self.fail(at, f"{_tag(tag)} needs {length} bytes, {self.end - pos} left (truncated)")
        return pos + length

    def dataset(self, pos: int, implicit: bool, depth: int = 0) -> int:
        """Walk one dataset: the top level runs to the end of the buffer, a nested one (an item
        of undefined length) to its Item Delimitation Item. Returns the position after it.

        The common element (a short explicit VR one, or an implicit one, of defined length) is
        read inline rather than through :meth:`header`: this loop runs for every element of
        every object the archive receives."""
        if depth > _MAX_DEPTH:
            self.fail(pos, "sequences nested too deep")
        last, end, buf, top = -1, self.end, self.buf, not depth
        short = self.implicit if implicit else self.explicit
        long_vrs, vrs_known, sizes = _LONG_VRS, _VRS, vrs.FIXED_SIZES
        wanted, found, last_wanted = self.wanted, self.found, self.last_wanted
        while pos < end:
            at = pos
            if pos + 8 > end:
                self.fail(pos, "truncated element header")
            if implicit:
                group, element, length = short.unpack_from(buf, pos)
                vr, pos = b"", pos + 8
            else:
                group, element, vr, length = short.unpack_from(buf, pos)
                if group == 0xFFFE or vr in long_vrs or vr not in vrs_known:
                    _, vr, length, pos = self.header(pos, False)
                else:
                    size = sizes.get(vr)
                    if size is not None and length % size:
                        self.header(pos, False)  # raises: not a multiple of the VR's size
                    pos += 8
            tag = group << 16 | element
            if group == 0xFFFE:
                if tag == _ITEM_END and depth:
                    return pos
                self.fail(at, f"unexpected item or delimiter {_tag(tag)}")
            if tag <= last:
                self.fail(at, f"{_tag(tag)} after {_tag(last)}: tags must ascend (PS3.5 7.1)")
            last = tag
            if top:
                if group == 0x0002:
                    self.fail(at, "File Meta Information (group 0002) inside the dataset")
                if tag > last_wanted and self.index_end is None:
                    self.index_end = at
                if tag in wanted and length != _UNDEFINED:
                    found[tag] = (vr, pos, length)
            if length != _UNDEFINED:
                if pos + length > end:
                    self.skip(at, tag, pos, length)  # raises: truncated
                pos += length
            elif implicit or vr in (b"SQ", b"UN", b"OB", b"OW"):
                pos = self.items(pos, implicit or vr == b"UN", depth)  # UN: PS3.5 6.2.2
            else:
                self.fail(at, f"undefined length for VR {vr.decode()} of {_tag(tag)}")
        if depth:
            self.fail(pos, "item without Item Delimitation Item (truncated)")
        return pos

    def items(self, pos: int, implicit: bool, depth: int) -> int:
        """Walk the items of an undefined-length value (a sequence, or encapsulated pixel data
        fragments) up to its Sequence Delimitation Item."""
        while True:
            at = pos
            tag, _, length, pos = self.header(pos, implicit=True)
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                self.fail(at, f"expected an item, found {_tag(tag)}")
            if length == _UNDEFINED:
                pos = self.dataset(pos, implicit, depth + 1)
            else:
                pos = self.skip(at, tag, pos, length)


class Incomplete(Exception):
    """:func:`parse` was given the first bytes of a file and cannot decide without the rest
    (nothing was refused: parse the whole file)."""


@dataclass(frozen=True)
class Parsed:
    """What :func:`parse` found: the dataset's position, whether a Part-10 header led it, and
    the wanted attributes as text."""

    offset: int  # where the dataset starts in the input (after a Part-10 header, if any)
    has_meta: bool
    values: dict[str, str]


def _syntax(ts: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated): every transfer syntax but these encodes the
    dataset in explicit VR little endian (PS3.5 10 and Annex A)."""
    return ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian, ts in _DEFLATED


def _inflate(buf: Buffer, offset: int) -> bytes:
    """The dataset of a deflated transfer syntax (raw RFC 1951 deflate, PS3.5 A.5), inflated
    to at most INFLATE_LIMIT bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(memoryview(buf)[offset:], INFLATE_LIMIT + 1)
    except zlib.error as exc:
        raise StoreError(f"malformed deflated dataset: {exc}") from None
    if len(data) > INFLATE_LIMIT:
        raise StoreError(f"deflated dataset inflates to more than {INFLATE_LIMIT} bytes: "
                         "refused (the archive bounds its memory)")
    if not inflater.eof:
        raise StoreError("deflated dataset is truncated")
    return data


def _text(ds: Dataset, tag: int) -> str:
    """One indexed value as text. PN/LO/SH are decoded with the Specific Character Set (PS3.5
    6.1); the other indexed VRs (UI, DA, TM, CS, IS) use only the default repertoire, and taking
    their bytes as they are keeps a malformed IS or DA from refusing the whole object."""
    if dictionary_VR(tag) in ("PN", "LO", "SH"):
        value = ds[tag].value
        text = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value or "")
    else:
        raw = ds.get_item(tag)
        value = raw.value if raw is not None else b""
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")
    return text.strip(" \x00")


@functools.cache
def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _fast_values(data: Buffer, walker: _Walker, wanted: Mapping[str, int],
                 ) -> dict[str, str] | None:
    """The wanted values decoded straight from the bytes the walker found, as :func:`_text`
    would give them; None where that takes pydicom (another character set or code extensions,
    multiple values of PN/LO/SH, an explicit VR other than the dictionary's)."""
    charset = b""
    if _CHARSET_TAG in walker.found:
        _, pos, length = walker.found[_CHARSET_TAG]
        charset = bytes(data[pos : pos + length])
    codec = _CODECS.get(charset.decode("ascii", "replace").strip(" \0"))
    if codec is None:
        return None
    values = {}
    found = walker.found
    for keyword, tag in wanted.items():
        where = found.get(tag)
        if where is None:
            values[keyword] = ""
            continue
        vr, pos, length = where
        expected = _dictionary_vr_bytes(tag)
        if expected is None:
            return None
        if vr and vr != expected and vr != b"UN":
            raise StoreError(f"{keyword} {_tag(tag)} is encoded as {vr.decode()}, not "
                             f"{expected.decode()} (PS3.6): refused rather than misfiled")
        raw = bytes(data[pos : pos + length])
        if expected in (b"PN", b"LO", b"SH"):
            if b"\\" in raw or b"\x1b" in raw:
                return None
            try:
                values[keyword] = raw.decode(codec).strip(" \x00")
            except UnicodeDecodeError:
                return None
        else:
            values[keyword] = raw.decode("ascii", "replace").strip(" \x00")
    return values


@functools.cache
def _dictionary_vr_bytes(tag: int) -> bytes | None:
    vr = _dictionary_vr(tag)
    return None if vr is None else vr.encode()


def _pydicom_values(data: Buffer, start: int, walker: _Walker, implicit: bool, little: bool,
                    wanted: Mapping[str, int]) -> dict[str, str]:
    """The wanted values decoded by pydicom (the general case of :func:`_fast_values`)."""
    head = data[start : len(data) if walker.index_end is None else walker.index_end]
    try:  # pydicom decodes values lazily: one it cannot decode (unknown VR, PS3.5 6.2) is bad input
        ds = read_dataset(BytesIO(head), implicit, little, specific_tags=list(wanted.values()))
        return {k: _text(ds, tag) if tag in ds else "" for k, tag in wanted.items()}
    except (NotImplementedError, ValueError, TypeError, KeyError, IndexError, LookupError,
            AttributeError, OverflowError, EOFError, struct.error) as exc:
        raise StoreError(f"cannot decode the indexed attributes: {exc}") from None


def parse(buf: Buffer, ts: str, sop_class: str, sop_instance: str,
          wanted: Mapping[str, int], size: int | None = None) -> Parsed:
    """Validate an encoded dataset (optionally behind a Part-10 header) and decode the
    ``wanted`` attributes (keyword: tag, an absent one as ''), checking they agree with the
    request (PS3.4 B.2.3: refuse rather than guess). ``wanted`` must hold the SOP Class,
    SOP Instance, Study Instance and Series Instance UIDs, which are checked.

    ``size``: the length of the whole input when ``buf`` holds only its first bytes (a file
    the archive received, behind its own File Meta Information): every length is judged
    against ``size``, and :class:`Incomplete` says that more than ``buf`` is needed to decide
    (an element header or a wanted value beyond it, a deflated dataset)."""
    ours = file_meta(ts, sop_class, sop_instance)
    implicit, little, deflated = _syntax(ts)
    end = len(buf) if size is None else size
    if end > len(buf) and (deflated or buf[: len(ours)] != ours):
        raise Incomplete
    if buf[: len(ours)] == ours:  # the header a receiver of the lab wrote: nothing to read in it
        offset, has_meta = len(ours), True
    else:
        offset, meta = split_part10(buf)
        has_meta = meta is not None
        if meta is not None and tuple(str(meta.get(k, "")) for k in (
                "TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID",
        )) != (ts, sop_class, sop_instance):
            raise StoreError("the file's File Meta Information disagrees with the request")
    if deflated:
        with _INFLATING:
            return _parse(_inflate(buf, offset), 0, implicit, little, sop_class, sop_instance,
                          wanted, offset, has_meta)
    return _parse(buf, offset, implicit, little, sop_class, sop_instance, wanted, offset,
                  has_meta, end)


def _parse(data: Buffer, start: int, implicit: bool, little: bool, sop_class: str,
           sop_instance: str, wanted: Mapping[str, int], offset: int, has_meta: bool,
           end: int | None = None) -> Parsed:
    """The body of :func:`parse`, on the dataset's (inflated) bytes from ``start`` (to ``end``,
    of which ``data`` may hold only the first bytes)."""
    end = len(data) if end is None else end
    if start >= end:
        raise StoreError("empty dataset")
    walker = _Walker(data, start, little=little, wanted=frozenset(wanted.values()) | {_CHARSET_TAG},
                     end=end)
    try:  # the walker checks every length against end: only a partial buffer is read past
        walker.dataset(start, implicit)
    except struct.error:
        if end > len(data):
            raise Incomplete from None
        raise
    if end > len(data) and (walker.index_end is None or walker.index_end > len(data) or any(
            pos + n > len(data) for _, pos, n in walker.found.values())):
        raise Incomplete  # a value to decode lies beyond the bytes given
    values = _fast_values(data, walker, wanted)
    if values is None:
        values = _pydicom_values(data, start, walker, implicit, little, wanted)
    for keyword, expected in (("SOPClassUID", sop_class), ("SOPInstanceUID", sop_instance)):
        if values[keyword] != expected:
            raise StoreError(f"dataset {keyword} {values[keyword]!r} differs from the "
                             f"request's {expected!r}")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not UID_PATTERN.fullmatch(values[keyword]):
            raise StoreError(f"dataset {keyword} {values[keyword]!r} is missing or not a UID "
                             "(Type 1, PS3.3 C.7.2.1, C.7.3.1)")
    for keyword, tag in wanted.items():
        why = vrs.checked(_dictionary_vr(tag) or "", values[keyword])
        if why is not None:
            raise StoreError(f"dataset {keyword} {values[keyword]!r} {why} (PS3.5 6.2): "
                             "refused rather than indexed")
    return Parsed(offset, has_meta, values)
