"""``teleradlab run --window W --associations N`` on a real lab: the study's C-STORE is spread
over N associations, each granted the window proposed by the lab's archive, every object
verified at the PACS and again at the modality after the C-MOVE (whose sub-operations go out
with the archive's window), and the result rows say the window and associations used."""

from __future__ import annotations

from pathlib import Path

from .test_run import check_results, own_lab, run


def test_run_with_a_window_and_parallel_associations(tmp_path: Path) -> None:
    with own_lab("rb-run-window", "ipv4") as lab:
        out = tmp_path / "out"
        run("--lab", lab, "--modality", "CT", "--objects", "7", "--window", "2",
            "--associations", "3", "--out", str(out))
        rows = check_results(out, topology="ipv4", lab=lab, families={"ipv4"},
                             modalities=("CT",), objects=7)
    by_op = {r["operation"]: r for r in rows}
    assert (by_op["store"]["window"], by_op["store"]["associations"]) == ("2", "3")
    assert by_op["store"]["verified"] == by_op["move"]["verified"] == "yes"
    assert by_op["move"]["objects"] == "7"
    assert all((r["window"], r["associations"]) == ("1", "1") for r in rows
               if r["operation"] != "store")
