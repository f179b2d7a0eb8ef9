"""The demo (``scripts/demo``: topologies/sweeps/demo.yaml) gives a report with data in every
figure and table: its matrix asks for what each figure needs (protections, an unimpaired and a
delayed WAN, two PDU sizes), and a table shaped as its cases would write it, fed to the real
report, leaves no figure saying "no data". (tests/integration/study/test_sweep.py checks the same on
the report of a real, reduced demo run.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lab.model.wan import parse_option
from lab.report import bounds, figures, render
from lab.study.results import LOCK_FILE, Row, provenance, wan_columns, write_csv
from lab.study.sweep import spec, table
from lab.study.sweep.spec import Case

#: What a C-STORE and a C-MOVE of each modality move in the demo's runs (bytes), roughly.
SIZES = {"CT": 2_100_000, "MR": 530_000, "CR": 41_000_000}
MBIT = {"none": 900.0, "ipsec": 55.0, "tls": 400.0}


def _rows(case: Case) -> list[Row]:
    """What a run of ``case`` writes: echo, then store and move per repetition."""
    mode, wan = case.security.mode, case.wan
    shape = bounds.parse_preset(wan)
    rate = min(MBIT[mode], shape.rate / 1e6 if shape and shape.rate else MBIT[mode])
    size = SIZES[case.modality]
    cols = {} if wan == "none" else wan_columns(parse_option(wan), "userspace")
    out = [Row("ipv6", "ipv6", "netns", mode, "echo", "", case.pdu, 1, 0, 0, 0.001, 0.0, 0.002,
               "", True, "", **cols)]
    waits = 4 * shape.rtt if shape and case.window == 1 else 0.0  # a round trip per object
    for rep in (1, 2, 3):
        for op in ("store", "move"):
            seconds = size * 8 / (rate * 1e6) * (1 + 0.02 * rep) + waits
            out.append(Row("ipv6", "ipv6", "netns", mode, op, case.modality, case.pdu, rep, 4,
                           size, seconds, size / seconds / 1e6, 0.004, "yes", True, "",
                           window=case.window if op == "store" else 1,
                           handshake_seconds=0.0 if mode == "none" else 0.01,
                           esp_path="libipsec" if mode == "ipsec" else "", **cols))
    return out


def _demo_records(tmp_path: Path) -> list[dict[str, Any]]:
    sweep = spec.load(spec.resolve_path("demo"))
    records: list[dict[str, Any]] = []
    for case in sweep.cases:
        folder = tmp_path / "cases" / case.case_id
        folder.mkdir(parents=True)
        write_csv(folder / "results.csv", _rows(case))
        records += table.case_records("demo", case, "done", "", folder)
    return records


def test_the_demo_asks_for_what_every_figure_needs() -> None:
    cases = spec.load(spec.resolve_path("demo")).cases
    assert {c.security.mode for c in cases} == {"none", "ipsec", "tls"}
    assert {c.topology.stem for c in cases} == {"ipv6"}
    wans = {c.wan for c in cases}
    assert "none" in wans and len(wans) == 2
    (preset,) = wans - {"none"}
    shape = bounds.parse_preset(preset)
    assert shape is not None and shape.rtt > 0  # the WAN figure plots against RTT
    assert len({c.pdu for c in cases}) == 2  # the PDU figure compares two sizes
    assert {c.window for c in cases} == {1, 16}  # the window figure compares two windows
    # every protection over both paths, both PDU sizes, every modality, both windows
    assert len(cases) == 3 * len(wans) * 2 * len({c.modality for c in cases}) * 2


def test_the_demo_report_has_data_in_every_figure_and_table(tmp_path: Path) -> None:
    records = _demo_records(tmp_path)
    charts = figures.all_charts(records)
    assert [c.name for c in charts if not c.has_data] == []
    out = tmp_path / "report"
    out.mkdir()
    table.write(out, records)
    (out / "sweep.json").write_text(json.dumps(provenance({"sweep": "demo"})))
    text = render.write_report(out).read_text(encoding="utf-8")
    assert "no data" not in text  # no figure, no table says it has nothing to show
    assert "Table: cases that failed (recorded, not measured)</b>: none" in text
    assert "metro-100m-5ms" in text and "16384" in text
    lock = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    assert f"<td>requirements.lock sha256</td><td>{lock}</td>" in text
