"""What the archive's acceptor (lab.dicom.ul.acceptor) hands its query service and gets back:
a C-FIND-RQ or C-MOVE-RQ as received, and each response to send (PS3.4 C.4)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass


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
