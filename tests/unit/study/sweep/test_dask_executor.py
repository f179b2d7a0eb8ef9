"""The Dask executor without root: an in-process Dask cluster (two workers, threads, no TCP)
runs a sweep whose labs and runs are stand-ins (the building and measuring are tested on real
labs in tests/integration/study/test_sweep_dask.py); what is checked is the executor's own work:
the same groups and lab names as the local runner, the same table, worker provenance, resume
and retry across clusters, a task that dies recorded for its cases, and the one-name cleanup."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from distributed import Client, LocalCluster

from lab.errors import LabError, LabNotFoundError
from lab.runtime import lifecycle
from lab.study import run as run_module
from lab.study.results import Row, read_csv, write_csv
from lab.study.sweep import dask_executor, runner, seam, spec

SWEEP = """
description: two labs of two cases each
matrix:
  topology: [ipv4, ipv6]
  pdu: [0, 16384]
objects: 1
"""


class Labs:
    """Stand-ins for lifecycle.up/down and run.execute, recording what was asked (thread-safe:
    the in-process workers are threads)."""

    def __init__(self, fail: tuple[str, ...] = (), crash: tuple[str, ...] = ()) -> None:
        self.fail, self.crash = fail, crash
        self.unbuildable: tuple[str, ...] = ()
        self.built: list[str] = []
        self.downs: list[str] = []
        self.ran: list[tuple[str, str]] = []  # (lab, case pdu/topology)
        self.lock = threading.Lock()
        self.up: set[str] = set()

    def build_lab(self, up: Any, name: str, **_: Any) -> Any:
        if up["topology"].stem in self.unbuildable:
            raise LabError(f"cannot build {up['topology'].stem} here")
        with self.lock:
            assert name not in self.up, f"two labs named {name} at once"
            self.up.add(name)
            self.built.append(name)
        return SimpleNamespace(name=name, topology=up["topology"].stem)

    def down(self, name: str, *_: Any, **__: Any) -> list[str]:
        with self.lock:
            self.downs.append(name)
            if name not in self.up:
                raise LabNotFoundError(f"no lab named {name!r} is running")
            self.up.discard(name)
        return [name]

    def run_case(self, lab: Any, params: Any, out: Path, **_: Any) -> run_module.RunResult:
        key = f"{lab.topology}-pdu{params['pdu']}"
        with self.lock:
            self.ran.append((lab.name, key))
        if key in self.crash:
            raise RuntimeError(f"worker-side bug in {key}")
        if key in self.fail:
            raise LabError(f"transfer failed in {key}")
        out.mkdir(parents=True)
        (out / "data").mkdir()
        (out / "data" / "big.dcm").write_bytes(b"x" * 1000)  # generated: not sent back
        row = Row(lab.topology, lab.topology, "netns", "none", "store", "CT", params["pdu"], 1,
                  1, 1000 + params["pdu"], 0.01, 0.1, 0.002, "yes", True, "")
        write_csv(out / "results.csv", [row])
        (out / "run.json").write_text(f'{{"lab": "{lab.name}", "kernel": "6.1-test", '
                                      '"data_paths": {"esp": "none", "wan": "none"}}')
        return run_module.RunResult(out, [row])


@pytest.fixture
def labs(monkeypatch: pytest.MonkeyPatch) -> Labs:
    fake = Labs()
    monkeypatch.setattr(seam, "build_lab", fake.build_lab)
    monkeypatch.setattr(seam, "run_case", fake.run_case)
    monkeypatch.setattr(lifecycle, "down", fake.down)
    return fake


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # inproc transport; the HTTP servers Dask starts anyway listen on loopback only
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
                      resources={"lab": 1}) as cluster, Client(cluster) as c:
        yield c


def _sweep() -> spec.Sweep:
    return spec.parse(SWEEP, "/nowhere/mini.yaml")


def _cluster_run(out: Path, client: Client, events: list[dict[str, Any]] | None = None,
                 **kw: Any) -> runner.SweepResult:
    sink = events.append if events is not None else (lambda _: None)
    return dask_executor.ClusterSweepRun(_sweep(), out, kw.pop("resume", False), "dsk-u",
                                         client, sink, **kw).execute()


def test_cluster_sweep_writes_the_local_runners_table(tmp_path: Path, labs: Labs,
                                                      client: Client) -> None:
    runner.SweepRun(_sweep(), tmp_path / "local", False, "dsk-u", lambda _: None).execute()
    events: list[dict[str, Any]] = []
    result = _cluster_run(tmp_path / "dask", client, events)
    assert (result.done, result.failed) == (4, 0)
    local, dask = read_csv(tmp_path / "local" / "results.csv"), read_csv(
        tmp_path / "dask" / "results.csv")
    assert list(local[0]) == list(dask[0])  # same columns, in the same order
    assert [r["case_id"] for r in local] == [r["case_id"] for r in dask]
    for a, b in zip(local, dask, strict=True):
        assert {k: v for k, v in a.items() if k not in ("worker", "host")} == {
            k: v for k, v in b.items() if k not in ("worker", "host")}
        assert a["worker"] == a["host"] == ""
        assert b["worker"].startswith("inproc://") and b["host"] == socket.gethostname()
        assert b["lab"] in ("dsk-u-1", "dsk-u-2") and b["kernel"] == "6.1-test"
    # Each lab name first cleared (that one name only), built once, taken down once.
    assert sorted(labs.built) == ["dsk-u-1", "dsk-u-1", "dsk-u-2", "dsk-u-2"]
    assert set(labs.downs) == {"dsk-u-1", "dsk-u-2"} and not labs.up
    case = (tmp_path / "dask" / "cases" / dask[0]["case_id"])
    assert (case / "results.csv").is_file() and not (case / "data").exists()
    finished = [e for e in events if e["kind"] == "finished"]
    assert sorted(e["case"] for e in finished) == sorted(r["case_id"] for r in dask)
    assert {e["kind"] for e in events} >= {"start", "building", "started", "finished", "merged"}


def test_resume_and_retry_failed_work_across_clusters(tmp_path: Path, labs: Labs,
                                                      client: Client) -> None:
    labs.fail = ("ipv6-pdu16384",)
    first = _cluster_run(tmp_path, client)
    assert (first.done, first.failed) == (3, 1)
    assert "transfer failed in ipv6-pdu16384" in next(iter(first.errors.values()))
    assert len(labs.ran) == 4
    # A resume runs nothing more; --retry-failed reruns the failed case alone, on its own lab.
    again = _cluster_run(tmp_path, client, resume=True)
    assert (again.skipped, len(labs.ran)) == (4, 4)
    labs.fail = ()
    retried = _cluster_run(tmp_path, client, resume=True, retry_failed=True)
    assert (retried.done, retried.skipped) == (1, 3)
    assert labs.ran[4:] == [("dsk-u-2", "ipv6-pdu16384")]
    assert runner.failed_cases(tmp_path) == {}


def test_a_task_that_dies_fails_its_cases_with_why(tmp_path: Path, labs: Labs,
                                                   client: Client) -> None:
    labs.crash = ("ipv4-pdu0",)  # not a LabError: the runner lets it through, the task raises
    events: list[dict[str, Any]] = []
    result = _cluster_run(tmp_path, client, events)
    assert (result.done, result.failed) == (2, 2)
    assert all(e.startswith("RuntimeError: worker-side bug in ipv4-pdu0")
               for e in result.errors.values())
    assert [e["lab"] for e in events if e["kind"] == "lost"] == ["dsk-u-1"]
    assert not labs.up  # the runner's finally took its lab down


def test_a_lab_that_cannot_be_built_fails_its_cases_alone(tmp_path: Path, labs: Labs,
                                                         client: Client) -> None:
    labs.unbuildable = ("ipv6",)
    result = _cluster_run(tmp_path, client)
    assert (result.done, result.failed) == (2, 2)
    assert set(result.errors.values()) == {"cannot build ipv6 here"}
    rows = read_csv(tmp_path / "results.csv")
    failed = [r for r in rows if r["case_status"] == "failed"]
    assert len(failed) == 2 and all(r["case_topology"] == "ipv6" for r in failed)


def test_a_task_first_removes_a_leftover_of_its_own_lab_name(labs: Labs) -> None:
    labs.up.add("dsk-u-2")  # what a worker killed mid-case left on this host
    sweep = _sweep()
    task = dask_executor.GroupTask(spec.Sweep(sweep.name, sweep.source, sweep.spec,
                                              sweep.cases[2:]), 2, "dsk-u", "netns")
    outcome = dask_executor.run_group_task(task, emit=lambda _: None)
    assert labs.downs[0] == "dsk-u-2" and set(labs.downs) == {"dsk-u-2"}
    assert [c.state["status"] for c in outcome.cases] == ["done", "done"]
    assert outcome.cases[0].state["host"] == socket.gethostname()


@pytest.mark.parametrize("bad", ["local", "local:0", "local:x", "remote:2", ""])
def test_bad_cluster_values_are_named(bad: str) -> None:
    with pytest.raises(LabError, match="expected local:N"):
        dask_executor.local_workers(bad)
    assert dask_executor.local_workers("local:3") == 3


@pytest.mark.parametrize(("workers", "why"), [(0, "no worker joined within 1 s"),
                                               (1, "no worker offers the resource 'lab'")])
def test_a_cluster_whose_tasks_would_wait_for_ever_is_refused(workers: int, why: str) -> None:
    cluster = LocalCluster(n_workers=workers, processes=False, dashboard_address="127.0.0.1:0",
                           worker_dashboard_address="127.0.0.1:0")
    try:
        with pytest.raises(LabError, match=why), dask_executor.connect(
                None, cluster.scheduler_address, timeout=1):
            pass
    finally:
        cluster.close()
