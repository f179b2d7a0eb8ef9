"""The sweep's tidy results table: every row of every case's ``results.csv``, with the case's
requested configuration and the provenance of the run beside it (CSV and Parquet).

A case that failed before any transfer still has one row (``case_status`` failed, the error in
``case_error``), so a table never hides what was asked for and not measured.
"""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from lab.host import files
from lab.study.results import COLUMNS, Row, read_csv
from lab.study.sweep.spec import Case

#: Columns the sweep adds before the run's own (lab.study.results.Row) columns.
CASE_COLUMNS: dict[str, type] = {
    "sweep": str, "case_id": str, "case_index": int, "case_status": str, "case_error": str,
    "case_topology": str, "case_security": str, "case_profile": str, "case_cipher": str,
    "case_wan": str, "case_pdu": int, "case_modality": str, "case_object_security": str,
    "case_associations": int, "case_window": int, "case_fault": str,
}
#: Provenance columns after them, from each case's run.json (and, for a case a Dask worker ran,
#: its worker.json: the worker's address and host name; both empty for a sweep run here).
PROVENANCE_COLUMNS: dict[str, type] = {
    "worker": str, "host": str, "lab": str, "data_path_esp": str, "data_path_wan": str,
    "teleradlab_version": str,
    "git_revision": str, "python": str, "kernel": str, "pydicom": str, "pynetdicom": str,
    "cryptography": str,
}
_ROW_TYPES: dict[str, type] = {f.name: {"int": int, "float": float, "bool": bool}.get(
    str(f.type), str) for f in fields(Row)}
TYPES: dict[str, type] = {**CASE_COLUMNS, **_ROW_TYPES, **PROVENANCE_COLUMNS}
TABLE_COLUMNS = tuple(TYPES)


def case_columns(sweep: str, case: Case, status: str, error: str) -> dict[str, Any]:
    cipher = case.security_section.get("tls", {}).get("cipher") or ""
    return {"sweep": sweep, "case_id": case.case_id, "case_index": case.index,
            "case_status": status, "case_error": error, "case_topology": case.topology.stem,
            "case_security": case.security.mode, "case_profile": case.security_profile,
            "case_cipher": cipher, "case_wan": case.wan, "case_pdu": case.pdu,
            "case_modality": case.modality, "case_object_security": case.object_security,
            "case_associations": case.associations, "case_window": case.window,
            "case_fault": case.fault}


#: Where a case run by a Dask worker says which worker and host ran it.
WORKER_JSON = "worker.json"


def _json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def provenance_columns(run_json: Path) -> dict[str, Any]:
    doc = _json(run_json)
    if doc is None:
        return {k: "" for k in PROVENANCE_COLUMNS}
    where = _json(run_json.parent / WORKER_JSON) or {}
    paths = doc.get("data_paths") or {}
    pkgs = doc.get("packages") or {}
    return {"worker": where.get("worker", ""), "host": where.get("host", ""),
            "lab": doc.get("lab", ""), "data_path_esp": paths.get("esp", ""),
            "data_path_wan": paths.get("wan", ""), "teleradlab_version": doc.get("teleradlab", ""),
            "git_revision": doc.get("git_revision", ""), "python": doc.get("python", ""),
            "kernel": doc.get("kernel", ""), "pydicom": pkgs.get("pydicom", ""),
            "pynetdicom": pkgs.get("pynetdicom", ""), "cryptography": pkgs.get("cryptography", "")}


def _typed(column: str, value: Any) -> Any:
    kind = TYPES[column]
    if value in ("", None) and kind is not str:
        return None
    if kind is bool:
        return value if isinstance(value, bool) else str(value) == "True"
    return kind(value)


def case_records(sweep: str, case: Case, status: str, error: str, folder: Path
                 ) -> list[dict[str, Any]]:
    """The table rows of one finished case (one row with the error when it measured nothing)."""
    head = case_columns(sweep, case, status, error)
    prov = provenance_columns(folder / "run.json")
    rows = read_csv(folder / "results.csv") if (folder / "results.csv").exists() else []
    if not rows:
        blank: dict[str, Any] = {c: "" for c in COLUMNS}
        blank.update(topology=case.topology.stem, security=case.security.mode, pdu=case.pdu,
                     modality=case.modality, ok=False, detail=error,
                     object_security=case.object_security,
                     associations=case.associations, window=case.window,
                     wan_profile="" if case.wan == "none" else case.wan)
        rows = [blank]
    return [{c: _typed(c, v) for c, v in {**head, **r, **prov}.items() if c in TYPES}
            for r in rows]


def write(out: Path, records: list[dict[str, Any]]) -> tuple[Path, Path]:
    """``results.csv`` and ``results.parquet`` in ``out``, each replaced atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path, pq_path = out / "results.csv", out / "results.parquet"
    with files.open_atomic(csv_path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for rec in records:
            writer.writerow({c: "" if rec.get(c) is None else rec.get(c) for c in TABLE_COLUMNS})
    arrow = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    schema = pa.schema([(c, arrow[t]) for c, t in TYPES.items()])
    table = pa.Table.from_pylist([{c: r.get(c) for c in TABLE_COLUMNS} for r in records],
                                 schema=schema)
    with files.replacing(pq_path) as tmp:
        pq.write_table(table, tmp)
    return csv_path, pq_path
