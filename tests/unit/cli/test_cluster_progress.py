"""The sweep's progress display on a cluster: one bar whose count, failures and per-worker state
follow the executor's events, failures and reruns printed as they happen, a rerun's finish not
counted twice."""

from __future__ import annotations

import io

from rich.console import Console

from lab.cli.cluster import SweepProgress


def _display() -> tuple[SweepProgress, io.StringIO]:
    buf = io.StringIO()
    return SweepProgress(Console(file=buf, width=200, force_terminal=False)), buf


def test_events_move_one_bar_and_print_failures_and_reruns() -> None:
    show, buf = _display()
    a, b = "tcp://10.0.0.1:1", "tcp://10.0.0.2:2"
    for event in (
        {"kind": "dashboard", "link": "http://127.0.0.1:8787/status", "workers": 2},
        {"kind": "start", "to_run": 3, "total": 4},
        {"kind": "building", "lab": "s-1", "worker": a, "host": "h1"},
        {"kind": "started", "case": "c1", "lab": "s-1", "worker": a, "host": "h1"},
        {"kind": "finished", "case": "c1", "status": "done", "error": "", "seconds": 1.0,
         "worker": a, "host": "h1"},
        {"kind": "started", "case": "c2", "lab": "s-1", "worker": a, "host": "h1"},
        # a's process dies; Dask reruns the group on b, c1 again included
        {"kind": "started", "case": "c1", "lab": "s-1", "worker": b, "host": "h2"},
        {"kind": "finished", "case": "c1", "status": "done", "error": "", "seconds": 1.0,
         "worker": b, "host": "h2"},
        {"kind": "started", "case": "c2", "lab": "s-1", "worker": b, "host": "h2"},
        {"kind": "finished", "case": "c2", "status": "failed", "error": "IKE\\n failed",
         "seconds": 2.0, "worker": b, "host": "h2"},
    ):
        show(event)
    task = show.bar.tasks[0]
    assert (task.completed, task.total, task.fields["failed"]) == (2, 3, 1)
    assert task.fields["workers"] == "10.0.0.1:1: lost  10.0.0.2:2: c2"
    text = buf.getvalue()
    assert "dashboard http://127.0.0.1:8787/status" in text
    assert "rerun c2 on 10.0.0.2:2 (h2): its worker 10.0.0.1:1 was lost mid-case" in text
    assert "rerun c1" not in text  # c1 had finished: its second run is the group's, not a loss
    assert "failed c2 on 10.0.0.2:2 (h2): IKE\\n failed" in text
    show({"kind": "lost", "lab": "s-2", "error": "KilledWorker: x", "cases": ["c2", "c3"]})
    assert (show.bar.tasks[0].completed, show.bar.tasks[0].fields["failed"]) == (3, 2)
    assert "failed c3: KilledWorker: x" in buf.getvalue()
