"""Integrity and authenticity of transferred DICOM objects: digests, a signed manifest, checks.

This is the first security measure of Zhang et al. (2007): the sender computes a digest of every
object and signs the set; the receiver recomputes the digests and verifies the signature, and
objects returned by C-MOVE are checked the same way. In DICOM terms it is the idea of the Digital
Signatures of PS3.15 Annex C (MAC over the encoded data, signed with an X.509 certificate) applied
to a whole transfer instead of inside each object.

What is digested is the encoded *dataset* of a Part-10 file: every byte after the File Meta
Information (PS3.10 7.1). The meta describes one file, and a receiver writes its own (its own
Implementation Class UID, Source AE Title...), while the dataset bytes are what travels in the
C-STORE P-DATA (PS3.7 9.1.1, PS3.8). A receiver that stores the received dataset verbatim therefore
reproduces the sender's digest exactly; one that decodes and re-encodes it, or an association
that negotiated another transfer syntax, does not, and that is reported as a mismatch, since the
bytes did change.

The manifest is canonical JSON (the subset of RFC 8785 JCS it needs: sorted keys, no whitespace,
strings and integers only), signed detached with ECDSA P-256/SHA-256 (FIPS 186-5, DER signature
as in RFC 3279 2.2.3) or RSASSA-PSS/SHA-256 with MGF1-SHA-256 and a 32-byte salt (RFC 8017 8.1,
RFC 4055), by a certificate from the lab PKI (``lab.security.pki.authority``, usage ``signing``).

This module digests files, builds manifests from them and checks received objects; the
manifest document is :mod:`lab.dicom.data.manifest`, and signing it :mod:`lab.dicom.data.signing`.
All of it is imported from here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from lab.dicom.data.manifest import (
    DIGEST_ALGORITHM,
    DIGEST_SCOPE,
    MANIFEST_FORMAT,
    IntegrityError,
    Manifest,
    ObjectEntry,
    check_unique,
)
from lab.dicom.data.signing import (
    ECDSA_SHA256,
    RSA_PSS_SHA256,
    SIGNED_FORMAT,
    SignedManifest,
    Verification,
    read_signed,
    sign_manifest,
    verify_manifest,
    write_signed,
)

#: The public interface, with what it re-exports from the modules it was split into.
__all__ = ["DIGEST_ALGORITHM", "DIGEST_SCOPE", "ECDSA_SHA256", "MANIFEST_FORMAT", "RSA_PSS_SHA256",
           "SIGNED_FORMAT", "CheckSummary", "IntegrityError", "Manifest", "ObjectCheck",
           "ObjectEntry", "SignedManifest", "Status", "Verification", "build_manifest",
           "check_objects", "dataset_digest", "dataset_offset", "digest_bytes", "read_signed",
           "sign_manifest", "summarize", "verify_manifest", "write_signed"]

_CHUNK = 1 << 20
_PREAMBLE = 128
#: Explicit VR Little Endian VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


# --- digests ----------------------------------------------------------------------------------


def digest_bytes(data: bytes) -> str:
    """SHA-256 (hex) of an encoded dataset held in memory, e.g. as a Storage SCP received it."""
    return hashlib.sha256(data).hexdigest()


def dataset_digest(path: Path) -> str:
    """SHA-256 (hex) of the encoded dataset of the Part-10 file ``path`` (everything after the
    File Meta Information), streamed without decoding the dataset."""
    return _digest_file(path)[0]


def dataset_offset(fp: BinaryIO, name: str = "file") -> int:
    """Where the dataset of a Part-10 file starts: after the 128-byte preamble, ``DICM`` and the
    group 0002 elements, which are always Explicit VR Little Endian (PS3.10 7.1).

    The elements are walked (the group is small) and the result is checked against the File Meta
    Information Group Length (0002,0000), so a damaged meta is an error, not a silent wrong offset.
    """
    fp.seek(0)
    head = fp.read(_PREAMBLE + 4)
    if len(head) < _PREAMBLE + 4 or head[_PREAMBLE:] != b"DICM":
        raise IntegrityError(f"{name}: not a DICOM Part-10 file (no DICM prefix, PS3.10 7.1)")
    offset = _PREAMBLE + 4
    declared: int | None = None
    while True:
        header = fp.read(8)
        if 0 < len(header) < 8:
            raise IntegrityError(f"{name}: truncated at byte {offset}")
        if not header or struct.unpack_from("<H", header)[0] != 0x0002:
            break
        vr, element = header[4:6], struct.unpack_from("<H", header, 2)[0]
        if not (vr.isalpha() and vr.isupper()):
            raise IntegrityError(f"{name}: file meta at byte {offset} is not Explicit VR LE")
        if vr in _LONG_VRS:
            length, size = struct.unpack("<I", _read(fp, 4, name))[0], 12
        else:
            length, size = struct.unpack_from("<H", header, 6)[0], 8
        if length == 0xFFFFFFFF:
            raise IntegrityError(f"{name}: undefined length in the file meta at byte {offset}")
        value = _read(fp, length, name)
        if element == 0x0000 and length == 4:
            declared = offset + size + 4 + struct.unpack("<I", value)[0]
        offset += size + length
    if declared is None:
        raise IntegrityError(f"{name}: file meta has no group length (0002,0000), PS3.10 7.1")
    if declared != offset:
        raise IntegrityError(
            f"{name}: file meta group length says the dataset starts at byte {declared}, "
            f"the elements end at byte {offset}"
        )
    return offset


def _read(fp: BinaryIO, n: int, name: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise IntegrityError(f"{name}: truncated in the file meta information")
    return data


def _digest_file(path: Path) -> tuple[str, int]:
    """(hex SHA-256, byte count) of the dataset of ``path``, hashed in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with path.open("rb") as fp:
            fp.seek(dataset_offset(fp, str(path)))
            while n := fp.readinto(buf):
                h.update(view[:n])
                size += n
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {exc}") from None
    return h.hexdigest(), size


