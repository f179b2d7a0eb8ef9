"""Attribute confidentiality (PS3.15 Annex E): de-identify an object for the road, the original
values encrypted for one receiving site, and re-identify it there with that site's key.

:func:`deidentify` applies the Basic Application Level Confidentiality Profile (E.1.1) and the
chosen options to every attribute Table E.1-1 lists (:mod:`.deid_table`, DICOM PS3.15 2024b), in
sequence items too (private attributes by the table's own row: removed, as the Retain Safe
Private Option is not offered), and records the profile: Patient Identity Removed (0012,0062)
YES, De-identification Method (0012,0063) and De-identification Method Code Sequence (0012,0064)
with the CID 7050 code of the profile and of each option, and Longitudinal Temporal Information
Modified (0028,0303) when a dates option is chosen. The choices the table leaves open are made
so that the object stays valid whatever the attribute's type in its IOD: ``X/Z`` -> Z, ``X/D``
and ``Z/D`` and ``X/Z/D`` -> D, ``X/Z/U*`` -> U; an empty value stays empty. U replaces an
instance UID by a "2.25." UID (PS3.5 B.2) keyed by a secret of the :class:`Deidentifier`, so the
objects of one study keep their hierarchy. C cleans: dates move by the Deidentifier's whole-day
offset (Retain Longitudinal Temporal Information with Modified Dates, E.3.6; times are kept),
text (Clean Descriptors, E.3.5) loses every identifying value the profile removed elsewhere.

The original values of every top-level attribute changed (a sequence whole when anything inside
it changed; SOP Instance UID always, which gdcmanon's re-identification requires) go, as the one
item of a Modified Attributes Sequence (0400,0550) encoded in Explicit VR Little Endian, into a
CMS EnvelopedData (AES-CBC, RSA key transport to the receiver's certificate, :mod:`.cms`) in
Encrypted Content (0400,0520) of an item of Encrypted Attributes Sequence (0400,0500) (PS3.3
C.12.1.1.4.1). GDCM's gdcmanon writes and reads the same.

:func:`reidentify` (E.1.2) opens that item with the receiver's key and puts the original values
back; the marks the profile added are removed, so the object is the original again.
"""

from __future__ import annotations

import copy
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian

from lab.dicom.data.cms import CmsError, envelope, open_envelope, recipients_of
from lab.dicom.data.deid_table import (
    BASIC_PROFILE,
    EDITION,
    OPTIONS,
    DeidError,
    check_options,
    row_for,
)

ENCRYPTED_ATTRIBUTES = Tag(0x0400, 0x0500)
SOP_INSTANCE_UID = Tag(0x0008, 0x0018)
#: What de-identification adds, taken away again by re-identification when the original lacked it.
MARKS = (Tag(0x0012, 0x0062), Tag(0x0012, 0x0063), Tag(0x0012, 0x0064), Tag(0x0028, 0x0303))
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
_DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D", "IS": "0",
          "DS": "0", "UR": "", "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0, "FD": 0.0,
          "OB": b"", "OW": b"", "UN": b""}
_CHOICE = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}


@dataclass(frozen=True)
class Deidentifier:
    """What one de-identification session needs: the receiving site's certificates, the
    options, the day offset of modified dates and the secret that keys the new UIDs (one
    session for all objects of a study, so they map alike)."""

    recipients: tuple[x509.Certificate, ...]
    options: frozenset[str] = frozenset()
    date_offset_days: int = field(default_factory=lambda: -secrets.randbelow(3650) - 1)
    uid_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    cipher: str = "aes256"

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", check_options(self.options))
        if not self.recipients:
            raise DeidError("de-identification needs the receiving site's certificate")

    def new_uid(self, uid: str) -> str:
        """The replacement of ``uid``: the same for the same UID within this session."""
        mac = hmac.HMAC(self.uid_secret, hashes.SHA256())
        mac.update(uid.encode("ascii"))
        return f"2.25.{int.from_bytes(mac.finalize()[:16], 'big')}"


