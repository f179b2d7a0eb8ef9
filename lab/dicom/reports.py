"""What the node programs report: one JSON document on the last line of their standard output,
written and read through the models below, so that the program and the orchestrator agree on
every field by construction (shared/design.md, "Decisions made once, carried as values").

    python -m lab.dicom.scu echo|store|find|move   EchoReport, StoreReport, FindReport, MoveReport
    python -m lab.dicom.verify                     VerifyReport
    python -m lab.bench.tlsbulk serve              BulkListening, then BulkReport

A program builds its report and prints :meth:`Report.line`; the orchestrator calls
:func:`parse_report` (one line) or :func:`parse_output` (a program's whole stdout). Unknown
fields are refused (``extra="forbid``), and so is a missing one: a report that failed carries
``ok: false`` and ``error`` and may leave out the operation's own fields; any other report
carries all of them. Only the fields a program set are printed, so a document has exactly the
keys it had before these models existed: the TLS fields (``handshake_seconds``,
``tls_version``, ``cipher``) are printed as null without TLS, an error report has no timings.
Times are seconds (``perf_counter``); ``setup_seconds`` is the A-ASSOCIATE exchange (PS3.8
7.1) including the TCP connect and the TLS handshake (PS3.15 B.1).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self, overload

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from lab.errors import LabError

__all__ = [
    "REPORTS",
    "SCU_REPORTS",
    "BulkListening",
    "BulkReport",
    "EchoReport",
    "FindReport",
    "MoveFailure",
    "MoveReport",
    "Problem",
    "Report",
    "ReportError",
    "ScuReport",
    "StoreReport",
    "VerifyReport",
    "parse_output",
    "parse_report",
]


class ReportError(LabError):
    """A program's output is not the report it should print (a bug, or the program died)."""


class Report(BaseModel):
    """Base of every program report: unknown fields refused; the fields of :data:`REQUIRED`
    must be given unless ``error`` says why they could not be measured."""

    model_config = ConfigDict(extra="forbid")

    #: Fields a report must carry unless it has an ``error``.
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if getattr(self, "error", None) is None:
            missing = [f for f in self.REQUIRED if f not in self.model_fields_set]
            if missing:
                raise ValueError(f"missing field(s) {', '.join(missing)}: a report without "
                                 "'error' carries them all")
        return self

    def line(self) -> str:
        """The report as the program prints it: one line of JSON, only the fields it set."""
        return self.model_dump_json(exclude_unset=True)


_TLS = ("handshake_seconds", "tls_version", "cipher")


class ScuReport(Report):
    """What every ``lab.dicom.scu`` operation reports first: which, to whom, and the outcome."""

    operation: str  # each operation's report narrows it to its own name
    peer: str  # [address]:port
    ok: bool
    error: str | None = None  # why the operation could not be carried out


class EchoReport(ScuReport):
    """C-ECHO (PS3.7 9.1.5): the response's status."""

    REQUIRED = ("status", "setup_seconds", "seconds", *_TLS)
    operation: Literal["echo"]
    status: int | None = None
    setup_seconds: float | None = None
    seconds: float | None = None
    handshake_seconds: float | None = None
    tls_version: str | None = None
    cipher: str | None = None


class StoreReport(ScuReport):
    """C-STORE of a set of files on one association (PS3.4 B): how many statuses of each kind
    (``0x0000``, ..., ``none`` when no response came) and the files not stored."""

    REQUIRED = ("objects", "bytes", "setup_seconds", "seconds", "statuses", "failed", *_TLS)
    operation: Literal["store"]
    objects: int | None = None
    bytes: int | None = None
    setup_seconds: float | None = None
    seconds: float | None = None
    statuses: dict[str, int] | None = None
    failed: list[str] | None = None
    handshake_seconds: float | None = None
    tls_version: str | None = None
    cipher: str | None = None


class FindReport(ScuReport):
    """C-FIND (PS3.4 C.4.1): the final status and each match's keywords and values."""

    REQUIRED = ("status", "matches", "setup_seconds", "seconds", *_TLS)
    operation: Literal["find"]
    status: int | None = None
    matches: list[dict[str, str]] | None = None
    setup_seconds: float | None = None
    seconds: float | None = None
    handshake_seconds: float | None = None
    tls_version: str | None = None
    cipher: str | None = None


class MoveFailure(BaseModel):
    """One failed C-MOVE of a ``--repeat`` run: its number, and its error or final status."""

    model_config = ConfigDict(extra="forbid")
    move: int
    error: str | None = None
    status: int | None = None


