"""``teleradlab sweep --cluster local:N`` / ``--scheduler ADDRESS``: the cases of a sweep as tasks
of a Dask distributed cluster, one lab host per worker, results as if from one machine.

What is distributed is exactly what the single-machine runner does one after the other: each
group of cases that share a lab (:func:`runner.groups`) is one Dask task, asking
``resources={"lab": 1}`` so a worker runs as many labs at once as it was started with (one,
unless ``teleradlab worker --labs N``). The task runs on the worker through the runner's own
:meth:`runner.SweepRun.run_group` (build with :func:`seam.build_lab`, a ``run`` per case with
:func:`seam.run_case`, a rebuild after a failed case, every case failed with the build's error
when the lab cannot be built) into a private folder of the worker, and sends back each case's
state entry and files (all but the generated objects, which the seed makes again). The client
keeps the sweep's one ``state.json`` and table, so ``--resume`` and ``--retry-failed`` work as
for a local sweep, across clusters.

Lab names stay unique across workers: the group's lab is ``PREFIX-N`` (the sweep's ``--name`` and
the group's number), as on one machine. A task is idempotent: before building it removes a lab
of that one name left on its host (by :func:`lifecycle.down`, never a general clean) and its
working folder, so when Dask reruns the task of a worker that died mid-case (on another worker,
or on the restarted one) it starts from nothing; what the dead worker left on another host
carries the lab's name and is removed by ``teleradlab clean`` there.

Each finished case is also announced as it happens (a Dask event on topic :data:`TOPIC`) for the
progress display; its row reaches the table when its group's task returns. ``distributed`` is
imported here only, and this module only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, as_completed, get_worker

from lab.errors import LabError, LabNotFoundError
from lab.host import files, programs
from lab.runtime import lifecycle
from lab.study.sweep import runner, table
from lab.study.sweep.spec import Case, Sweep

TOPIC = "teleradlab-sweep"
#: The Dask resource a lab takes: a worker started with ``lab=N`` runs N labs at once.
RESOURCE = "lab"
#: Case files not sent back: the generated studies (made again from the sweep's seed).
NOT_SENT = ("data",)

Event = dict[str, Any]


@dataclass(frozen=True)
class GroupTask:
    """One group of cases (one lab), as sent to a worker."""

    sweep: Sweep  # the cases of this group only, with the whole sweep's spec
    group_no: int
    prefix: str
    backend: str

    @property
    def lab_name(self) -> str:
        return f"{self.prefix}-{self.group_no}"


@dataclass
class CaseOutcome:
    case_id: str
    state: dict[str, Any]  # the case's entry of the worker's state.json
    files: dict[str, bytes]  # path in the case folder -> content


@dataclass
class GroupOutcome:
    worker: str
    host: str
    cases: list[CaseOutcome] = field(default_factory=list)
    builds: list[dict[str, Any]] = field(default_factory=list)


def _identity() -> tuple[str, str]:
    """(Dask worker address, host name) of the process running a task ('' off a worker)."""
    try:
        address = str(get_worker().address)
    except ValueError:
        address = ""
    return address, socket.gethostname()


def _emit(event: Event) -> None:
    with contextlib.suppress(ValueError):  # not on a worker (a direct call): nobody listens
        get_worker().log_event(TOPIC, event)


class _WorkerRun(runner.SweepRun):
    """The runner's own group loop, into a private folder, announcing each case."""

    def __init__(self, task: GroupTask, out: Path, emit: Callable[[Event], None]) -> None:
        super().__init__(task.sweep, out, False, task.prefix, lambda _: None,
                         backend=task.backend)
        self.emit, self.identity = emit, _identity()

    def _run_one(self, lab: Any, case: Case) -> None:
        self.emit({"kind": "started", "case": case.case_id, "lab": lab.name,
                   "worker": self.identity[0], "host": self.identity[1]})
        super()._run_one(lab, case)

    def _finish(self, case: Case, status: str, error: str, seconds: float) -> None:
        super()._finish(case, status, error, seconds)
        self.folder(case).mkdir(parents=True, exist_ok=True)  # none when the lab was not built
        files.write_json(self.folder(case) / table.WORKER_JSON,
                         {"worker": self.identity[0], "host": self.identity[1]})
        self.emit({"kind": "finished", "case": case.case_id, "status": status, "error": error,
                   "seconds": seconds, "worker": self.identity[0], "host": self.identity[1]})

    def write_table(self) -> None:
        """The client writes the one table; nothing to write here."""


