"""``teleradlab report`` on realistic synthetic tables: every figure is there and is a real PNG,
the tables and findings carry the numbers the data implies, and figures without data say so."""

from __future__ import annotations

import base64
import math
import re
import statistics
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from lab.report import bounds, render
from lab.report.data import by_repetition, summarise, t95
from lab.study.sweep import table

from . import synthetic

FIGURES = ("throughput", "pdu", "setup", "wan", "concurrency")


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.figures: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        if tag == "figure":
            self.figures.append(a.get("id", ""))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _report(tmp_path: Path, records: list[dict[str, Any]]) -> tuple[Path, str]:
    table.write(tmp_path, records)
    path = render.write_report(tmp_path)
    return path, path.read_text(encoding="utf-8")


def test_every_figure_is_embedded_and_written(tmp_path: Path) -> None:
    _, text = _report(tmp_path, synthetic.records())
    parser = _Images()
    parser.feed(text)
    assert parser.figures == [f"fig-{n}" for n in FIGURES] + ["fig-topology-ipv4",
                                                              "fig-topology-ipv6"]
    assert len(parser.images) == len(FIGURES) + 2
    for name, img in zip(FIGURES, parser.images, strict=False):
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1])
        w, h = png_size(data)
        assert w > 300 and h > 200
        assert (tmp_path / "figures" / f"{name}.png").read_bytes() == data
    for name, img in zip(("ipv4", "ipv6"), parser.images[len(FIGURES):], strict=True):
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert (tmp_path / "figures" / "topologies" / f"{name}.png").read_bytes() == data
        svg = (tmp_path / "figures" / "topologies" / f"{name}.svg").read_text()
        assert "WAN profile: dsl-20m-30ms, lossy-4g-20m-50ms-1pct" in svg
    assert "no data" not in text  # every figure of a full sweep has something to show
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", text), "external resource"


def _pooled(records: list[dict[str, Any]], fam: str, mode: str, wan: str) -> float:
    """Per repetition, all C-STORE bytes over all seconds; then the mean over repetitions."""
    sel = [r for r in records if r["operation"] == "store" and r["family"] == fam
           and r["case_security"] == mode and r["case_wan"] == wan]
    reps = sorted({r["repetition"] for r in sel})
    return statistics.fmean(
        sum(r["bytes"] for r in sel if r["repetition"] == k) * 8 / 1e6
        / sum(r["seconds"] for r in sel if r["repetition"] == k) for k in reps)


def test_findings_state_the_fastest_and_the_cost_with_numbers(tmp_path: Path) -> None:
    recs = synthetic.records()
    _, text = _report(tmp_path, recs)
    findings = text.split("<h2>Findings</h2>")[1].split("</ul>")[0]
    for fam, label in (("ipv4", "IPv4"), ("ipv6", "IPv6")):
        best = _pooled(recs, fam, "none", "none")
        assert f"{label}: the fastest configuration was none on {fam} (WAN none), C-STORE at " \
               f"{best:.1f} Mbit/s" in findings
        for mode, cfg in (("ipsec", "ipsec aes128gcm16-ecp256"),
                          ("tls", "tls bcp195-rfc8996 ECDHE-ECDSA-AES128-GCM-SHA256")):
            cost = (1 - _pooled(recs, fam, mode, "none") / best) * 100
            sentence = (f"{cfg} on {label} ({fam}, WAN none) cost {cost:.0f}% of the C-STORE "
                        f"throughput: ")
            assert sentence in findings
            tail = findings.split(sentence)[1].split("</li>")[0]
            assert tail.endswith("without protection, plus 20.0 ms of handshake/IKE setup."), tail
    v6, v4 = _pooled(recs, "ipv6", "none", "none"), _pooled(recs, "ipv4", "none", "none")
    assert f"IPv6 against IPv4 (none, WAN none): {v6:.1f} against {v4:.1f} Mbit/s" in findings
    assert "1 case(s) failed" in findings
    assert "NO_PROPOSAL_CHOSEN" in text  # the failed case is listed with its error


def test_tables_are_shaped_like_the_papers(tmp_path: Path) -> None:
    recs = synthetic.records()
    _, text = _report(tmp_path, recs)
    assert "C-STORE time per study" in text and "C-MOVE time per study" in text
    assert "CT (10 objects, 5.3 MB)" in text and "MR (10 objects, 2.1 MB)" in text
    assert "IPv4 none" in text and "IPv6 ipsec aes128gcm16-ecp256 @ dsl-20m-30ms" in text
    assert "Table: C-STORE throughput by maximum PDU length" in text
    assert "<td>20 ± 0 ms</td>" in text  # handshake (0.02 s) in the setup table
    assert "libipsec" in text and "0" * 40 in text  # provenance


def test_figures_without_data_say_so(tmp_path: Path) -> None:
    _, text = _report(tmp_path, synthetic.failed_only())
    parser = _Images()
    parser.feed(text)
    assert len(parser.images) == len(FIGURES) + 1  # never dropped; and the topology drawn
    assert text.count("(no data: see the figure)") == len(FIGURES)
    assert "No C-STORE succeeded" in text
    assert "ipsec aes128gcm16 were asked for and failed" in text
    assert text.count("is not available in this version") == 3