# --- building a manifest from files -----------------------------------------------------------


def build_manifest(files: Iterable[Path], *, sender: str, study_uid: str | None = None) -> Manifest:
    """Digest every file and list it. With ``study_uid``, every object must belong to that study
    (Study Instance UID, PS3.3 C.7.2.1); a file of another study is an error, not a silent extra."""
    entries = []
    for path in files:
        uids = _read_uids(path)
        if study_uid is not None and uids.get("StudyInstanceUID") != study_uid:
            found = uids.get("StudyInstanceUID")
            raise IntegrityError(f"{path}: belongs to study {found!r}, not {study_uid!r}")
        sha, size = _digest_file(path)
        entries.append(ObjectEntry(uids["SOPInstanceUID"], uids["SOPClassUID"], size, sha))
    check_unique(entries)
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ordered = tuple(sorted(entries, key=lambda e: e.sop_instance_uid))
    return Manifest(sender=sender, created=created, objects=ordered, study_uid=study_uid)


def _read_uids(path: Path) -> dict[str, str]:
    """SOP Instance/Class UID and Study Instance UID from the dataset (not the file meta, which a
    receiver rewrites), reading only the header elements."""
    tags = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"]
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except (OSError, InvalidDicomError, ValueError) as exc:
        raise IntegrityError(f"cannot read {path} as DICOM: {exc}") from None
    uids = {t: str(ds[t].value) for t in tags if t in ds and ds[t].value}
    for required, tag in (("SOPInstanceUID", "(0008,0018)"), ("SOPClassUID", "(0008,0016)")):
        if required not in uids:
            raise IntegrityError(f"{path}: no {required} {tag} in the dataset")
    return uids


# --- checking received objects ------------------------------------------------------------------


class Status(StrEnum):
    OK = "ok"
    DIGEST_MISMATCH = "digest-mismatch"
    MISSING = "missing"  # in the manifest, not received
    UNEXPECTED = "unexpected"  # received, not in the manifest
    DUPLICATE = "duplicate"  # a SOP instance received more than once (each extra copy)
    UNREADABLE = "unreadable"  # received file that is not a readable Part-10 object


@dataclass(frozen=True)
class ObjectCheck:
    """The verdict on one object; ``path`` is the received file (None when missing)."""

    sop_instance_uid: str | None
    status: Status
    path: Path | None
    expected_sha256: str | None
    actual_sha256: str | None
    detail: str = ""


@dataclass(frozen=True)
class CheckSummary:
    counts: Mapping[Status, int]
    total: int

    @property
    def all_ok(self) -> bool:
        return self.counts.get(Status.OK, 0) == self.total

    def __str__(self) -> str:
        parts = [f"{n} {status}" for status, n in sorted(self.counts.items()) if n]
        return ", ".join(parts) or "no objects"


def check_objects(manifest: Manifest, received: Iterable[Path]) -> list[ObjectCheck]:
    """Compare received files with the manifest, one verdict per object: manifest objects in
    manifest order (ok / digest-mismatch / missing), then received files the manifest does not
    account for (unexpected / duplicate / unreadable). Nothing is merged or dropped."""
    expected = {e.sop_instance_uid: e for e in manifest.objects}
    found: dict[str, ObjectCheck] = {}
    extra: list[ObjectCheck] = []
    for path in sorted(received):
        try:
            uid = _read_uids(path)["SOPInstanceUID"]
            sha, size = _digest_file(path)
        except IntegrityError as exc:
            extra.append(ObjectCheck(None, Status.UNREADABLE, path, None, None, str(exc)))
            continue
        entry = expected.get(uid)
        if entry is None:
            extra.append(ObjectCheck(uid, Status.UNEXPECTED, path, None, sha, "not in manifest"))
        elif uid in found:
            detail = f"also received as {found[uid].path}"
            extra.append(ObjectCheck(uid, Status.DUPLICATE, path, entry.sha256, sha, detail))
        elif sha == entry.sha256:
            found[uid] = ObjectCheck(uid, Status.OK, path, entry.sha256, sha)
        else:
            detail = f"dataset size {size} bytes, manifest says {entry.size}"
            found[uid] = ObjectCheck(uid, Status.DIGEST_MISMATCH, path, entry.sha256, sha, detail)
    checks = [
        found.get(uid) or ObjectCheck(uid, Status.MISSING, None, e.sha256, None, "not received")
        for uid, e in expected.items()
    ]
    return checks + extra


def summarize(checks: Iterable[ObjectCheck]) -> CheckSummary:
    """Counts per status; ``all_ok`` only when every check is ``ok``."""
    counts = Counter(c.status for c in checks)
    return CheckSummary(dict(counts), sum(counts.values()))
