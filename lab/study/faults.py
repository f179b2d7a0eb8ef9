"""A fault scheduled in a run (``run --fault``, a sweep's ``fault`` axis): when to inject which
fault of :mod:`lab.runtime.faults` while a study's C-STORE is under way, and the result columns
that name it.

The form is ``KIND@WHEN[,node=NODE][,seconds=S][,loss=PCT]``: WHEN is seconds after the C-STORE
starts (``2``, ``2.5s``) or a number of objects the archive has received in it (``20obj``).
The fault starts in a background thread at that moment; the C-STORE goes on meanwhile, and its
row records the fault, when it hit and how long the lab took to recover
(:class:`~lab.runtime.faults.FaultRecord`). A C-STORE that ends before the moment leaves the
fault uninjected, and the row says so.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from lab.backends.base import Lab
from lab.errors import LabError
from lab.runtime.faults import RECOVERY_TIMEOUT_S, FaultKind, FaultRecord, FaultSpec, inject
from lab.runtime.faults import target as fault_target
from lab.study.results import Row

_WHEN = re.compile(r"^(?:(?P<s>[0-9]*\.?[0-9]+)s?|(?P<n>[0-9]+)obj(?:ects)?)$")
#: How often the moment is checked (seconds).
POLL_S = 0.05


@dataclass(frozen=True)
class Scheduled:
    """One fault and its moment: ``at_s`` seconds into the C-STORE, or ``after_objects``."""

    text: str
    spec: FaultSpec
    at_s: float | None = None
    after_objects: int | None = None


def parse(text: str, where: str = "--fault") -> Scheduled:
    """``KIND@WHEN[,key=value...]`` -> Scheduled; LabError naming ``where`` and the value."""
    head, *options = [p.strip() for p in text.split(",")]
    kind_text, at, when = head.partition("@")
    kinds = ", ".join(FaultKind)
    if not at or not when:
        raise LabError(f"{where}: expected KIND@WHEN such as rekey@2s or archive-restart@20obj "
                       f"(got {text!r}; kinds: {kinds})")
    try:
        kind = FaultKind(kind_text)
    except ValueError:
        raise LabError(f"{where}: unknown fault {kind_text!r} in {text!r} (kinds: {kinds})"
                       ) from None
    m = _WHEN.match(when)
    if m is None:
        raise LabError(f"{where}: the moment {when!r} in {text!r} is neither seconds (2.5s) nor "
                       "objects (20obj)")
    fields: dict[str, str] = {}
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or key not in ("node", "seconds", "loss") or key in fields:
            raise LabError(f"{where}: {opt!r} in {text!r} is not node=, seconds= or loss= "
                           "(each once)")
        fields[key] = value
    try:
        seconds = float(fields["seconds"]) if "seconds" in fields else None
        spec = FaultSpec(kind, fields.get("node"), seconds, float(fields.get("loss", 30.0)))
    except ValueError:
        raise LabError(f"{where}: seconds= and loss= take numbers (got {text!r})") from None
    if not (0 <= spec.duration <= 600 and 0 < spec.loss_pct <= 100):
        raise LabError(f"{where}: seconds= is in [0, 600] and loss= in (0, 100] (got {text!r})")
    return Scheduled(text, spec, float(m["s"]) if m["s"] else None,
                     int(m["n"]) if m["n"] else None)


@dataclass
class Injection:
    """What became of a scheduled fault during one C-STORE."""

    scheduled: Scheduled | None
    record: FaultRecord | None = None
    at_s: float = 0.0  # seconds after the C-STORE started that the fault was injected
    error: str = ""

    def apply(self, row: Row) -> Row:
        """``row`` (the C-STORE's) naming the fault; not ok when the lab did not recover."""
        s = self.scheduled
        if s is None:
            return row
        if self.record is not None:
            observed = self.record.observed
        else:
            observed = self.error or "not injected: the C-STORE ended before its moment"
        return replace(row, fault=s.text, fault_node=self.record.node if self.record else "",
                       fault_at_s=round(self.at_s, 6),
                       fault_seconds=self.record.seconds if self.record else 0.0,
                       fault_observed=observed, ok=row.ok and not self.error)


def check(lab: Lab, scheduled: Scheduled | None) -> None:
    """LabError when ``lab`` cannot take ``scheduled`` (a node it lacks, IPsec on a TLS lab)."""
    if scheduled is not None:
        fault_target(lab, scheduled.spec)


def _received_since(store: Path, since: float) -> int:
    """Objects the archive has written (or rewritten) since ``since`` (its files' mtime)."""
    count = 0
    for f in store.glob("objects/*/*.dcm"):
        try:
            count += f.stat().st_mtime >= since
        except FileNotFoundError:
            continue
    return count


@contextmanager
def during(lab: Lab, scheduled: Scheduled | None, store: Path) -> Iterator[Injection]:
    """Run the body (a C-STORE) with ``scheduled`` injected in the background at its moment;
    on leaving, wait for an injected fault to finish (bounded) and fill in the Injection."""
    injection = Injection(scheduled)
    if scheduled is None:
        yield injection
        return
    check(lab, scheduled)  # a wrong node or a lab without IPsec fails first
    finished, started = threading.Event(), threading.Event()
    t0, wall0 = time.monotonic(), time.time()

    def moment() -> bool:
        if scheduled.at_s is not None:
            return time.monotonic() - t0 >= scheduled.at_s
        return _received_since(store, wall0) >= (scheduled.after_objects or 0)

    def work() -> None:
        while not moment():
            if finished.wait(POLL_S):
                return
        started.set()
        injection.at_s = time.monotonic() - t0
        try:
            injection.record = inject(lab, scheduled.spec)
        except LabError as exc:
            injection.error = f"the lab did not recover: {exc}"

    thread = threading.Thread(target=work, name=f"fault {scheduled.text}", daemon=True)
    thread.start()
    try:
        yield injection
    finally:
        if not started.is_set():
            finished.set()
        thread.join(scheduled.spec.duration + RECOVERY_TIMEOUT_S + 30)
        if thread.is_alive():
            injection.error = f"fault {scheduled.text} still running after its time limit"