class MoveReport(ScuReport):
    """C-MOVE (PS3.4 C.4.2): the final status and sub-operation counts (PS3.7 9.1.4.1). With
    ``--repeat N`` the last move's fields, and also the four repeat fields."""

    REQUIRED = ("status", "completed", "failed", "warning", "setup_seconds", "seconds", *_TLS)
    REPEAT: ClassVar[tuple[str, ...]] = ("repeat", "moves_failed", "completed_total",
                                         "failures")
    operation: Literal["move"]
    status: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    setup_seconds: float | None = None
    seconds: float | None = None
    handshake_seconds: float | None = None
    tls_version: str | None = None
    cipher: str | None = None
    repeat: int | None = None
    moves_failed: int | None = None
    completed_total: int | None = None
    failures: list[MoveFailure] | None = None

    @model_validator(mode="after")
    def _repeat_fields(self) -> Self:
        given = [f for f in self.REPEAT if f in self.model_fields_set]
        if given and len(given) != len(self.REPEAT):
            missing = [f for f in self.REPEAT if f not in given]
            raise ValueError(f"missing field(s) {', '.join(missing)}: a repeated move "
                             f"reports all of {', '.join(self.REPEAT)}")
        return self


class Problem(BaseModel):
    """One thing that did not verify: an object (its UID, status, received file) or the
    manifest's signature (``status: signature``) or the check itself (``status: error``)."""

    model_config = ConfigDict(extra="forbid")
    sop_instance_uid: str | None = None
    status: str
    path: str | None = None
    detail: str


class VerifyReport(Report):
    """``lab.dicom.verify``: the signed manifest's signature (PS3.15-style integrity, checked
    against the lab CA) and every object's SHA-256 against it; every problem listed."""

    REQUIRED = ("signature_ok", "signer", "objects", "summary")
    ok: bool
    error: str | None = None
    signature_ok: bool | None = None
    signer: str | None = None
    objects: int | None = None
    summary: str | None = None
    problems: list[Problem]


class BulkListening(Report):
    """``lab.bench.tlsbulk serve``'s first line: it listens on this port."""

    listening: int


class BulkReport(Report):
    """``lab.bench.tlsbulk serve``'s last line: what one connection carried, timed at the
    receiver from the first byte after the handshake to the last."""

    bytes: int
    seconds: float
    mbit_per_s: float
    handshake_seconds: float | None
    tls_version: str | None
    cipher: str | None


#: The report of each operation of ``lab.dicom.scu``.
SCU_REPORTS: dict[str, type[ScuReport]] = {
    "echo": EchoReport, "store": StoreReport, "find": FindReport, "move": MoveReport}
#: The report model of each program (or operation), by the name parse_report takes.
REPORTS: dict[str, type[Report]] = {
    **SCU_REPORTS, "verify": VerifyReport, "tlsbulk-listening": BulkListening,
    "tlsbulk": BulkReport}


@overload
def parse_report(kind: Literal["echo"], line: str) -> EchoReport: ...
@overload
def parse_report(kind: Literal["store"], line: str) -> StoreReport: ...
@overload
def parse_report(kind: Literal["find"], line: str) -> FindReport: ...
@overload
def parse_report(kind: Literal["move"], line: str) -> MoveReport: ...
@overload
def parse_report(kind: Literal["verify"], line: str) -> VerifyReport: ...
@overload
def parse_report(kind: Literal["tlsbulk"], line: str) -> BulkReport: ...
@overload
def parse_report(kind: str, line: str) -> Report: ...


def parse_report(kind: str, line: str) -> Report:
    """The report of ``kind`` (a key of :data:`REPORTS`) in one line of JSON; ReportError
    naming every wrong field (missing, unknown, or of the wrong type) otherwise."""
    model = REPORTS.get(kind)
    if model is None:
        raise ReportError(f"no report kind {kind!r} (known: {', '.join(REPORTS)})")
    try:
        return model.model_validate_json(line)
    except ValidationError as exc:
        raise ReportError(f"not a valid {kind} report: {_problems(exc)}\n"
                          f"{line.strip()[:1000]}") from None


@overload
def parse_output(kind: Literal["echo"], stdout: str) -> EchoReport: ...
@overload
def parse_output(kind: Literal["store"], stdout: str) -> StoreReport: ...
@overload
def parse_output(kind: Literal["find"], stdout: str) -> FindReport: ...
@overload
def parse_output(kind: Literal["move"], stdout: str) -> MoveReport: ...
@overload
def parse_output(kind: Literal["verify"], stdout: str) -> VerifyReport: ...
@overload
def parse_output(kind: Literal["tlsbulk"], stdout: str) -> BulkReport: ...
@overload
def parse_output(kind: str, stdout: str) -> Report: ...


def parse_output(kind: str, stdout: str) -> Report:
    """The report on the last non-empty line of a program's standard output."""
    lines = stdout.strip().splitlines()
    if not lines:
        raise ReportError(f"no {kind} report: the program printed nothing")
    return parse_report(kind, lines[-1])


def _problems(exc: ValidationError) -> str:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        what: Any = err["msg"]
        out.append(f"{where}: {what}" if where else str(what))
    return "; ".join(out)