def deidentify(ds: Dataset, session: Deidentifier) -> Dataset:
    """A de-identified copy of ``ds`` whose original values only ``session``'s recipients can
    read back; ``ds`` is left as it was."""
    out = copy.deepcopy(ds)
    seen: list[str] = []
    changed = _apply(out, session, seen)
    changed |= {element.tag for element in out if _clean_text(element, session, seen)}
    _mark(out, session)
    changed |= {tag for tag in MARKS if tag in ds and (tag not in out or ds[tag] != out[tag])}
    changed.add(SOP_INSTANCE_UID)  # even when kept: GDCM's re-identification requires it
    modified = Dataset()
    for tag in sorted(changed):
        if tag in ds:
            modified[tag] = copy.deepcopy(ds[tag])
    if "SpecificCharacterSet" in ds:
        modified.SpecificCharacterSet = ds.SpecificCharacterSet
    item = Dataset()
    item.EncryptedContentTransferSyntaxUID = ExplicitVRLittleEndian
    item.EncryptedContent = envelope(_encode(modified), list(session.recipients),
                                     session.cipher)
    if ENCRYPTED_ATTRIBUTES not in out:
        out.EncryptedAttributesSequence = DicomSequence()
    out.EncryptedAttributesSequence.append(item)
    if getattr(out, "file_meta", None) is not None and "SOPInstanceUID" in out:
        out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    return out


