"""What the archive's acceptor (:mod:`lab.dicom.ul.acceptor`) is configured with and hands to
the services behind it: the store, the Query/Retrieve service (PS3.4 Annex C) and the Storage
Commitment service (PS3.4 Annex J), each injected as a callable so the acceptor can be tested
over loopback with any of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab.dicom.ul.commitment import Result
from lab.dicom.ul.incoming import ScratchFile

#: Stores a scratch file (path, transfer syntax, SOP class, SOP instance, the first bytes of
#: the file as written or b"", and its status once written or None); returns the status. A
#: file stored (status 0) has been moved into the store: the acceptor removes only the others.
StoreFile = Callable[[Path, str, str, str, bytes, "os.stat_result | None"], int]


@dataclass(frozen=True)
class QueryRequest:
    """A C-FIND-RQ or C-MOVE-RQ as received: what the query service needs."""

    field: int  # cmd.C_FIND_RQ or cmd.C_MOVE_RQ
    sop_class: str
    transfer_syntax: str
    identifier: bytes
    move_destination: str = ""


@dataclass(frozen=True)
class QueryReply:
    """One response of the query service: status, identifier (encoded in the context's
    transfer syntax) and, for C-MOVE, the sub-operation counts."""

    status: int
    identifier: bytes | None = None
    counts: Mapping[str, int] | None = None


#: Answers a C-FIND or C-MOVE (lab.dicom.archive.qrscp.QueryService).
QueryHandler = Callable[[QueryRequest], Iterator[QueryReply]]


@dataclass(frozen=True)
class Config:
    """What the acceptor serves: the AE titles it answers to, the Maximum Length it announces
    and enforces for P-DATA-TF bodies (0 = unlimited), the supported abstract syntaxes with
    their transfer syntaxes, where datasets are received, what stores one, the idle timeout,
    what to do once a C-STORE is answered, ARTIM, and the Query/Retrieve service."""

    ae_titles: frozenset[str]
    max_pdu: int
    supported: Mapping[str, frozenset[str]]
    scratch: ScratchFile
    store_file: StoreFile
    timeout: float = 60.0
    #: Work the store leaves until answers are on their way (the index rows of
    #: lab.dicom.archive.store.Store.store_encoded's ``defer_index``): called with False after each
    #: C-STORE-RSP is sent, with True when the association ends.
    settle: Callable[[bool], None] = lambda final: None
    artim: float = 10.0
    query: QueryHandler | None = None
    #: Abstract syntaxes answered by ``query``: C-FIND ones and C-MOVE ones.
    find_classes: frozenset[str] = frozenset()
    move_classes: frozenset[str] = frozenset()
    #: Storage Commitment (lab.dicom.archive.commitment.CommitmentService), if served.
    action: ActionService | None = None


@dataclass(frozen=True)
class ActionRequest:
    """An N-ACTION-RQ as received (PS3.7 10.1.4): who asked, on what, and its dataset."""

    calling: str
    requested_class: str | None  # None: not a valid UID
    requested_instance: str | None
    action_type: int | None
    transfer_syntax: str
    dataset: bytes


@dataclass(frozen=True)
class ActionReply:
    """The N-ACTION-RSP's status and Action Type ID, and the Storage Commitment result to
    report afterwards with an N-EVENT-REPORT (PS3.4 J.3.3), if any."""

    status: int
    action_type: int | None = None
    report: Result | None = None


class ActionService(Protocol):
    """Answers N-ACTIONs; takes back a result the requestor's association ended without
    confirming, to deliver over a new association (PS3.4 J.3.3)."""

    def __call__(self, rq: ActionRequest) -> ActionReply: ...

    def undelivered(self, calling: str, report: Result) -> None: ...
