"""Secure media: a study exported as a DICOM File-set of secure DICOM files, imported at the
other site (PS3.10 7.4 and 8, PS3.15 Annex D).

A Secure DICOM File (PS3.10 7.4) is a CMS ContentInfo (RFC 5652) instead of the Part-10 file:
here EnvelopedData — AES-CBC content encryption, RSA key transport to the named recipient's
certificate — around SignedData — the exporting site's RSA signature (SHA-256 by default) over
the whole Part-10 file, the signer's certificate included — as the Basic DICOM Media Security
Profile (PS3.15 D.1) asks: the file travels confidential, with integrity and its origin. The
EnvelopedData names its content type ``id-signedData`` (RFC 5652 6.1). ``openssl cms -decrypt``
then ``openssl cms -verify`` open such a file without the lab.

The DICOMDIR (PS3.10 8.6, PS3.3 F) is made by pydicom's :class:`~pydicom.fileset.FileSet` from
the plain objects and then points at their secure files under the same File IDs. It stays in
the clear — it is how a reader finds the files — so it shows the directory records' keys
(Patient ID and Name, Study Date and ID, the UIDs); de-identify first
(:mod:`lab.dicom.data.deid`) where even those must not travel. A de-identified object leaves
empty some keys its directory records need (Type 1 in PS3.3 F.5: Patient ID, Study Date, Study
Time, Study ID; Table E.1-1 empties them): the records then hold the placeholders of
:data:`RECORD_PLACEHOLDERS`, never the object, which goes on the medium byte for byte as given.
The plain objects exist only in a private temporary directory while the file-set is made.

:func:`import_fileset` reads the DICOMDIR's records and opens, verifies and decrypts every file
they reference before writing anything: a file that is changed, signed outside the trusted CA,
encrypted for someone else, not secure, missing, or not the object its record says is named with
its reason, and then nothing of the file-set is imported (:class:`MediaError` lists them all).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet

from lab.dicom.data.cms import CmsError, envelope, open_envelope, sign_data, verify_signed
from lab.errors import LabError

DICOMDIR = "DICOMDIR"
#: What a directory record holds for a Type 1 key (PS3.3 F.5) the object leaves empty.
RECORD_PLACEHOLDERS = {"PatientID": "DEIDENTIFIED", "StudyDate": "19000101",
                       "StudyTime": "000000", "StudyID": "0"}


class MediaError(LabError):
    """A file-set cannot be exported or imported; ``refused`` names each file and why."""

    def __init__(self, message: str, refused: Sequence[str] = ()) -> None:
        self.refused = tuple(refused)
        super().__init__(message + "".join(f"\n  {line}" for line in self.refused))


@dataclass(frozen=True)
class Exported:
    """A file-set written: its DICOMDIR and its secure files (relative File IDs)."""

    root: Path
    files: tuple[Path, ...]
    total_bytes: int


@dataclass(frozen=True)
class Imported:
    """The objects imported: one Part-10 file each, and who signed them."""

    files: tuple[Path, ...]
    signers: tuple[str, ...]


def export_study(sources: Iterable[Path], root: Path, *, key: rsa.RSAPrivateKey,
                 certificate: x509.Certificate, recipients: Sequence[x509.Certificate],
                 cipher: str = "aes256", digest: str = "sha256",
                 label: str = "TELERADLAB") -> Exported:
    """Write the Part-10 files ``sources`` as a new file-set in ``root`` (which must not exist
    or be empty): DICOMDIR plus one secure file per object, signed with ``key`` and
    ``certificate`` and encrypted for ``recipients``. The file-set appears whole (a rename)."""
    paths = list(sources)
    if not paths:
        raise MediaError("no DICOM file to export")
    if root.exists() and any(root.iterdir()):
        raise MediaError(f"{root} is not empty: a file-set is written into a new directory")
    fileset = FileSet()
    fileset.ID = label[:16]
    by_uid: dict[str, Path] = {}
    for path in paths:
        try:
            keys = dcmread(path)  # what the records are made from (placeholders filled in)
            for keyword, placeholder in RECORD_PLACEHOLDERS.items():
                if not keys.get(keyword):
                    setattr(keys, keyword, placeholder)
            by_uid[str(keys.SOPInstanceUID)] = path
            fileset.add(keys)
        except (OSError, InvalidDicomError, ValueError, AttributeError) as exc:
            raise MediaError(f"{path}: cannot be put on the medium: {exc}") from None
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fileset-", dir=root.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="teleradlab-plain-") as plain_dir:
            plain = Path(plain_dir) / "fs"
            fileset.write(plain)
            files = []
            for instance in FileSet(plain / DICOMDIR):
                relative = Path(instance.path).relative_to(plain)
                source = by_uid[str(instance.SOPInstanceUID)]  # the object as given
                signed = sign_data(source.read_bytes(), key, certificate, digest)
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(envelope(signed, recipients, cipher, inner="signed_data"))
                files.append(relative)
            shutil.copyfile(plain / DICOMDIR, staging / DICOMDIR)
        if root.exists():
            root.rmdir()
        os.replace(staging, root)
    except CmsError as exc:
        raise MediaError(f"cannot make the secure files: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    total = sum((root / f).stat().st_size for f in files) + (root / DICOMDIR).stat().st_size
    return Exported(root, tuple(sorted(files)), total)


def import_fileset(root: Path, dest: Path, *, key: rsa.RSAPrivateKey,
                   certificate: x509.Certificate,
                   trusted: Sequence[x509.Certificate]) -> Imported:
    """Verify and decrypt every secure file the DICOMDIR in ``root`` references and, only when
    all pass, write each object to ``dest/<SOP Instance UID>.dcm`` (atomically, file by file)."""
    opened: list[tuple[str, bytes, str]] = []
    refused = []
    for file_id, uid in _records(root):
        try:
            opened.append(_open_one(root.joinpath(*file_id.split("/")), uid, key, certificate,
                                    trusted))
        except (CmsError, MediaError) as exc:
            refused.append(f"{file_id}: {exc}")
    if refused:
        raise MediaError(f"file-set {root} refused, nothing imported:", refused)
    if not opened:
        raise MediaError(f"file-set {root} references no object")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, content, _signer in opened:
        target = dest / f"{uid}.dcm"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, target)
        written.append(target)
    return Imported(tuple(written), tuple(sorted({signer for *_, signer in opened})))


def _records(root: Path) -> list[tuple[str, str]]:
    """(File ID, SOP Instance UID) of every directory record that references a file (PS3.3
    F.3.2.2), read from the DICOMDIR itself: pydicom's FileSet skips records whose file is
    missing, and a missing file must be named."""
    try:
        directory = dcmread(root / DICOMDIR)
        records = list(directory.DirectoryRecordSequence)
    except (OSError, InvalidDicomError, AttributeError) as exc:
        raise MediaError(f"{root / DICOMDIR}: not a readable DICOMDIR: {exc}") from None
    found = []
    for record in records:
        if "ReferencedFileID" not in record:
            continue
        parts = record.ReferencedFileID
        file_id = "/".join([parts] if isinstance(parts, str) else list(parts))
        if ".." in file_id.split("/"):
            raise MediaError(f"{root / DICOMDIR}: File ID {file_id} leaves the file-set")
        found.append((file_id, str(record.get("ReferencedSOPInstanceUIDInFile", ""))))
    return found


def _open_one(path: Path, uid: str, key: rsa.RSAPrivateKey, certificate: x509.Certificate,
              trusted: Sequence[x509.Certificate]) -> tuple[str, bytes, str]:
    """One secure file: decrypted, its signature and signer checked, and the object inside
    the one its directory record names."""
    try:
        value = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"cannot be read: {exc.strerror}") from None
    signed = open_envelope(value, key, certificate)
    content, signer = verify_signed(signed, trusted)
    try:
        inner = dcmread(BytesIO(content), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise MediaError(f"the signed content is not a DICOM file: {exc}") from None
    if str(inner.get("SOPInstanceUID", "")) != uid:
        raise MediaError(f"holds object {inner.get('SOPInstanceUID')}, but its directory "
                         f"record names {uid}")
    return uid, content, signer.subject.rfc4514_string()
