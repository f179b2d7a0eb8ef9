"""The report's section on faults (``run --fault``, the sweep ``faults``): per protection and
fault, when the fault hit the C-STORE, how long the lab took to recover, what the C-STORE took
beside the same protection without a fault, and whether the study still arrived whole.

Read from the C-STORE rows' ``fault*`` columns (lab.study.results.Row; the recovery is
:attr:`lab.runtime.faults.FaultRecord.seconds`: from the fault to the lab seen working again),
as mean ± 95% interval (Student's t, :func:`lab.report.data.summarise`). "Whole" counts the
C-STOREs whose every object the PACS's site verified against the sender's signed manifest (so
none lost or altered); the SCU's retries and Storage Commitment (PS3.4 Annex J), when the rows
carry them (``retries``, ``committed``), are shown beside.
"""

from __future__ import annotations

from typing import Any

from lab.report.data import config_label, group, summarise
from lab.report.findings import NONE, Table

Records = list[dict[str, Any]]


def _seconds(rows: Records, column: str) -> str:
    s = summarise(float(r.get(column) or 0.0) for r in rows)
    return f"{s.text} s" if s else NONE


def _count(rows: Records, column: str) -> str:
    """A column of the SCU's (retries, committed) when the rows have it, else '-'."""
    if not rows or column not in rows[0] or rows[0][column] in ("", None):
        return NONE
    values = [r[column] for r in rows]
    if all(isinstance(v, bool) or str(v) in ("True", "False") for v in values):
        return f"{sum(str(v) == 'True' for v in values)}/{len(values)}"
    return str(sum(int(float(v or 0)) for v in values))


def recovery_table(records: Records) -> Table:
    """One row per protection and fault (and the same protection without a fault, as the
    baseline of the C-STORE's time)."""
    stores = [r for r in records if r["operation"] == "store" and r["case_status"] == "done"]
    if not any(r.get("fault") for r in stores):
        stores = []
    keyed = group(stores, lambda r: (config_label(r, objects=False, fault=False),
                                     str(r.get("fault") or "")))
    out = []
    for (protection, fault), rs in sorted(keyed.items()):
        injected = [r for r in rs if r.get("fault_node")]
        whole = [r for r in rs if r["ok"] and r["verified"] == "yes"]
        out.append([protection, fault or "none (baseline)",
                    f"{len(injected)}/{len(rs)}" if fault else NONE,
                    _seconds(injected, "fault_at_s") if injected else NONE,
                    _seconds(injected, "fault_seconds") if injected else NONE,
                    _seconds(whole, "seconds") if whole else NONE,
                    f"{len(whole)}/{len(rs)}", _count(rs, "retries"), _count(rs, "committed")])
    head = ["protection", "fault", "injected", "at (into the C-STORE)", "recovery",
            "C-STORE (whole ones)", "whole and verified", "retries", "committed"]
    return Table(head, out, "Table: faults during a C-STORE, per protection: when each hit, "
                 "how long the lab took to recover (mean ± 95% interval), and whether the "
                 "study still arrived whole (every object verified at the PACS's site)",
                 empty="no run with a fault")
