"""``teleradlab report DIR``: one self-contained HTML file (figures embedded as base64 PNG, no
external resource of any kind) plus the same figures as PNG files in ``DIR/figures``.

The HTML comes from Jinja2 templates shipped with the package (``lab/report/templates``), with
autoescaping on, so no text of the results (case errors, descriptions) can turn into markup."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab import topology as topology_file
from lab.errors import LabError
from lab.host import files
from lab.report import data, faults, figures, findings, objects, pages
from lab.report.drawings import draw


def _meta(folder: Path) -> dict[str, Any]:
    for name in ("sweep.json", "run.json"):
        path = folder / name
        if path.exists():
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return doc
    return {}


def _topology_path(folder: Path, name: str, meta: dict[str, Any]) -> Path | None:
    """The file a topology of the results came from: a sweep's copy (with its security), the
    run's file, or the shipped one of that name."""
    copies = sorted((folder / "labs").glob(f"*/{name}.yaml"))
    candidates = [*copies, Path(str(meta.get("topology_file", ""))),
                  topology_file.shipped_dir() / f"{name}.yaml"]
    return next((p for p in candidates if p.name == f"{name}.yaml" and p.is_file()), None)


def topology_charts(folder: Path, records: list[dict[str, Any]],
                    meta: dict[str, Any]) -> list[figures.Chart]:
    """A drawing of every topology in the results (lab.report.drawings), with the WAN profiles
    used."""
    charts = []
    for name in sorted({str(r["case_topology"]) for r in records} - {""}):
        path = _topology_path(folder, name, meta)
        try:
            topology = topology_file.load(path) if path else None
        except LabError:
            topology = None
        if topology is None:
            continue
        wans = sorted({str(r["case_wan"]) for r in records if r["case_topology"] == name}
                      - {"", "none"})
        _, png = draw(topology, folder / "figures" / "topologies", wan=", ".join(wans) or None)
        charts.append(figures.Chart(f"topology-{name}", f"Topology {name}",
                                    f"Drawn from {path}; also as SVG in figures/topologies.",
                                    png.read_bytes(), True))
    return charts


def build_html(records: list[dict[str, Any]], charts: list[figures.Chart],
               meta: dict[str, Any], drawings: Sequence[figures.Chart] = ()) -> str:
    """The report page, from the template ``report.html``: findings, figures, topology
    drawings and tables."""
    return pages.render(
        "report.html",
        name=str(meta.get("sweep") or meta.get("topology") or "results"),
        description=str(meta.get("description", "")),
        done=len({r["case_id"] for r in records if r["case_status"] == "done"}),
        failed=len(data.failed_cases(records)),
        rows=len(records),
        generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        findings=findings.findings(records),
        charts=charts,
        drawings=drawings,
        tables=[findings.modality_table(records, "store"), findings.modality_table(records, "move"),
                findings.pdu_table(records), findings.setup_table(records),
                objects.cost_table(records), objects.threats_table(),
                faults.recovery_table(records),
                findings.failures_table(records),
                findings.provenance_table(records, meta)],
    )


def write_report(folder: Path) -> Path:
    """Write ``folder/report.html`` and ``folder/figures/*.png``; return the HTML's path."""
    records = data.load(folder)
    charts = figures.all_charts(records)
    fig_dir = folder / "figures"
    fig_dir.mkdir(exist_ok=True)
    for chart in charts:
        (fig_dir / f"{chart.name}.png").write_bytes(chart.png)
    meta = _meta(folder)
    drawings = topology_charts(folder, records, meta)
    path = folder / "report.html"
    files.write_text(path, build_html(records, charts, meta, drawings))
    return path.absolute()
