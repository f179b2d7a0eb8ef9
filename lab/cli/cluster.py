"""``teleradlab sweep --cluster local:N`` / ``--scheduler ADDRESS``: the sweep on Dask, with one
progress bar for the whole sweep (cases finished, failures, ETA, what each worker is doing) and
every failure printed as it happens. Imported by :mod:`lab.cli.studies` only when a cluster is
asked for, so that the command line does not load ``distributed`` at every start."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from lab.study.sweep import dask_executor
from lab.study.sweep.runner import SweepResult
from lab.study.sweep.spec import Sweep


def _short(worker: str) -> str:
    """A worker's address without its scheme (tcp://10.1.2.3:4567 -> 10.1.2.3:4567)."""
    return worker.split("://", 1)[-1] or "?"


class SweepProgress:
    """Turns the executor's events into one bar: cases finished of those to run, failed so far,
    ETA, and each worker's current lab or case; failures and lost tasks printed above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("failed {task.fields[failed]}"), TimeRemainingColumn(),
                            TextColumn("{task.fields[workers]}"), console=console)
        self.task: TaskID | None = None
        self.workers: dict[str, str] = {}
        self.finished: set[str] = set()
        self.ran_on: dict[str, str] = {}  # case -> the worker that last started it
        self.failed = 0
        self.lock = threading.Lock()  # events come from Dask's thread and from the client's

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            self._on(event)

    def _on(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "start":
            self.task = self.bar.add_task("sweep", total=event["to_run"], failed=0, workers="")
        elif kind == "dashboard":
            self.console.print(f"Dask: {event['workers']} workers; dashboard {event['link']} "
                               "(served when the scheduler has bokeh)")
        elif kind == "say":
            self.console.print(escape(str(event["text"])), soft_wrap=True)
        elif kind == "building":
            self.workers[_short(event["worker"])] = f"building {event['lab']}"
        elif kind == "started":
            self._started(str(event["case"]), _short(event["worker"]), str(event["host"]))
        elif kind == "finished":
            self._finished(str(event["case"]), str(event["status"]), str(event["error"]),
                           f" on {_short(event['worker'])} ({event['host']})")
        elif kind == "merged":
            self.workers[_short(event["worker"])] = "idle"
        elif kind == "lost":
            for case in event["cases"]:
                self._finished(str(case), "failed", str(event["error"]), "")
        if self.task is not None:
            self.bar.update(self.task, completed=len(self.finished), failed=self.failed,
                            workers="  ".join(f"{w}: {s}" for w, s in sorted(self.workers.items())))

    def _started(self, case: str, worker: str, host: str) -> None:
        self.workers[worker] = case
        before = self.ran_on.get(case)
        self.ran_on[case] = worker
        if before is not None and before != worker and case not in self.finished:
            self.workers[before] = "lost"
            self.console.print(f"[yellow]rerun[/yellow] {escape(case)} on {worker} ({host}): "
                               f"its worker {before} was lost mid-case", soft_wrap=True)

    def _finished(self, case: str, status: str, error: str, where: str) -> None:
        if case in self.finished:  # a rerun of a lost worker's group
            return
        self.finished.add(case)
        if status != "done":
            self.failed += 1
            self.console.print(f"[red]failed[/red] {escape(case)}{escape(where)}: "
                               f"{escape(' '.join(error.split())[:300])}", soft_wrap=True)
        elif error:
            self.console.print(f"[yellow]not ok[/yellow] {escape(case)}{escape(where)}: "
                               f"{escape(error)}", soft_wrap=True)


def run(sweep: Sweep, out_dir: Path, console: Console, **options: Any) -> SweepResult:
    """Run ``sweep`` on the cluster of ``options`` (dask_executor.run_sweep's keywords)."""
    display = SweepProgress(console)
    with display.bar:
        return dask_executor.run_sweep(sweep, out_dir, watch=display, **options)