def test_a_run_folder_reports_too(tmp_path: Path) -> None:
    from lab.study.results import COLUMNS, Row, write_csv

    rows = [Row("ipv6", "ipv6", "netns", "none", op, "CT", 0, rep, 5, 2_000_000, 0.05 * rep,
                40.0 / rep, 0.003, "yes", True, "{}") for rep in (1, 2) for op in ("store", "move")]
    write_csv(tmp_path / "results.csv", rows)
    assert set(COLUMNS) <= set((tmp_path / "results.csv").read_text().splitlines()[0].split(","))
    text = render.write_report(tmp_path).read_text()
    # Repetition 1: 2 MB in 0.05 s = 320 Mbit/s; repetition 2: 2 MB in 0.1 s = 160 Mbit/s.
    assert "IPv6: the fastest configuration was none on ipv6 (WAN none), C-STORE at 240.0 " \
           "Mbit/s (95% CI " in text


def test_the_table_round_trips_through_parquet_with_types(tmp_path: Path) -> None:
    recs = synthetic.records(repetitions=2)
    csv_path, pq_path = table.write(tmp_path, recs)
    back = pq.read_table(pq_path)
    assert back.num_rows == len(recs) == len(csv_path.read_text().splitlines()) - 1
    assert str(back.schema.field("mbytes_per_s").type) == "double"
    assert str(back.schema.field("ok").type) == "bool"
    assert str(back.schema.field("case_pdu").type) == "int64"
    assert back.column("case_error").to_pylist()[-1] == "IKE negotiation failed: " \
                                                       "NO_PROPOSAL_CHOSEN"


def test_intervals_and_tcp_bounds() -> None:
    s = summarise([10.0, 12.0, 14.0])
    assert s is not None and s.mean == 12.0
    assert s.half == pytest.approx(t95(2) * 2.0 / math.sqrt(3))
    one = summarise([5.0])
    assert one is not None and one.half is None
    # Mathis et al.: 1448-byte MSS, 50 ms, 1% loss -> 1448*8/(0.05*0.1)*sqrt(1.5) bit/s.
    assert bounds.mathis_bound(0.05, 0.01) == pytest.approx(2.837e6, rel=1e-3)
    assert bounds.window_bound(0.03) == pytest.approx(6 * 1024 * 1024 * 8 / 0.03)
    # Two modalities at very different rates, identical in each repetition: no spread at all.
    rows = [{"repetition": k, "bytes": b, "seconds": t} for k in (1, 2, 3)
            for b, t in ((1_000_000, 0.1), (9_000_000, 0.1))]
    agg = by_repetition(rows)
    assert agg is not None and agg.n == 3 and agg.mean == pytest.approx(400.0)
    assert agg.half == pytest.approx(0.0, abs=1e-9)
    # The WAN layer's presets: 50 ms one way is a 100 ms round trip.
    shape = bounds.parse_preset("lossy-4g-20m-50ms-1pct")
    assert shape == bounds.WanShape("lossy-4g-20m-50ms-1pct", 20e6, 0.1, 0.01)
    custom = bounds.parse_preset("delay=40ms,rate=10mbit")
    assert custom is not None and custom.rtt == pytest.approx(0.08) and custom.rate == 10e6
    assert bounds.parse_preset("none") is None and bounds.parse_preset("lan-1g") is None
    # rows carry the WAN's numbers as applied: the name is not needed (and not trusted)
    row = {"wan_profile": "my-own", "wan_rtt_ms": "60.0", "wan_rate_mbit": "20.0",
           "wan_loss_pct": "1.0"}
    assert bounds.row_shape(row) == bounds.WanShape("my-own", 20e6, 0.06, 0.01)
    assert bounds.row_shape({**row, "wan_rtt_ms": "0.0"}) is None
    assert bounds.row_shape({"wan_profile": "dsl-20m-30ms", "wan_rtt_ms": ""}) == \
        bounds.parse_preset("dsl-20m-30ms")


def test_report_of_a_folder_without_results_says_what_to_do(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "lab", "report", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 1
    assert "no results.csv" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "report.html").exists()


def test_a_case_that_failed_before_measuring_has_one_row_with_its_error(tmp_path: Path) -> None:
    from lab.study.sweep import spec

    sweep = spec.parse("matrix: {topology: [ipv6], wan: [dsl-20m-30ms], pdu: [16384]}\n",
                       "s.yaml")
    (rec,) = table.case_records("s", sweep.cases[0], "failed", "WAN profile: no", tmp_path / "x")
    assert (rec["case_status"], rec["case_error"], rec["ok"]) == ("failed", "WAN profile: no",
                                                                  False)
    assert (rec["topology"], rec["case_wan"], rec["wan_profile"], rec["pdu"]) == (
        "ipv6", "dsl-20m-30ms", "dsl-20m-30ms", 16384)
    assert rec["seconds"] is None and rec["family"] == ""  # not measured, not zero


def test_results_text_stays_text(tmp_path: Path) -> None:
    """The templates autoescape: an error message with markup in it is shown, not obeyed."""
    records = synthetic.failed_only()
    records[0]["case_error"] = "<script>alert(1)</script> & <b>bold</b>"
    _, text = _report(tmp_path, records)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "<script>" not in text and "<b>bold</b>" not in text


#: Strings of lab/report that look like markup but only read or anchor it (browser.py).
_READ_ONLY_MARKUP = {r"<img\b[^>]*>", "</body>"}


def test_no_html_is_assembled_in_python() -> None:
    """The report's markup lives in lab/report/templates only: no string in lab/report's
    Python holds an HTML tag (but the two that read Chromium's output)."""
    import ast

    tag = re.compile(r"</?(html|head|body|p|table|caption|thead|tbody|tr|td|th|figure|img|"
                     r"figcaption|ul|li|h\d|span|div|script|style|b|a)\b", re.I)
    found = []
    for path in sorted((Path(render.__file__).parent).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and tag.search(node.value) and node.value not in _READ_ONLY_MARKUP):
                found.append((path.name, node.lineno, node.value[:60]))
    assert found == []