def _collect(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in NOT_SENT}


def work_dir(lab_name: str) -> Path:
    """The task's folder on its worker: named after its lab (unique on a host while the lab
    runs), so that a rerun removes what a killed attempt left there too."""
    return Path(tempfile.gettempdir()) / f"teleradlab-sweep-{lab_name}"


def run_group_task(task: GroupTask, emit: Callable[[Event], None] = _emit) -> GroupOutcome:
    """Run one group on this host (the Dask task). Idempotent: a lab of the same name left here
    by an earlier attempt is removed first (that one name only)."""
    with contextlib.suppress(LabNotFoundError):
        lifecycle.down(task.lab_name, backend=task.backend)
    address, host = _identity()
    emit({"kind": "building", "lab": task.lab_name, "worker": address, "host": host})
    work = work_dir(task.lab_name)
    shutil.rmtree(work, ignore_errors=True)  # an earlier attempt's, like its lab
    try:
        run = _WorkerRun(task, work, emit)
        run.run_group(task.group_no, list(task.sweep.cases))
        outcome = GroupOutcome(address, host, builds=run.result.builds)
        for case in task.sweep.cases:
            state = run.state.cases.get(case.case_id)
            if state is not None:
                outcome.cases.append(CaseOutcome(case.case_id, {**state, "worker": address,
                                                                "host": host},
                                                 _collect(run.folder(case))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return outcome



class ClusterSweepRun(runner.SweepRun):
    """The client's side: the runner's state, resume and table, each group submitted as a task
    instead of run here. ``watch`` gets every event: the workers' (building, started,
    finished) and the client's own (``say``, ``merged``, ``lost``)."""

    def __init__(self, sweep: Sweep, out: Path, resume: bool, prefix: str, client: Client,
                 watch: Callable[[Event], None], retry_failed: bool = False,
                 backend: str = "netns") -> None:
        super().__init__(sweep, out, resume, prefix,
                         lambda msg: watch({"kind": "say", "text": msg}), retry_failed, backend)
        self.client, self.watch = client, watch
        self.submitted: dict[Any, GroupTask] = {}
        self.by_id = {c.case_id: c for c in sweep.cases}

    def run_group(self, group_no: int, cases: list[Case]) -> None:
        """Submit the group's pending cases as one task (run by :meth:`execute`'s wait)."""
        pending = tuple(c for c in cases if self.state.status(c) not in self.skip)
        self.result.skipped += len(cases) - len(pending)
        if not pending:
            return
        task = GroupTask(Sweep(self.sweep.name, self.sweep.source, self.sweep.spec, pending),
                         group_no, self.prefix, self.backend)
        future = self.client.submit(run_group_task, task, resources={RESOURCE: 1}, pure=False,
                                    key=f"teleradlab-{task.lab_name}-{time.time_ns()}")
        self.submitted[future] = task

    def merge(self, outcome: GroupOutcome) -> None:
        """Take a finished group's cases into the sweep's folder, state and table."""
        self.result.builds += outcome.builds
        for got in outcome.cases:
            case = self.by_id[got.case_id]
            folder = self.folder(case)
            shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt's
            for rel, data in got.files.items():
                path = folder / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                files.write_bytes(path, data)
            info = {k: v for k, v in got.state.items() if k not in ("status", "index")}
            self._count(case, str(got.state.get("status")), str(info.get("error") or ""),
                        float(info.get("seconds") or 0.0))
            self.state.set(case, str(got.state.get("status")), **info)
        self.write_table()
        self.watch({"kind": "merged", "worker": outcome.worker, "host": outcome.host,
                    "cases": [c.case_id for c in outcome.cases]})

    def _count(self, case: Case, status: str, error: str, seconds: float) -> None:
        self.result.case_seconds[case.case_id] = seconds
        if status == "done":
            self.result.done += 1
        else:
            self.result.failed += 1
            self.result.errors[case.case_id] = error

    def lost(self, task: GroupTask, exc: BaseException) -> None:
        """A task Dask gave up on (its workers kept dying, or it raised past the runner): its
        cases are failed with why, as a lab that cannot be built fails them locally."""
        error = f"{type(exc).__name__}: {exc}"
        for case in task.sweep.cases:
            self._count(case, "failed", error, 0.0)
            self.state.set(case, "failed", lab=task.lab_name, error=error, seconds=0.0,
                           finished=time.time())
        self.write_table()
        self.watch({"kind": "lost", "lab": task.lab_name, "error": error,
                    "cases": [c.case_id for c in task.sweep.cases]})

    def execute(self) -> runner.SweepResult:
        self.client.subscribe_topic(TOPIC, lambda event: self.watch(dict(event[1])))
        self.watch({"kind": "start", "to_run": self.remaining(), "total": len(self.sweep.cases)})
        super().execute()  # sweep.json, then every group submitted through run_group
        try:
            for future in as_completed(list(self.submitted)):
                task = self.submitted[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # recorded for each of its cases, not swallowed
                    self.lost(task, exc)
                    continue
                self.merge(outcome)
        finally:
            self.client.cancel([f for f in self.submitted if not f.done()])
            self.client.unsubscribe_topic(TOPIC)
        self.write_table()
        return self.result


def local_workers(spec: str) -> int:
    """N of ``--cluster local:N`` (LabError naming the value otherwise)."""
    m = re.fullmatch(r"local:([1-9][0-9]*)", spec)
    if not m:
        raise LabError(f"--cluster {spec!r}: expected local:N (N worker processes, N >= 1)")
    return int(m.group(1))


def _check_workers(client: Client, scheduler: str, timeout: float) -> None:
    """Refuse a cluster whose tasks would wait for ever: no worker joins, or none offers the
    resource ``lab`` (a plain ``dask worker``, not ``teleradlab worker``)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise LabError(f"--scheduler {scheduler}: no worker joined within {timeout:.0f} s "
                       f"(start them with 'teleradlab worker {scheduler}')") from None
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    if not any(w.get("resources", {}).get(RESOURCE) for w in workers):
        raise LabError(f"--scheduler {scheduler}: no worker offers the resource {RESOURCE!r} "
                       f"(start them with 'teleradlab worker {scheduler}', not 'dask worker')")


@contextlib.contextmanager
def connect(cluster: str | None, scheduler: str | None,
            timeout: float = 60.0) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a local cluster of ``local:N`` worker
    processes (one lab each, listening on this machine's loopback only), closed on exit."""
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout)
        except OSError as exc:
            raise LabError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        with client:
            _check_workers(client, scheduler, timeout)
            yield client
        return
    n = local_workers(cluster or "")
    # The scheduler runs in this process: its routine INFO lines would bury the progress bar.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
                      resources={RESOURCE: 1}) as local, \
            Client(local, timeout=timeout) as client:
        yield client


def remove_own_labs(sweep: Sweep, prefix: str) -> list[str]:
    """Remove this sweep's labs (``PREFIX-N``, by their names only) still on this host: what
    workers of a local cluster stopped mid-case left when the sweep was interrupted."""
    removed = []
    for no in range(1, len(runner.groups(sweep.cases)) + 1):
        name = f"{prefix}-{no}"
        with contextlib.suppress(LabNotFoundError):
            lifecycle.down(name)
            removed.append(name)
    return removed


def run_sweep(sweep: Sweep, out: Path, *, cluster: str | None = None,
              scheduler: str | None = None, resume: bool = False, retry_failed: bool = False,
              prefix: str = "sweep", watch: Callable[[Event], None] = lambda _: None,
              backend: str = "netns") -> runner.SweepResult:
    """Run (or resume) ``sweep`` into ``out`` on a Dask cluster (``--cluster local:N`` or
    ``--scheduler ADDRESS``). A local cluster gets the local runner's checks first (root, every
    program its labs need); a remote one's workers check for themselves, and a case whose
    worker cannot build its lab is failed with that error. The dashboard's address is announced
    as a ``dashboard`` event."""
    if scheduler is None:
        local_workers(cluster or "")
        lifecycle.require_root()
        programs.require(runner.sweep_needs(sweep, backend))
    try:
        with connect(cluster, scheduler) as client:
            watch({"kind": "dashboard", "link": client.dashboard_link,
                   "workers": len(client.scheduler_info(n_workers=-1).get("workers", {}))})
            return ClusterSweepRun(sweep, out, resume, prefix, client, watch, retry_failed,
                                   backend).execute()
    finally:
        if scheduler is None:
            remove_own_labs(sweep, prefix)
