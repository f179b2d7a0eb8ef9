"""``teleradlab report DIR``: one self-contained HTML file (figures embedded as base64 PNG, no
external resource of any kind) plus the same figures as PNG files in ``DIR/figures``."""

from __future__ import annotations

import base64
import html
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab import topology as topology_file
from lab.errors import LabError
from lab.report import data, figures, findings
from lab.report.drawings import draw

CSS = """
body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}
caption{text-align:left;font-weight:bold;padding:.3em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.nodata{color:#a33}li{margin:.3em 0}
"""


def _meta(folder: Path) -> dict[str, Any]:
    for name in ("sweep.json", "run.json"):
        path = folder / name
        if path.exists():
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return doc
    return {}


def _figure(chart: figures.Chart) -> str:
    b64 = base64.b64encode(chart.png).decode("ascii")
    note = "" if chart.has_data else " <span class='nodata'>(no data: see the figure)</span>"
    return (f"<figure id='fig-{chart.name}'><img alt='{html.escape(chart.title)}' "
            f"src='data:image/png;base64,{b64}'><figcaption><b>{html.escape(chart.title)}"
            f"</b>{note}. {html.escape(chart.caption)}</figcaption></figure>")


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
    name = meta.get("sweep") or meta.get("topology") or "results"
    desc = meta.get("description", "")
    done = len({r["case_id"] for r in records if r["case_status"] == "done"})
    failed = len(data.failed_cases(records))
    facts = "".join(f"<li>{html.escape(s)}</li>" for s in findings.findings(records))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>teleradlab report: {html.escape(str(name))}</title><style>{CSS}</style></head>",
        f"<body><h1>teleradlab report: {html.escape(str(name))}</h1>",
        f"<p>{html.escape(str(desc))}</p>" if desc else "",
        f"<p>{done} case(s) measured, {failed} failed; {len(records)} result rows. Generated "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.</p>",
        f"<h2>Findings</h2><ul>{facts}</ul>",
        "<h2>Figures</h2>", *(_figure(c) for c in charts),
        "<h2>Topologies</h2>" if drawings else "", *(_figure(c) for c in drawings),
        "<h2>Tables</h2>", findings.modality_table(records, "store"),
        findings.modality_table(records, "move"), findings.pdu_table(records),
        findings.setup_table(records), findings.failures_table(records),
        findings.provenance_table(records),
        "<p>Throughput is bytes of the DICOM files over the operation's time (association "
        "setup excluded), as in results.csv; intervals are Student's t 95% over repetitions.</p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


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
    tmp = folder / ".report.html.tmp"
    tmp.write_text(build_html(records, charts, meta, drawings), encoding="utf-8")
    os.replace(tmp, path)
    return path.absolute()
