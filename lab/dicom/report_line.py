"""How a node program's report is printed: one line of JSON holding the fields that have a value
(nested too), and the fields of ``printed_null`` as null when they have none, unless the report
says why it failed (``error``). The rule of :meth:`lab.dicom.report_models.Report.line`, kept here
without any import but json so that the SCU, started once for every C-STORE run, writes its line
without building a dataclass (the ``dataclasses`` module and the models cost about 15 ms of
each start); what it writes is read and checked field by field by
:func:`lab.dicom.reports.parse_report`, as every program's report is."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # not typing's: see lab.dicom.ul.records
if TYPE_CHECKING:
    from typing import Any

#: What TLS negotiated: printed as null without TLS (``ScuReport.PRINTED_NULL``).
TLS_FIELDS = ("handshake_seconds", "tls_version", "cipher")


def compact(value: Any) -> Any:
    """A nested value without its unset (None) fields, as programs write them."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def document(values: dict[str, Any], printed_null: tuple[str, ...] = ()) -> dict[str, Any]:
    """The report as printed: the fields with a value, and those of ``printed_null``."""
    failed = values.get("error") is not None
    return {k: compact(v) for k, v in values.items()
            if v is not None or (k in printed_null and not failed)}


def line(values: dict[str, Any], printed_null: tuple[str, ...] = ()) -> str:
    """The report as the program prints it: one line of JSON, with every field of
    ``printed_null`` present (null when it has no value) unless the report failed."""
    if values.get("error") is None:
        values = {**values, **{k: None for k in printed_null if k not in values}}
    return json.dumps(document(values, printed_null), separators=(",", ":"))
