"""The report's object-security part: the cost of each PS3.15 step beside the transport, from
rows with known costs, and the threat table (channel vs object security)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.report import objects, render
from lab.report.data import config_label
from lab.study.sweep import table

from . import synthetic


def _with_object_security() -> list[dict[str, Any]]:
    """The synthetic sweep's IPv4 unimpaired plain CT cases again with sign+deid (store rows
    carrying 0.25 s of signing, 0.5 s of de-identification, 0.125 s of verification, 0.375 s
    of re-identification: exact in binary, so intervals are exactly 0) and a courier row per
    repetition (export 1 s, import 3 s)."""
    base = [r for r in synthetic.records() if r["family"] == "ipv4" and r["case_wan"] == "none"
            and r["case_security"] == "none" and r["modality"] == "CT" and r["case_pdu"] == 0]
    out = []
    for r in base:
        costs = ({"sign_seconds": 0.25, "deid_seconds": 0.5, "verify_seconds": 0.125,
                  "reid_seconds": 0.375} if r["operation"] == "store"
                 else {"verify_seconds": 0.125})
        out.append({**r, "case_id": r["case_id"] + "_sd", "object_security": "sign+deid",
                    "seconds": 1.0, **costs})
        if r["operation"] == "store":
            out.append({**r, "case_id": r["case_id"] + "_sd", "object_security": "sign+deid",
                        "operation": "courier", "family": "", "seconds": 4.0,
                        "export_seconds": 1.0, "import_seconds": 3.0})
    return synthetic.records() + out


def test_object_security_is_never_pooled_with_the_plain_transport() -> None:
    plain = {"case_security": "none", "case_profile": "", "case_cipher": "", "case_wan": "none"}
    assert config_label(plain) == "none"
    assert config_label({**plain, "object_security": "sign+deid"}) == "none + sign+deid"
    assert config_label({**plain, "object_security": "sign+deid"}, objects=False) == "none"


def test_the_cost_table_gives_each_step_beside_its_transfer() -> None:
    t = objects.cost_table(_with_object_security())
    rows = {(r[0], r[1], r[2]): r for r in t.rows}
    assert {k for k in rows if k[1] != "none"} == {
        ("none", "sign+deid", "store"), ("none", "sign+deid", "move"),
        ("secure media (courier)", "sign+deid", "courier")}
    # the plain transport of the same results beside it, as the baseline, without steps
    baseline = dict(zip(t.head, rows[("none", "none", "store")], strict=True))
    assert baseline["sign (sender)"] == "-" and baseline["steps / transfer"] == "-"
    assert t.rows[-1][0] == "secure media (courier)"  # after every transport
    store = rows[("none", "sign+deid", "store")]
    head = t.head
    cell = dict(zip(head, store, strict=True))
    assert cell["transfer"] == "1 ± 0 s"
    assert (cell["sign (sender)"], cell["de-identify (sender)"]) == ("0.25 ± 0 s", "0.5 ± 0 s")
    assert (cell["verify (receiver)"], cell["re-identify (PACS site)"]) == ("0.125 ± 0 s",
                                                                           "0.375 ± 0 s")
    assert cell["steps / transfer"] == "125%"  # 0.25 + 0.5 + 0.125 + 0.375 s over 1 s
    courier = dict(zip(head, rows[("secure media (courier)", "sign+deid", "courier")], strict=True))
    assert (courier["export (courier)"], courier["import (courier)"]) == ("1 ± 0 s", "3 ± 0 s")
    assert courier["transfer"] == "4 ± 0 s" and courier["steps / transfer"] == "-"
    assert objects.cost_table(synthetic.records()).rows == []  # plain results: no such rows


def test_the_report_shows_costs_and_threats(tmp_path: Path) -> None:
    table.write(tmp_path, _with_object_security())
    text = render.write_report(tmp_path).read_text(encoding="utf-8")
    assert "what object security costs per study" in text and "re-identify (PACS site)" in text
    assert "threats covered by channel security" in text
    for threat, _ in objects.THREATS:
        assert threat in text
    assert "IPv4 none + sign+deid" in text  # its own column in the C-STORE table
    plain = tmp_path / "plain"
    plain.mkdir()
    table.write(plain, synthetic.records())
    assert "no run with object security or the courier" in render.write_report(
        plain).read_text(encoding="utf-8")
