"""``teleradlab sweep --cluster local:2`` on real labs (all named dsk-...): a local Dask cluster of
two worker processes runs a small sweep whose table equals a single-machine run's (same cases,
same columns, every transfer verified), each row naming the worker and host that measured it;
a worker killed (SIGKILL) mid-case has its lab's cases rerun on the other worker, and nothing of
the sweep's labs is left on the machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.study.results import read_csv
from lab.study.sweep.dask_executor import work_dir

from ..conftest import REPO, leftovers, stop, teleradlab

TIMEOUT = 600
#: Two labs (IPv4, IPv6) of two plain cases each.
TWO_LABS = """\
description: four plain cases on two labs
matrix: {topology: [ipv4, ipv6], pdu: [0, 16384]}
repetitions: 1
objects: 1
"""
#: One lab of four plain cases: long enough to kill its worker mid-way.
ONE_LAB = """\
description: four plain cases on one IPv4 lab
matrix: {topology: [ipv4], pdu: [0, 16384], modality: [CT, MR]}
repetitions: 1
objects: 1
"""
MEASURED = ("seconds", "mbytes_per_s", "setup_seconds", "handshake_seconds", "worker", "host")


def _nothing_left(prefix: str) -> None:
    left = {k: [x for x in v if f"tl-{prefix}-" in x or f"/{prefix}-" in x]
            for k, v in leftovers().items()}
    assert not any(left.values()), left
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert f"{prefix}-" not in netns.stdout, netns.stdout
    assert not any(work_dir(f"{prefix}-{n}").exists() for n in (1, 2))


def _states(out: Path) -> dict[str, str]:
    cases = json.loads((out / "state.json").read_text())["cases"]
    return {c: s["status"] for c, s in cases.items()}


def _check_verified(rows: list[dict[str, str]]) -> None:
    for r in rows:
        assert r["ok"] == "True" and r["case_status"] == "done", r
        if r["operation"] in ("store", "move"):
            assert r["verified"] == "yes" and int(r["bytes"]) > 0, r


def test_a_local_cluster_gives_the_single_machine_table(tmp_path: Path) -> None:
    sweep = tmp_path / "two.yaml"
    sweep.write_text(TWO_LABS)
    teleradlab("sweep", str(sweep), "--out", str(tmp_path / "one"), "--name", "dsk-e",
               timeout=TIMEOUT)
    _nothing_left("dsk-e")
    res = teleradlab("sweep", str(sweep), "--out", str(tmp_path / "dask"), "--name", "dsk-e",
                     "--cluster", "local:2", timeout=TIMEOUT)
    _nothing_left("dsk-e")
    assert "dashboard http://127.0.0.1:" in res.stderr
    one, dask = read_csv(tmp_path / "one" / "results.csv"), read_csv(
        tmp_path / "dask" / "results.csv")
    assert list(one[0]) == list(dask[0])
    assert [r["case_id"] for r in one] == [r["case_id"] for r in dask]
    assert set(_states(tmp_path / "dask").values()) == {"done"}
    _check_verified(one)
    _check_verified(dask)
    for a, b in zip(one, dask, strict=True):
        assert {k: v for k, v in a.items() if k not in MEASURED} == {
            k: v for k, v in b.items() if k not in MEASURED}
    assert {r["worker"] for r in one} == {""}
    assert {r["host"] for r in dask} == {os.uname().nodename}
    # The two labs ran on the two workers (one lab at a time each).
    assert len({r["worker"] for r in dask}) == 2
    assert {(r["lab"], r["worker"]) for r in dask} and len({r["lab"] for r in dask}) == 2


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _worker_mid_case(cli: int, lab: str, timeout: float = 300) -> int:
    """The pid of the worker process (a child of the sweep's process) that is running a case of
    ``lab``: one of its own children works in that case's folder."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for worker in _children(cli):
            if "spawn_main" not in _cmdline(worker):
                continue
            if any(f"{work_dir(lab)}/cases/" in _cmdline(c) for c in _children(worker)):
                return worker
        time.sleep(0.05)
    raise AssertionError(f"no worker got to a case of {lab}")


def test_a_worker_killed_mid_case_has_its_cases_rerun_and_leaves_nothing(tmp_path: Path) -> None:
    sweep = tmp_path / "one.yaml"
    sweep.write_text(ONE_LAB)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "lab", "sweep", str(sweep), "--out", str(out), "--name",
            "dsk-k", "--cluster", "local:2"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        victim = _worker_mid_case(proc.pid, "dsk-k-1")
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "rerun" in stderr and "was lost mid-case" in stderr, stderr
    assert "4 cases done, 0 failed" in " ".join(stdout.split()), stdout
    _nothing_left("dsk-k")
    assert set(_states(out).values()) == {"done"}
    rows = read_csv(out / "results.csv")
    _check_verified(rows)
    assert len({r["case_id"] for r in rows}) == 4
    # Every case of the lab was measured by the worker the task was rerun on, and that is the
    # worker the progress display named as the rerun's.
    (worker,) = {r["worker"] for r in rows}
    assert f"on {worker.split('://', 1)[1]} " in stderr, stderr


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as f:
        return subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)




def test_teleradlab_worker_serves_a_sweep_given_by_scheduler_address(tmp_path: Path) -> None:
    """A scheduler on loopback, one `teleradlab worker --labs 2` (both labs at once, in one
    process), and a sweep sent with --scheduler: the same table as ever."""
    sweep = tmp_path / "two.yaml"
    sweep.write_text(TWO_LABS)
    info = tmp_path / "scheduler.json"
    scheduler = _start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                        "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                        "--scheduler-file", str(info)], tmp_path / "scheduler.log")
    worker = None
    try:
        end = time.monotonic() + 60
        while not info.exists() and time.monotonic() < end:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        worker = _start([sys.executable, "-m", "lab", "worker", address, "--labs", "2",
                         "--name", "dsk-w"], tmp_path / "worker.log")
        res = teleradlab("sweep", str(sweep), "--out", str(tmp_path / "out"), "--name", "dsk-s",
                         "--scheduler", address, timeout=TIMEOUT)
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                stop(proc, timeout=30)
    _nothing_left("dsk-s")
    assert "4 cases done, 0 failed" in " ".join(res.stdout.split()), res.stdout
    rows = read_csv(tmp_path / "out" / "results.csv")
    _check_verified(rows)
    assert len({r["case_id"] for r in rows}) == 4 and len({r["lab"] for r in rows}) == 2
    assert len({r["worker"] for r in rows}) == 1
    # --labs 2: the two labs' cases ran at the same time on the one worker
    state = json.loads((tmp_path / "out" / "state.json").read_text())["cases"]
    lab_of = {r["case_id"]: r["lab"] for r in rows}
    spans = {lab: (min(s["finished"] - s["seconds"] for c, s in state.items() if lab_of[c] == lab),
                   max(s["finished"] for c, s in state.items() if lab_of[c] == lab))
             for lab in ("dsk-s-1", "dsk-s-2")}
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1, spans
    log = " ".join((tmp_path / "worker.log").read_text().split())
    assert "(dsk-w) joined" in log and "2 lab(s) at a time" in log, log
