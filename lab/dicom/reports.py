"""What the node programs report: one JSON document on the last line of their standard output,
written and read through the models below, so that the program and the orchestrator agree on
every field by construction (shared/design.md, "Decisions made once, carried as values").

    python -m lab.dicom.scu echo|store|find|move   EchoReport, StoreReport, FindReport, MoveReport
    python -m lab.dicom.verify                     VerifyReport
    python -m lab.dicom.objsec protect|check|export|import
                                                   ProtectReport, CheckReport, ExportReport,
                                                   ImportReport
    python -m lab.bench.tlsbulk serve              BulkListening, then BulkReport

The models are plain dataclasses, so that a node program pays nothing to import them (each
C-STORE run starts one, and pydantic alone would add about 0.1 s to its start): a program builds
its report with :meth:`Report.build` (an unknown field is an error there already) and prints
:meth:`Report.line`. The orchestrator calls :func:`parse_report` (one line) or
:func:`parse_output` (a program's whole stdout), which check every field with pydantic: unknown
fields are refused, and so is a missing one (a report that failed carries ``ok: false`` and
``error`` and may leave out the operation's own fields; any other report carries all of them),
and each value must have its field's type. A line holds the fields that have a value; the TLS
fields (``handshake_seconds``, ``tls_version``, ``cipher``) are printed as null without TLS, an
error report has no timings.
Times are seconds (``perf_counter``); ``setup_seconds`` is the A-ASSOCIATE exchange (PS3.8
7.1) including the TCP connect and the TLS handshake (PS3.15 B.1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, Self, TypeVar, overload

from lab.errors import LabError

__all__ = [
    "OBJSEC_REPORTS",
    "REPORTS",
    "SCU_REPORTS",
    "BulkListening",
    "BulkReport",
    "CheckReport",
    "EchoReport",
    "ExportReport",
    "FindReport",
    "ImportReport",
    "MoveFailure",
    "MoveReport",
    "ObjectProblem",
    "Problem",
    "ProtectReport",
    "Report",
    "ReportError",
    "ScuReport",
    "StoreReport",
    "VerifyReport",
    "parse_output",
    "parse_report",
]

R = TypeVar("R", bound="Report")


def _compact(value: Any) -> Any:
    """A nested value without its unset (None) fields, as programs write them."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


class ReportError(LabError):
    """A program's output is not the report it should print (a bug, or the program died)."""


@dataclass(kw_only=True)
class Report:
    """Base of every program report: the fields of :data:`REQUIRED` must be given unless
    ``error`` says why they could not be measured; :data:`PRINTED_NULL` are printed even when
    they have no value (unless ``error``)."""

    #: pydantic's configuration when the orchestrator reads a report: unknown fields refused.
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}
    #: Fields a report must carry unless it has an ``error``.
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    #: Fields printed as null when they have no value (the TLS fields without TLS).
    PRINTED_NULL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def build(cls, doc: dict[str, Any]) -> Self:
        """The report of a program's result ``doc``; ReportError naming an unknown field."""
        unknown = sorted(set(doc) - {f.name for f in fields(cls)})
        if unknown:
            raise ReportError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        return cls(**doc)

    def document(self) -> dict[str, Any]:
        """The report as printed: the fields with a value (and those of PRINTED_NULL)."""
        failed = getattr(self, "error", None) is not None
        return {k: _compact(v) for k, v in asdict(self).items()
                if v is not None or (k in self.PRINTED_NULL and not failed)}

    def line(self) -> str:
        """The report as the program prints it: one line of JSON."""
        return json.dumps(self.document(), separators=(",", ":"))

    @classmethod
    def missing_fields(cls, doc: dict[str, Any]) -> list[str]:
        """What is missing from a document of this report (read by :func:`parse_report`)."""
        if doc.get("error") is None:
            missing = [f for f in cls.REQUIRED if f not in doc]
            if missing:
                return [f"missing field(s) {', '.join(missing)}: a report without 'error' "
                        "carries them all"]
        return []


_TLS = ("handshake_seconds", "tls_version", "cipher")


