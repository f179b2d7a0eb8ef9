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

from functools import cache

TYPE_CHECKING = False  # not typing's: the node programs' start (lab.dicom.ul.records)
if TYPE_CHECKING:
    import uuid

__all__ = ["IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME", "PACS_PORT",
           "RECEIVER_PORT", "TLS_PORT", "name_uid", "uid_namespace"]

TLS_PORT = 2762
PACS_PORT = 11112
RECEIVER_PORT = 11113

@cache
def uid_namespace() -> uuid.UUID:
    """The namespace of every name-based UUID the lab turns into a UID."""
    import uuid  # here: the node programs, which import this module, need no UUID

    return uuid.uuid5(uuid.NAMESPACE_URL, "urn:teleradlab:dicom")


def name_uid(*parts: object) -> str:
    """A "2.25." UID (PS3.5 B.2) from a name-based UUID of ``parts``: one per input, the same
    on every run (at most 2 + 1 + 39 = 42 characters, within the 64 of the UI VR)."""
    name = "\x1f".join(str(part) for part in parts)
    import uuid

    return f"2.25.{uuid.uuid5(uid_namespace(), name).int}"


#: name_uid("implementation"), written out so that a node program need not hash it at every
#: start (a test checks the two agree).
IMPLEMENTATION_CLASS_UID = "2.25.179935265063050312162165063334441128613"
#: SH, at most 16 characters (PS3.7 D.3.3.2.3).
IMPLEMENTATION_VERSION_NAME = "TELERADLAB_1"
