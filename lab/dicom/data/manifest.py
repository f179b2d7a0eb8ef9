"""The manifest of a transfer (:mod:`lab.dicom.data.integrity`): what a sender vouches for, every
object with the digest of its encoded dataset, as a document with one exact text.

That text is canonical JSON (the subset of RFC 8785 JCS it needs: sorted keys, no whitespace,
strings and integers only), and reading is strict (unknown, missing or mistyped fields are
errors), so a parsed manifest serialises back to the bytes that were signed
(:mod:`lab.dicom.data.signing`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lab.errors import LabError

MANIFEST_FORMAT = "teleradlab-manifest/1"
DIGEST_ALGORITHM = "sha-256"
DIGEST_SCOPE = "dataset"  # bytes after the PS3.10 File Meta Information

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class IntegrityError(LabError):
    """A file, manifest or signing credential could not be read or used."""


#: The fields a JSON object must have, each with its type(s): see :func:`check_shape`.
Fields = Mapping[str, type | tuple[type, ...]]
_MANIFEST_FIELDS: Fields = {
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
_ENTRY_FIELDS: Fields = {"sop_instance_uid": str, "sop_class_uid": str, "size": int, "sha256": str}


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
        check_shape(doc, _MANIFEST_FIELDS, "manifest")
        for key, value in _MANIFEST_CONSTANTS.items():
            if doc[key] != value:
                raise IntegrityError(f"manifest {key} {doc[key]!r} is not {value!r}")
        entries = []
        for i, item in enumerate(doc["objects"]):
            check_shape(item, _ENTRY_FIELDS, f"manifest objects[{i}]")
            if not _SHA256_HEX.fullmatch(item["sha256"]) or item["size"] < 0:
                raise IntegrityError(f"manifest objects[{i}]: bad sha256 or size")
            entries.append(ObjectEntry(**item))
        check_unique(entries)
        return cls(**(doc | {"objects": tuple(entries)}))


def check_shape(doc: Any, fields: Fields, where: str) -> None:
    """Raise :class:`IntegrityError` unless ``doc`` is a JSON object with exactly ``fields``,
    each of its type (a bool never passes for an int); ``where`` names it in the message."""
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


def check_unique(entries: Sequence[ObjectEntry]) -> None:
    """A manifest lists each SOP instance once, and at least one (an empty manifest is far more
    likely a wrong file list than an intended empty transfer)."""
    if not entries:
        raise IntegrityError("a manifest needs at least one object")
    counts = Counter(e.sop_instance_uid for e in entries)
    if twice := sorted(uid for uid, n in counts.items() if n > 1):
        raise IntegrityError(f"SOP Instance UID listed more than once: {', '.join(twice)}")


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