@dataclass(kw_only=True)
class ScuReport(Report):
    """What every ``lab.dicom.scu`` operation reports first: which, to whom, the outcome, its
    times and what TLS negotiated."""

    PRINTED_NULL = _TLS

    operation: str  # each operation's report narrows it to its own name
    peer: str  # [address]:port
    ok: bool
    error: str | None = None  # why the operation could not be carried out
    setup_seconds: float | None = None
    seconds: float | None = None
    handshake_seconds: float | None = None
    tls_version: str | None = None
    cipher: str | None = None
    tls_resumed: bool | None = None  # the handshake resumed an earlier session (RFC 8446 2.2)


@dataclass(kw_only=True)
class EchoReport(ScuReport):
    """C-ECHO (PS3.7 9.1.5): the response's status."""

    REQUIRED = ("status", "setup_seconds", "seconds", *_TLS)
    operation: Literal["echo"]
    status: int | None = None


@dataclass(kw_only=True)
class StoreReport(ScuReport):
    """C-STORE of a set of files (PS3.4 B) over ``associations`` associations at once: how
    many statuses of each kind (``0x0000``, ..., ``none`` when no response came), the files not
    stored, and the Asynchronous Operations Window the peer granted (PS3.7 D.3.3.3: requests
    outstanding per association, the smallest over them; 1 = one at a time, 0 = no limit).
    Resuming (lab.dicom.sender): the associations that broke and were made again
    (``retries``), the longest time from a break to the next acknowledged object
    (``recover_seconds``, absent without a break), what broke them (``breaks``), and whether
    every object was stored (``complete``). With ``--commit`` (PS3.4 Annex J): the objects
    committed, each SOP Instance UID's answer (``committed``, ``failed 0xNNNN (reason)``,
    ``no answer``), the commitment's time and why it could not be asked, if so."""

    REQUIRED = ("objects", "bytes", "setup_seconds", "seconds", "statuses", "failed",
                "retries", "complete", *_TLS)
    operation: Literal["store"]
    objects: int | None = None
    bytes: int | None = None
    statuses: dict[str, int] | None = None
    failed: list[str] | None = None
    window: int | None = None
    associations: int | None = None
    retries: int | None = None
    recover_seconds: float | None = None
    breaks: list[str] | None = None
    complete: bool | None = None
    committed: int | None = None
    commitment: dict[str, str] | None = None
    commit_seconds: float | None = None
    commit_error: str | None = None


@dataclass(kw_only=True)
class FindReport(ScuReport):
    """C-FIND (PS3.4 C.4.1): the final status and each match's keywords and values."""

    REQUIRED = ("status", "matches", "setup_seconds", "seconds", *_TLS)
    operation: Literal["find"]
    status: int | None = None
    matches: list[dict[str, str]] | None = None


@dataclass(kw_only=True)
class MoveFailure:
    """One failed C-MOVE of a ``--repeat`` run: its number, and its error or final status."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}
    move: int
    error: str | None = None
    status: int | None = None


@dataclass(kw_only=True)
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
    repeat: int | None = None
    moves_failed: int | None = None
    completed_total: int | None = None
    failures: list[MoveFailure] | None = None

    @classmethod
    def missing_fields(cls, doc: dict[str, Any]) -> list[str]:
        out = super().missing_fields(doc)
        given = [f for f in cls.REPEAT if f in doc]
        if given and len(given) != len(cls.REPEAT):
            missing = [f for f in cls.REPEAT if f not in given]
            out.append(f"missing field(s) {', '.join(missing)}: a repeated move reports all "
                       f"of {', '.join(cls.REPEAT)}")
        return out


@dataclass(kw_only=True)
class Problem:
    """One thing that did not verify: an object (its UID, status, received file) or the
    manifest's signature (``status: signature``) or the check itself (``status: error``)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}
    sop_instance_uid: str | None = None
    status: str
    path: str | None = None
    detail: str


@dataclass(kw_only=True)
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


@dataclass(kw_only=True)
class ObjectProblem(Problem):
    """A problem of object security: also the signed elements found missing, by name."""

    elements: list[str] | None = None


@dataclass(kw_only=True)
class ObjsecReport(Report):
    """What every ``lab.dicom.objsec`` step reports: the outcome and every problem (the object
    and the element or the reason). Times are seconds summed over the study's objects."""

    ok: bool
    error: str | None = None
    objects: int | None = None
    problems: list[ObjectProblem] = field(default_factory=list)


