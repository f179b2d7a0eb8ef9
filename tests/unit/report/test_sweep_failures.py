"""Which cases of a sweep failed, read back from its state file as the runner writes it: what
``teleradlab report --check`` (and so ``scripts/demo``) exits 1 on."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.cli.studies import report
from lab.errors import LabError
from lab.study.sweep import spec, table
from lab.study.sweep.runner import State, failed_cases

from . import synthetic


def test_failed_and_not_ok_cases_are_listed_with_why(tmp_path: Path) -> None:
    sweep = spec.load(spec.resolve_path("demo"))
    state = State(tmp_path, sweep, resume=False)
    first, second, third, fourth = sweep.cases[:4]
    state.set(first, "done", error="")
    state.set(second, "done", error="1 of 27 operations not ok")
    state.set(third, "failed", error="CommandError: nsenter: failed to execute nft")
    state.set(fourth, "running")  # interrupted: not a success either
    assert failed_cases(tmp_path) == {
        second.case_id: "1 of 27 operations not ok",
        third.case_id: "CommandError: nsenter: failed to execute nft",
        fourth.case_id: "running",
    }


def test_a_sweep_without_failures_lists_none(tmp_path: Path) -> None:
    sweep = spec.load(spec.resolve_path("demo"))
    state = State(tmp_path, sweep, resume=False)
    for case in sweep.cases:
        state.set(case, "done", error="")
    assert failed_cases(tmp_path) == {}


def test_a_folder_without_a_sweep_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="holds no sweep"):
        failed_cases(tmp_path)


@pytest.mark.parametrize("bad", [False, True])
def test_report_check_writes_the_report_then_names_failed_cases(tmp_path: Path,
                                                                bad: bool) -> None:
    sweep = spec.load(spec.resolve_path("demo"))
    state = State(tmp_path, sweep, resume=False)
    for case in sweep.cases:
        state.set(case, "done", error="")
    if bad:
        state.set(sweep.cases[1], "done", error="1 of 27 operations not ok")
    table.write(tmp_path, synthetic.records())
    result = CliRunner().invoke(report, ["--check", str(tmp_path)])
    assert (tmp_path / "report.html").is_file()
    assert result.exit_code == (1 if bad else 0), result.output
    assert (sweep.cases[1].case_id in result.output) == bad
    assert ("1 of 27 operations not ok" in result.output) == bad
