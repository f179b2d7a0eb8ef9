"""The HTML page of a ``teleradlab probe`` (:class:`lab.probe.findings.ProbeReport`), in the
report's style (the same stylesheet and Jinja2 environment, :mod:`lab.report.pages`), written
beside its JSON; and the link from a probe's page to the lab's prediction over that link."""

from __future__ import annotations

from pathlib import Path

from lab.host import files
from lab.probe.findings import ProbeReport
from lab.probe.syntaxes import TRANSFER_SYNTAXES
from lab.report import pages


def grid(report: ProbeReport) -> list[tuple[str, list[str]]]:
    """One row per modality, one cell per transfer syntax: yes / no."""
    assert report.dicom is not None
    rows: dict[str, dict[str, str]] = {}
    for c in report.dicom.contexts:
        rows.setdefault(c.modality, {})[c.transfer_syntax] = "yes" if c.accepted else "no"
    return [(m, [cells.get(ts, "-") for ts in TRANSFER_SYNTAXES]) for m, cells in rows.items()]


def render(report: ProbeReport, json_name: str = "probe.json") -> str:
    """The page's HTML."""
    has_contexts = report.dicom is not None and bool(report.dicom.contexts)
    return pages.render("probe.html", r=report, json_name=json_name,
                        syntaxes=list(TRANSFER_SYNTAXES.values()),
                        grid=grid(report) if has_contexts else [])


def write(report: ProbeReport, html: Path, json_name: str = "probe.json") -> None:
    """Write the page (atomically: a reader never sees half of it)."""
    files.write_text(html, render(report, json_name))


def link_prediction(probe_json: Path, prediction: Path) -> ProbeReport:
    """Record in a probe's JSON (and its page, ``probe.html`` beside it, if there is one)
    that ``prediction`` holds the lab's prediction over the link it measured."""
    report = ProbeReport.model_validate_json(probe_json.read_text(encoding="utf-8"))
    report.prediction = str(prediction.resolve())
    files.write_text(probe_json, report.model_dump_json(indent=2))
    page = probe_json.with_suffix(".html")
    if page.exists():
        write(report, page, probe_json.name)
    return report