@dataclass(kw_only=True)
class ProtectReport(ObjsecReport):
    """``objsec protect``: the protected copies, their study's UID (new when de-identified)."""

    REQUIRED = ("objects", "files", "study_uid", "sign_seconds", "deid_seconds")
    files: list[str] | None = None
    study_uid: str | None = None
    sign_seconds: float | None = None
    deid_seconds: float | None = None


@dataclass(kw_only=True)
class CheckReport(ObjsecReport):
    """``objsec check``: signatures verified, objects re-identified and compared."""

    REQUIRED = ("objects", "reidentified", "verify_seconds", "reid_seconds")
    reidentified: int | None = None
    verify_seconds: float | None = None
    reid_seconds: float | None = None


@dataclass(kw_only=True)
class ExportReport(ObjsecReport):
    """``objsec export``: the secure file-set written (its bytes, DICOMDIR included)."""

    REQUIRED = ("objects", "bytes", "export_seconds")
    bytes: int | None = None
    export_seconds: float | None = None


@dataclass(kw_only=True)
class ImportReport(ObjsecReport):
    """``objsec import``: the objects imported, who signed them, checked against the manifest."""

    REQUIRED = ("objects", "signers", "import_seconds")
    signers: list[str] | None = None
    import_seconds: float | None = None


#: The report of each step of ``lab.dicom.objsec``.
OBJSEC_REPORTS: dict[str, type[ObjsecReport]] = {
    "protect": ProtectReport, "check": CheckReport, "export": ExportReport,
    "import": ImportReport}


@dataclass(kw_only=True)
class BulkListening(Report):
    """``lab.bench.tlsbulk serve``'s first line: it listens on this port."""

    listening: int


@dataclass(kw_only=True)
class BulkReport(Report):
    """``lab.bench.tlsbulk serve``'s last line: what one connection carried, timed at the
    receiver from the first byte after the handshake to the last."""

    PRINTED_NULL = _TLS
    bytes: int
    seconds: float
    mbit_per_s: float
    handshake_seconds: float | None
    tls_version: str | None
    cipher: str | None
    tls_resumed: bool | None = None


#: The report of each operation of ``lab.dicom.scu``.
SCU_REPORTS: dict[str, type[ScuReport]] = {
    "echo": EchoReport, "store": StoreReport, "find": FindReport, "move": MoveReport}
#: The report model of each program (or operation), by the name parse_report takes.
REPORTS: dict[str, type[Report]] = {
    **SCU_REPORTS, "verify": VerifyReport, "tlsbulk-listening": BulkListening,
    "tlsbulk": BulkReport, **{f"objsec-{k}": v for k, v in OBJSEC_REPORTS.items()}}


def parse_report(kind: str, line: str) -> Report:
    """The report of ``kind`` (a key of :data:`REPORTS`) in one line of JSON; ReportError
    naming every wrong field (missing, unknown, or of the wrong type) otherwise."""
    model = REPORTS.get(kind)
    if model is None:
        raise ReportError(f"no report kind {kind!r} (known: {', '.join(REPORTS)})")
    return _validated(model, kind, line)


def _validated(model: type[R], kind: str, line: str) -> R:
    """Every field checked by pydantic (imported here: the orchestrator reads reports, the node
    programs only write them)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise ReportError(f"not a valid {kind} report: not JSON ({exc})\n"
                          f"{line.strip()[:1000]}") from None
    if not isinstance(doc, dict):
        raise ReportError(f"not a valid {kind} report: not a JSON object\n{line.strip()[:1000]}")
    try:
        report = TypeAdapter(model).validate_python(doc)
    except ValidationError as exc:
        raise ReportError(f"not a valid {kind} report: {_problems(exc)}\n"
                          f"{line.strip()[:1000]}") from None
    missing = model.missing_fields(doc)
    if missing:
        raise ReportError(f"not a valid {kind} report: {'; '.join(missing)}\n"
                          f"{line.strip()[:1000]}")
    return report


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


def _problems(exc: Any) -> str:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        what: Any = err["msg"]
        out.append(f"{where}: {what}" if where else str(what))
    return "; ".join(out)
