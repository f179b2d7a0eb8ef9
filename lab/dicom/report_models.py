"""The report models of the node programs (see :mod:`lab.dicom.reports`, which reads them):
plain dataclasses, so that a node program that builds one does not import pydantic. The SCU,
started for every C-STORE run, prints its report through :mod:`lab.dicom.report_line` (the
rule :meth:`Report.line` follows) without building one of them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, Self, TypeVar

from lab.dicom.report_line import TLS_FIELDS, document
from lab.errors import LabError

R = TypeVar("R", bound="Report")


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
        return document(asdict(self), self.PRINTED_NULL)

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


_TLS = TLS_FIELDS


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
