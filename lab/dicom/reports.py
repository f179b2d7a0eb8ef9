"""What the node programs report: one JSON document on the last line of their standard output,
written and read through the models below, so that the program and the orchestrator agree on
every field by construction (shared/design.md, "Decisions made once, carried as values").

    python -m lab.dicom.scu echo|store|find|move   EchoReport, StoreReport, FindReport, MoveReport
    python -m lab.dicom.verify                     VerifyReport
    python -m lab.dicom.objsec protect|check|export|import
                                                   ProtectReport, CheckReport, ExportReport,
                                                   ImportReport
    python -m lab.bench.tlsbulk serve              BulkListening, then BulkReport

The models (in :mod:`lab.dicom.report_models`, re-exported here) are plain dataclasses, so that a
node program pays nothing to import them (each C-STORE run starts one, and pydantic alone would add
about 0.1 s to its start): a program builds its report with :meth:`Report.build` (an unknown field
is an error there already) and prints :meth:`Report.line`. The orchestrator calls
:func:`parse_report` (one line) or :func:`parse_output` (a program's whole stdout), which check
every field with pydantic: unknown fields are refused, and so is a missing one (a report that failed
carries ``ok: false`` and ``error`` and may leave out the operation's own fields; any other report
carries all of them), and each value must have its field's type. A line holds the fields that have a
value; the TLS fields (``handshake_seconds``, ``tls_version``, ``cipher``) are printed as null
without TLS, an error report has no timings.
Times are seconds (``perf_counter``); ``setup_seconds`` is the A-ASSOCIATE exchange (PS3.8
7.1) including the TCP connect and the TLS handshake (PS3.15 B.1).
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar, overload

from lab.dicom.report_models import (
    OBJSEC_REPORTS,
    SCU_REPORTS,
    BulkListening,
    BulkReport,
    CheckReport,
    EchoReport,
    ExportReport,
    FindReport,
    ImportReport,
    MoveFailure,
    MoveReport,
    ObjectProblem,
    Problem,
    ProtectReport,
    Report,
    ReportError,
    ScuReport,
    StoreReport,
    VerifyReport,
)

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

R = TypeVar("R", bound=Report)

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
