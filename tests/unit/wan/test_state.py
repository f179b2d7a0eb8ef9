"""The WAN state file (``wan.json``): written and read through one model, atomically; a file
written by the previous version (a hand-made dict) still reads; a damaged one is refused with
an error naming it; recording a fidelity measurement keeps the rest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic_core import PydanticSerializationError

from lab.errors import LabError
from lab.model.names import LabPaths
from lab.model.topology import Wan, WanProfile
from lab.wan.apply import WanState, read_state, record_fidelity, state_file, write_state

LAB = "i13h-unit"
WAN = Wan("dsl", WanProfile(delay_ms=20, rate_mbit=16, loss_pct=0.5), WanProfile(delay_ms=20))

#: wan.json as the dict-based writer before the model wrote it (keys, order, values).
OLD = {"wan": {"name": "dsl",
               "forward": {"delay_ms": 20, "jitter_ms": 0.0, "loss_pct": 0.5,
                           "loss_corr_pct": 0.0, "rate_mbit": 16, "reorder_pct": 0.0,
                           "duplicate_pct": 0.0, "corrupt_pct": 0.0, "limit": 0},
               "reverse": {"delay_ms": 20, "jitter_ms": 0.0, "loss_pct": 0.0,
                           "loss_corr_pct": 0.0, "rate_mbit": 0.0, "reorder_pct": 0.0,
                           "duplicate_pct": 0.0, "corrupt_pct": 0.0, "limit": 0}},
       "path": "userspace", "pid": 4242, "why": "no sch_netem here", "fidelity": {}}


@pytest.fixture
def paths(tmp_path: Path) -> LabPaths:
    paths = LabPaths(LAB, tmp_path / "run", tmp_path / "data")
    state_file(paths).parent.mkdir(parents=True)
    return paths


def test_nothing_recorded_reads_as_unimpaired(paths: LabPaths) -> None:
    assert read_state(paths) == WanState()
    assert not read_state(paths).wan.impaired


def test_round_trip_in_the_same_format_as_before(paths: LabPaths) -> None:
    state = WanState(wan=WAN, path="userspace", pid=4242, why="no sch_netem here")
    write_state(paths, state)
    assert read_state(paths) == state
    assert json.loads(state_file(paths).read_text()) == OLD
    assert os.listdir(state_file(paths).parent) == ["wan.json"]


def test_a_file_of_the_previous_version_reads(paths: LabPaths) -> None:
    state_file(paths).write_text(json.dumps(OLD, indent=2) + "\n")
    state = read_state(paths)
    assert (state.wan, state.path, state.pid) == (WAN, "userspace", 4242)


@pytest.mark.parametrize(("change", "message"), [
    ({"path": "tc"}, "path"),
    ({"colour": "red"}, "colour"),
    ({"pid": "many"}, "pid"),
])
def test_a_damaged_file_is_refused_naming_it(paths: LabPaths, change: dict[str, object],
                                             message: str) -> None:
    state_file(paths).write_text(json.dumps({**OLD, **change}))
    with pytest.raises(LabError, match=r"wan\.json is not a WAN state") as info:
        read_state(paths)
    assert message in str(info.value)


def test_fidelity_is_recorded_beside_the_state(paths: LabPaths) -> None:
    write_state(paths, WanState(wan=WAN, path="netem", why="kernel"))
    record_fidelity(paths, {"rtt_measured_ms": 40.2, "pings": 20})
    state = read_state(paths)
    assert (state.wan, state.path, state.why) == (WAN, "netem", "kernel")
    assert state.fidelity == {"rtt_measured_ms": 40.2, "pings": 20}


def test_a_failed_write_keeps_the_old_record(paths: LabPaths) -> None:
    write_state(paths, WanState(wan=WAN, path="netem"))
    before = state_file(paths).read_text()
    with pytest.raises(PydanticSerializationError):
        record_fidelity(paths, {"measured_at": object()})
    assert state_file(paths).read_text() == before
    assert os.listdir(state_file(paths).parent) == ["wan.json"]
