"""The report's fault section: recovery per protection and fault from the C-STORE rows' fault
columns, the baseline without a fault beside, never pooled with the fault-free tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.report import faults, render
from lab.report.data import config_label
from lab.study.sweep import table

from . import synthetic


def _with_faults() -> list[dict[str, Any]]:
    """The synthetic IPv4 unimpaired IPsec CT stores again with a rekey (recovered in 0.25 s,
    injected at 0.5 s, exact in binary) and an archive restart that broke one C-STORE."""
    base = [r for r in synthetic.records() if r["family"] == "ipv4" and r["case_wan"] == "none"
            and r["case_security"] == "ipsec" and r["modality"] == "CT" and r["case_pdu"] == 0
            and r["operation"] == "store"]
    out = []
    for r in base:
        out.append({**r, "case_id": r["case_id"] + "_rk", "fault": "rekey@0.5s",
                    "fault_node": "gw-a", "fault_at_s": 0.5, "fault_seconds": 0.25,
                    "seconds": 2.0, "retries": 0, "committed": 10})
        broken = r["repetition"] == 1
        out.append({**r, "case_id": r["case_id"] + "_ar", "fault": "archive-restart@0.5s",
                    "fault_node": "pacs", "fault_at_s": 0.5, "fault_seconds": 1.0,
                    "ok": not broken, "verified": "no" if broken else "yes", "seconds": 4.0,
                    "retries": 2 if broken else 1, "committed": 4 if broken else 10})
    return synthetic.records() + out


def test_recovery_per_protection_and_fault() -> None:
    t = faults.recovery_table(_with_faults())
    rows = {(r[0], r[1]): r for r in t.rows}
    ipsec = next(p for p, f in rows if p.startswith("ipsec") and "@" not in p)
    rekey = rows[(ipsec, "rekey@0.5s")]
    assert rekey[2:7] == ["3/3", "0.5 ± 0 s", "0.25 ± 0 s", "2 ± 0 s", "3/3"]
    broken = rows[(ipsec, "archive-restart@0.5s")]
    assert broken[4] == "1 ± 0 s" and broken[6] == "2/3"
    assert rows[(ipsec, "none (baseline)")][2] == "-"
    assert rekey[7:] == ["0", "30"]  # the SCU's retries and objects committed, summed
    assert broken[7:] == ["4", "24"]


def test_no_fault_no_rows_and_faults_never_pooled() -> None:
    assert faults.recovery_table(synthetic.records()).rows == []
    plain = {"case_security": "none", "case_profile": "", "case_cipher": "", "case_wan": "none"}
    assert config_label({**plain, "fault": "rekey@1s"}) == "none ! rekey@1s"
    assert config_label({**plain, "fault": "rekey@1s"}, fault=False) == "none"


def test_the_report_shows_the_fault_section(tmp_path: Path) -> None:
    table.write(tmp_path, _with_faults())
    html = render.write_report(tmp_path).read_text()
    assert "faults during a C-STORE" in html and "archive-restart@0.5s" in html
    assert "no run with a fault" in render.build_html(synthetic.records(), [], {})
