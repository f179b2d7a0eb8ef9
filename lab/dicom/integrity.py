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
RFC 4055), by a certificate from the lab PKI (``lab.pki``, usage ``signing``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from lab import pki
from lab.errors import LabError

MANIFEST_FORMAT = "teleradlab-manifest/1"
SIGNED_FORMAT = "teleradlab-signed-manifest/1"
DIGEST_ALGORITHM = "sha-256"
DIGEST_SCOPE = "dataset"  # bytes after the PS3.10 File Meta Information
ECDSA_SHA256 = "ecdsa-sha256"
RSA_PSS_SHA256 = "rsassa-pss-sha256"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_PREAMBLE = 128
#: Explicit VR Little Endian VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


class IntegrityError(LabError):
    """A file, manifest or signing credential could not be read or used."""


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


# --- the manifest -----------------------------------------------------------------------------

_Fields = Mapping[str, type | tuple[type, ...]]
_MANIFEST_FIELDS: _Fields = {
    "format": str,
    "sender": str,
    "created": str,
    "study_uid": (str, type(None)),
    "digest_algorithm": str,
    "digest_scope": str,
    "objects": list,
}
_MANIFEST_CONSTANTS = {
    "format": MANIFEST_FORMAT,
    "digest_algorithm": DIGEST_ALGORITHM,
    "digest_scope": DIGEST_SCOPE,
}
_ENTRY_FIELDS: _Fields = {"sop_instance_uid": str, "sop_class_uid": str, "size": int, "sha256": str}
_SIGNED_FIELDS: _Fields = {
    "format": str,
    "manifest": dict,
    "signature": str,
    "signature_algorithm": str,
    "signer_certificate": str,
}


@dataclass(frozen=True)
class ObjectEntry:
    """One object of a manifest. ``size`` counts the digested dataset bytes, not the file."""

    sop_instance_uid: str
    sop_class_uid: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a sender vouches for: every object (sorted by SOP Instance UID) with its digest."""

    sender: str
    created: str  # UTC, RFC 3339 (YYYY-MM-DDThh:mm:ssZ)
    objects: tuple[ObjectEntry, ...]
    study_uid: str | None = None
    digest_algorithm: str = DIGEST_ALGORITHM
    digest_scope: str = DIGEST_SCOPE
    format: str = MANIFEST_FORMAT

    def to_json(self) -> str:
        """The canonical serialisation: the exact text that is signed."""
        return _canonical(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise IntegrityError(f"manifest is not JSON: {exc}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Manifest:
        """Strict inverse of :meth:`to_dict`: unknown, missing or mistyped fields are errors, so a
        parsed manifest serialises back to the same canonical bytes."""
        _check_shape(doc, _MANIFEST_FIELDS, "manifest")
        for key, value in _MANIFEST_CONSTANTS.items():
            if doc[key] != value:
                raise IntegrityError(f"manifest {key} {doc[key]!r} is not {value!r}")
        entries = []
        for i, item in enumerate(doc["objects"]):
            _check_shape(item, _ENTRY_FIELDS, f"manifest objects[{i}]")
            if not _SHA256_HEX.fullmatch(item["sha256"]) or item["size"] < 0:
                raise IntegrityError(f"manifest objects[{i}]: bad sha256 or size")
            entries.append(ObjectEntry(**item))
        _check_unique(entries)
        return cls(**(doc | {"objects": tuple(entries)}))


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
    _check_unique(entries)
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


def _check_shape(doc: Any, fields: _Fields, where: str) -> None:
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where}: expected an object, got {type(doc).__name__}")
    if missing := sorted(set(fields) - set(doc)):
        raise IntegrityError(f"{where}: missing {', '.join(missing)}")
    if extra := sorted(set(doc) - set(fields)):
        raise IntegrityError(f"{where}: unknown field {', '.join(extra)}")
    for key, kind in fields.items():
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise IntegrityError(f"{where}: {key} has the wrong type ({value!r})")


def _check_unique(entries: Sequence[ObjectEntry]) -> None:
    """A manifest lists each SOP instance once, and at least one (an empty manifest is far more
    likely a wrong file list than an intended empty transfer)."""
    if not entries:
        raise IntegrityError("a manifest needs at least one object")
    counts = Counter(e.sop_instance_uid for e in entries)
    if twice := sorted(uid for uid, n in counts.items() if n > 1):
        raise IntegrityError(f"SOP Instance UID listed more than once: {', '.join(twice)}")


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- signing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedManifest:
    """A manifest with a detached signature over ``manifest.to_json()`` (UTF-8) and the signer's
    certificate, so a receiver needs only the lab CA certificate to check it."""

    manifest: Manifest
    signature: bytes
    signature_algorithm: str
    signer_cert_pem: str


def sign_manifest(manifest: Manifest, key_path: Path, cert_path: Path) -> SignedManifest:
    """Sign with the key at ``key_path``; the algorithm follows the key (ECDSA or RSA-PSS)."""
    try:
        key, cert = pki.load_key_pair(key_path, cert_path)
    except pki.PkiError as exc:
        raise IntegrityError(f"cannot sign: {exc}") from None
    data = manifest.to_json().encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature, algorithm = key.sign(data, ec.ECDSA(hashes.SHA256())), ECDSA_SHA256
    else:
        signature, algorithm = key.sign(data, _PSS, hashes.SHA256()), RSA_PSS_SHA256
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return SignedManifest(manifest, signature, algorithm, pem)


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def write_signed(signed: SignedManifest, path: Path) -> None:
    """Write one JSON file: manifest, base64 signature, algorithm, signer certificate (PEM)."""
    doc = {
        "format": SIGNED_FORMAT,
        "manifest": signed.manifest.to_dict(),
        "signature": base64.b64encode(signed.signature).decode(),
        "signature_algorithm": signed.signature_algorithm,
        "signer_certificate": signed.signer_cert_pem,
    }
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def read_signed(path: Path) -> SignedManifest:
    """Read what :func:`write_signed` wrote; a malformed file is an :class:`IntegrityError`.
    Nothing is trusted yet: that is :func:`verify_manifest`'s job."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"cannot read signed manifest {path}: {exc}") from None
    _check_shape(doc, _SIGNED_FIELDS, str(path))
    if doc["format"] != SIGNED_FORMAT:
        raise IntegrityError(f"{path}: format {doc['format']!r} is not {SIGNED_FORMAT!r}")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
    except binascii.Error:
        raise IntegrityError(f"{path}: signature is not base64") from None
    manifest = Manifest.from_dict(doc["manifest"])
    return SignedManifest(
        manifest, signature, doc["signature_algorithm"], doc["signer_certificate"]
    )


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_manifest`: each check, and every problem found."""

    signature_valid: bool
    chain_valid: bool
    signer: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.signature_valid and self.chain_valid and not self.problems

    @property
    def reason(self) -> str:
        if self.ok:
            return f"signature valid; signer {self.signer!r} is trusted by the lab CA"
        return "; ".join(self.problems)


def verify_manifest(signed: SignedManifest, ca_cert_path: Path) -> Verification:
    """Check the signature over the canonical manifest and that the signer's certificate chains
    to the lab CA, is valid now and is issued for signing (``lab.pki.verify_chain`` and
    ``require_usage``). Bad input gives ``ok=False`` with the reasons, never an exception; only an
    unreadable CA certificate (the receiver's own trust anchor) raises :class:`lab.pki.PkiError`.
    """
    ca_cert = pki.load_certificate(ca_cert_path)
    try:
        cert = x509.load_pem_x509_certificate(signed.signer_cert_pem.encode())
    except ValueError as exc:
        return Verification(False, False, None, (f"signer certificate unreadable: {exc}",))
    problem = _signature_problem(signed, cert)
    problems = [problem] if problem else []
    chain_valid = True
    try:
        pki.verify_chain(cert, ca_cert)
        pki.require_usage(cert, "signing")
    except pki.PkiError as exc:
        chain_valid = False
        problems.append(f"signer not trusted: {exc}")
    return Verification(problem is None, chain_valid, pki.subject_cn(cert), tuple(problems))


def _signature_problem(signed: SignedManifest, cert: x509.Certificate) -> str | None:
    """Verify with the algorithm the signer's key type implies (the file's claim must agree, so
    it cannot pick another scheme); None when the signature is good."""
    data = signed.manifest.to_json().encode()
    key, claimed = cert.public_key(), signed.signature_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and claimed == ECDSA_SHA256:
            key.verify(signed.signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and claimed == RSA_PSS_SHA256:
            key.verify(signed.signature, data, _PSS, hashes.SHA256())
        else:
            return f"signature algorithm {claimed!r} does not fit the signer's {type(key).__name__}"
    except InvalidSignature:
        return "signature does not match the manifest (altered after signing?)"
    return None


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
