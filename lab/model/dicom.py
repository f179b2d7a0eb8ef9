"""The lab's DICOM constants, each defined once here (pure data, so the node programs in
``lab.dicom`` may import them as well as the orchestration):

- :data:`TLS_PORT`: 2762, the port IANA registered for DICOM over TLS ("dicom-tls"), which
  PS3.15 B.1 recommends for the Secure Transport Connection profiles.
- :data:`PACS_PORT` (11112, IANA's "dicom") and :data:`RECEIVER_PORT` (11113): a lab's
  archive and its C-MOVE receivers in clear; with DICOM TLS every listener uses the TLS port.
- :data:`IMPLEMENTATION_CLASS_UID` and :data:`IMPLEMENTATION_VERSION_NAME`: how the lab's own
  DICOM code identifies itself, in the A-ASSOCIATE user information (PS3.7 D.3.3.2 and
  D.3.3.2.3) of its requestor and acceptor alike, and in the File Meta Information (PS3.10
  7.1) of the files it writes. One implementation, so one class UID.
- :func:`name_uid`: the lab's UIDs without a registered root: "2.25." followed by the integer
  of a name-based (SHA-1, version 5) UUID (PS3.5 B.2, ITU-T X.667), the same on every run for
  the same name.
"""

from __future__ import annotations

import uuid

__all__ = ["IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME", "PACS_PORT",
           "RECEIVER_PORT", "TLS_PORT", "UID_NAMESPACE", "name_uid"]

TLS_PORT = 2762
PACS_PORT = 11112
RECEIVER_PORT = 11113

#: The namespace of every name-based UUID the lab turns into a UID.
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:teleradlab:dicom")


def name_uid(*parts: object) -> str:
    """A "2.25." UID (PS3.5 B.2) from a name-based UUID of ``parts``: one per input, the same
    on every run (at most 2 + 1 + 39 = 42 characters, within the 64 of the UI VR)."""
    name = "\x1f".join(str(part) for part in parts)
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


IMPLEMENTATION_CLASS_UID = name_uid("implementation")
#: SH, at most 16 characters (PS3.7 D.3.3.2.3).
IMPLEMENTATION_VERSION_NAME = "TELERADLAB_1"
