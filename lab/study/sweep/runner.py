"""``teleradlab sweep``: every case of a sweep, one lab per group of cases, resumable.

Cases are grouped by what needs a lab of its own (topology, security, WAN profile: the ``up``
options of :mod:`lab.study.sweep.seam`); each group's lab is built once and every case of the group
is a ``run`` on it, so a case costs a run, not a build. A case that raises rebuilds the lab before
the next one (it may have broken it).

State (``state.json`` in the output folder, replaced atomically after every change) records each
case as running, done or failed; ``--resume`` skips done and failed cases and reruns the one that
was running when the sweep stopped, from a clean case folder.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.backends.base import Lab
from lab.errors import LabError
from lab.host import files, programs
from lab.runtime import lifecycle
from lab.study.results import provenance
from lab.study.sweep import seam, table
from lab.study.sweep.spec import Case, Sweep

STATE = "state.json"
FINISHED = ("done", "failed")


@dataclass
class SweepResult:
    out: Path
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    builds: list[dict[str, Any]] = field(default_factory=list)  # lab, seconds, ok
    case_seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    csv: Path | None = None
    parquet: Path | None = None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    files.write_json(path, doc, default=str)


class State:
    """Per-case status, persisted after every change so that a kill loses at most one case."""

    def __init__(self, out: Path, sweep: Sweep, resume: bool) -> None:
        self.path = out / STATE
        self.cases: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            if not resume:
                raise LabError(f"{out} already holds a sweep: continue it with --resume, "
                               "or choose another --out")
            self.cases = json.loads(self.path.read_text(encoding="utf-8"))["cases"]
        self.sweep = sweep

    def status(self, case: Case) -> str:
        return str(self.cases.get(case.case_id, {}).get("status", "pending"))

    def set(self, case: Case, status: str, **extra: Any) -> None:
        self.cases[case.case_id] = {"status": status, "index": case.index, **extra}
        _write_json(self.path, {"sweep": self.sweep.source, "cases": self.cases})


def failed_cases(out: Path) -> dict[str, str]:
    """The cases of the sweep in ``out`` that did not succeed, with why: failed ones (an error
    raised, a lab that could not be built) and done ones with operations not ok (a C-MOVE that
    got no response, an object that did not verify). Read from ``state.json``; LabError if the
    folder holds no sweep."""
    path = out / STATE
    if not path.is_file():
        raise LabError(f"{out} holds no sweep ({STATE} is missing)")
    cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
    return {case_id: str(info.get("error") or info.get("status"))
            for case_id, info in sorted(cases.items(), key=lambda kv: kv[1].get("index", 0))
            if info.get("status") != "done" or info.get("error")}


def groups(cases: tuple[Case, ...]) -> list[list[Case]]:
    """Cases by lab key, in the order their first case appears in the matrix."""
    by_key: dict[tuple[str, str, str], list[Case]] = {}
    for case in cases:
        by_key.setdefault(case.lab_key, []).append(case)
    return list(by_key.values())


def _eta(started: float, finished_now: int, remaining: int) -> str:
    if not finished_now:
        return "ETA unknown"
    secs = int((time.monotonic() - started) / finished_now * remaining)
    return f"ETA {secs // 60}m{secs % 60:02d}s"


class SweepRun:
    """One invocation of ``teleradlab sweep`` (a fresh start or a resume)."""

    def __init__(self, sweep: Sweep, out: Path, resume: bool, prefix: str,
                 say: Callable[[str], None], retry_failed: bool = False,
                 backend: str = "netns") -> None:
        self.sweep, self.out, self.prefix, self.say = sweep, out.absolute(), prefix, say
        self.backend = backend
        self.skip = ("done",) if retry_failed else FINISHED
        self.out.mkdir(parents=True, exist_ok=True)
        self.state = State(self.out, sweep, resume)
        self.result = SweepResult(self.out, len(sweep.cases))
        self.started = time.monotonic()
        self.finished_now = 0

    def folder(self, case: Case) -> Path:
        return self.out / "cases" / case.case_id

    def remaining(self) -> int:
        return sum(self.state.status(c) not in self.skip for c in self.sweep.cases)

    def _build(self, group_no: int, case: Case) -> Lab:
        name = f"{self.prefix}-{group_no}"
        if name in lifecycle.running() and any(c.get("lab") == name
                                               for c in self.state.cases.values()):
            lifecycle.down(name)  # ours, left by the interrupted sweep being resumed
        t0 = time.monotonic()
        try:
            lab = seam.build_lab(seam.up_options(case), name, backend=self.backend)
        except LabError as exc:
            self.result.builds.append({"lab": name, "seconds": time.monotonic() - t0, "ok": False,
                                       "error": str(exc)})
            raise
        self.result.builds.append({"lab": name, "seconds": time.monotonic() - t0, "ok": True})
        return lab

    def _run_one(self, lab: Lab, case: Case) -> None:
        folder = self.folder(case)
        shutil.rmtree(folder, ignore_errors=True)  # a partial run of an interrupted sweep
        t0 = time.monotonic()
        self.state.set(case, "running", lab=lab.name, started=time.time())
        try:
            res = seam.run_case(lab, seam.run_params(case, self.sweep.spec), folder)
        except (LabError, OSError) as exc:
            self._finish(case, "failed", f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
            raise
        bad = sum(not r.ok for r in res.rows)
        self._finish(case, "done", f"{bad} of {len(res.rows)} operations not ok" if bad else "",
                     time.monotonic() - t0)

    def _finish(self, case: Case, status: str, error: str, seconds: float) -> None:
        self.state.set(case, status, error=error, seconds=round(seconds, 3), finished=time.time())
        self.result.case_seconds[case.case_id] = seconds
        if status == "failed":
            self.result.failed += 1
            self.result.errors[case.case_id] = error
        else:
            self.result.done += 1
        self.finished_now += 1
        self.write_table()
        n = len(self.sweep.cases) - self.remaining()
        self.say(f"[{n}/{len(self.sweep.cases)}] {case.case_id}: {status}"
                 f"{' (' + ' '.join(error.split())[:200] + ')' if error else ''}; "
                 f"{_eta(self.started, self.finished_now, self.remaining())}")

    def run_group(self, group_no: int, cases: list[Case]) -> None:
        """Every pending case of one group on one lab; a lab that cannot be built fails them all
        with its error (it would fail the same way each time)."""
        pending = [c for c in cases if self.state.status(c) not in self.skip]
        self.result.skipped += len(cases) - len(pending)
        lab: Lab | None = None
        try:
            for i, case in enumerate(pending):
                if lab is None:
                    self.say(f"building lab {self.prefix}-{group_no} for {case.topology.stem}, "
                             f"security {case.security_label}, WAN {case.wan}")
                    try:
                        lab = self._build(group_no, case)
                    except LabError as exc:
                        for rest in pending[i:]:
                            self._finish(rest, "failed", str(exc), 0.0)
                        return
                try:
                    self._run_one(lab, case)
                except (LabError, OSError):
                    lifecycle.down(lab.name)  # it may be broken: the next case gets a new one
                    lab = None
        finally:
            if lab is not None:
                lifecycle.down(lab.name)

    def write_table(self) -> None:
        records: list[dict[str, Any]] = []
        for case in self.sweep.cases:
            info = self.state.cases.get(case.case_id, {})
            if info.get("status") in FINISHED:
                records += table.case_records(self.sweep.name, case, info["status"],
                                              info.get("error", ""), self.folder(case))
        self.result.csv, self.result.parquet = table.write(self.out, records)

    def execute(self) -> SweepResult:
        _write_json(self.out / "sweep.json", provenance({
            "sweep": self.sweep.name, "sweep_file": self.sweep.source,
            "description": self.sweep.spec.description, "spec": self.sweep.spec.model_dump(),
            "cases": len(self.sweep.cases), "groups": len(groups(self.sweep.cases)),
            "started": time.time()}))
        self.say(f"sweep {self.sweep.name}: {len(self.sweep.cases)} cases in "
                 f"{len(groups(self.sweep.cases))} labs, {self.remaining()} to run")
        for no, cases in enumerate(groups(self.sweep.cases), start=1):
            self.run_group(no, cases)
        self.write_table()
        return self.result


def sweep_needs(sweep: Sweep, backend: str) -> dict[str, str]:
    """Every feature the sweep's labs need, each with the first case that needs it."""
    needs: dict[str, str] = {}
    for cases in groups(sweep.cases):
        for feature, why in seam.lab_needs(cases[0], backend).items():
            needs.setdefault(feature, why)
    return needs


def run_sweep(sweep: Sweep, out: Path, *, resume: bool = False, retry_failed: bool = False,
              prefix: str = "sweep", say: Callable[[str], None] = lambda _: None,
              backend: str = "netns") -> SweepResult:
    """Run (or resume) ``sweep`` into ``out``; labs are named ``PREFIX-N``. On resume, failed
    cases are skipped like done ones unless ``retry_failed``. Refused before anything is made
    when a program one of its labs needs is missing (every case would fail the same way)."""
    lifecycle.require_root()
    programs.require(sweep_needs(sweep, backend))
    return SweepRun(sweep, out, resume, prefix, say, retry_failed, backend).execute()