def reidentify(ds: Dataset, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> Dataset:
    """The original of a de-identified ``ds`` (the lab's or gdcmanon's), from the item of its
    Encrypted Attributes Sequence addressed to ``certificate``; :class:`DeidError` naming the
    recipients when none is, or when the key is not the certificate's. ``ds`` is unchanged."""
    items = list(ds.get("EncryptedAttributesSequence", []))
    if not items:
        raise DeidError("the object has no Encrypted Attributes Sequence (0400,0500): nothing "
                        "to re-identify")
    problems = []
    for item in items:
        try:
            modified = _decrypt(item, key, certificate)
        except (CmsError, DeidError) as exc:
            problems.append(str(exc))
            continue
        out = copy.deepcopy(ds)
        for tag in MARKS:
            if tag in out and tag not in modified:
                del out[tag]
        del out[ENCRYPTED_ATTRIBUTES]
        for element in modified:
            out[element.tag] = element
        if getattr(out, "file_meta", None) is not None and "SOPInstanceUID" in out:
            out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        return out
    raise DeidError("cannot re-identify: " + "; ".join(problems))


def deidentify_file(src: Path, dst: Path, session: Deidentifier) -> Dataset:
    """De-identify the Part-10 file ``src`` into ``dst`` (written atomically)."""
    out = deidentify(read(src), session)
    write_atomic(out, dst)
    return out


def reidentify_file(src: Path, dst: Path, key: rsa.RSAPrivateKey,
                    certificate: x509.Certificate) -> Dataset:
    """Re-identify ``src`` into ``dst``; nothing is written when it fails."""
    out = reidentify(read(src), key, certificate)
    write_atomic(out, dst)
    return out


def read(path: Path) -> Dataset:
    """A Part-10 file, or :class:`DeidError` naming it."""
    try:
        return dcmread(path)
    except (OSError, InvalidDicomError) as exc:
        raise DeidError(f"{path}: not a readable DICOM file: {exc}") from None


def write_atomic(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a Part-10 file by a rename, so a reader never sees half a file and a
    failure leaves the old file (or none) in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _apply(ds: Dataset, session: Deidentifier, seen: list[str]) -> set[BaseTag]:
    """Apply the table to every element of ``ds`` (recursing into sequences); the tags changed.
    ``seen`` collects the identifying text values removed, for Clean Descriptors."""
    changed: set[BaseTag] = set()
    for element in list(ds):
        tag = element.tag
        if tag == ENCRYPTED_ATTRIBUTES:
            continue
        row = row_for(int(tag))
        action = row.action(session.options) if row is not None else "K"
        action = _CHOICE.get(action, action)
        if (row is None and element.VR == "SQ") or (action in ("C", "D") and element.VR == "SQ"):
            if any([_apply(item, session, seen) for item in element.value]):
                changed.add(tag)
            continue
        if action != "K" and _act(ds, element, action, session, seen):
            changed.add(tag)
    return changed


def _act(ds: Dataset, element: DataElement, action: str, session: Deidentifier,
         seen: list[str]) -> bool:
    """Do ``action`` to ``element`` of ``ds``; True when it changed anything."""
    if action == "X":
        _remember(element, seen)
        del ds[element.tag]
        return True
    if element.is_empty:
        return False
    if action == "C" and element.VR in ("DA", "DT"):
        try:
            element.value = _shift(element, session.date_offset_days)
        except ValueError:  # not a date: nothing to keep the interval of
            element.value = None
        return True
    if action == "C" and element.VR in ("TM", *_TEXT_VRS):
        return False  # times keep their day offset; texts are cleaned at the end
    if action == "U" and element.VR == "UI":
        values = element.value if element.VM > 1 else [element.value]
        new = [session.new_uid(str(uid)) for uid in values]
        element.value = new if element.VM > 1 else new[0]
        return True
    _remember(element, seen)
    if action in ("Z", "C") or element.VR == "SQ":
        element.value = DicomSequence() if element.VR == "SQ" else None
    else:
        element.value = _DUMMY.get(element.VR, "ANONYMOUS")
    return True


def _remember(element: DataElement, seen: list[str]) -> None:
    if element.VR in _TEXT_VRS and not element.is_empty:
        values = element.value if element.VM > 1 else [element.value]
        for value in values:
            seen.extend(part for part in str(value).replace("^", " ").split() if len(part) > 2)


def _clean_text(element: DataElement, session: Deidentifier, seen: Sequence[str]) -> bool:
    """Clean Descriptors (E.3.5) and the other C actions on text: the text is kept, every
    identifying value the profile removed elsewhere masked where it occurs in it (by as many X,
    so no value grows too long). True when ``element`` (or an item inside it) changed."""
    if element.VR == "SQ":
        return any([_clean_text(inner, session, seen)
                    for item in element.value for inner in item])
    row = row_for(int(element.tag))
    if (row is None or row.action(session.options) != "C" or element.VR not in _TEXT_VRS
            or element.is_empty or not seen):
        return False
    text = str(element.value)
    cleaned = text
    for secret in seen:
        cleaned = _mask(cleaned, secret)
    if cleaned == text:
        return False
    element.value = cleaned
    return True


def _mask(text: str, secret: str) -> str:
    lowered, wanted = text.lower(), secret.lower()
    start = lowered.find(wanted)
    while start >= 0:
        text = text[:start] + "X" * len(secret) + text[start + len(secret):]
        lowered = text.lower()
        start = lowered.find(wanted, start + len(secret))
    return text


def _shift(element: DataElement, days: int) -> str | list[str]:
    """A DA or DT value (or values) moved by whole ``days``; the rest of a DT is kept."""
    values = list(element.value) if element.VM > 1 else [element.value]
    moved = []
    for one in values:
        text = str(one)
        day = date(int(text[0:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=days)
        moved.append(day.strftime("%Y%m%d") + text[8:])
    return moved if len(moved) > 1 else moved[0]


def _mark(out: Dataset, session: Deidentifier) -> None:
    """The marks of PS3.15 E.1.1 (and 0028,0303 for the dates options, PS3.3 C.7.1.3)."""
    out.PatientIdentityRemoved = "YES"
    chosen = [name for name in OPTIONS if name in session.options]
    out.DeidentificationMethod = (f"teleradlab {EDITION}: basic profile"
                                  + "".join(f", {name}" for name in chosen))[:64]
    items = []
    for code in (BASIC_PROFILE, *(OPTIONS[name] for name in chosen)):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = code.value, code.scheme_designator
        item.CodeMeaning = code.meaning
        items.append(item)
    out.DeidentificationMethodCodeSequence = DicomSequence(items)
    if "retain-long-modified-dates" in session.options:
        out.LongitudinalTemporalInformationModified = "MODIFIED"
    elif "retain-long-full-dates" in session.options:
        out.LongitudinalTemporalInformationModified = "UNMODIFIED"


def _encode(modified: Dataset) -> bytes:
    """The one-item Modified Attributes Sequence, encoded in Explicit VR Little Endian."""
    outer = Dataset()
    outer.ModifiedAttributesSequence = DicomSequence([modified])
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, outer)
    return buffer.getvalue()


def _decrypt(item: Dataset, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> Dataset:
    syntax = str(item.get("EncryptedContentTransferSyntaxUID", ""))
    if syntax != ExplicitVRLittleEndian:
        raise DeidError(f"Encrypted Content Transfer Syntax {syntax!r} is not Explicit VR "
                        "Little Endian")
    content = open_envelope(bytes(item.EncryptedContent), key, certificate)
    try:
        outer = read_dataset(BytesIO(content), is_implicit_VR=False, is_little_endian=True)
        [modified] = outer.ModifiedAttributesSequence
    except (AttributeError, ValueError, EOFError) as exc:
        raise DeidError(f"the decrypted content is not one Modified Attributes Sequence item: "
                        f"{exc}") from None
    return Dataset(modified)


def recipients(ds: Dataset) -> list[str]:
    """Who can re-identify ``ds``: the recipients of each Encrypted Attributes item."""
    found: list[str] = []
    for item in ds.get("EncryptedAttributesSequence", []):
        found.extend(recipients_of(bytes(item.EncryptedContent)))
    return found


def load_recipients(paths: Iterable[Path]) -> tuple[x509.Certificate, ...]:
    """PEM certificates of receiving sites, or :class:`DeidError` naming the bad file."""
    certificates = []
    for path in paths:
        try:
            certificates.append(x509.load_pem_x509_certificate(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise DeidError(f"{path}: not a PEM certificate: {exc}") from None
    return tuple(certificates)
