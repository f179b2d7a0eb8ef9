"""Remove everything any teleradlab lab left on this machine, found by name alone.

Needs no in-memory state and no lab record, so it works after the orchestrator was killed with
SIGKILL half-way through ``up``; running it twice is harmless."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab import backends as registry
from lab.backends.base import Backend
from lab.errors import LabError
from lab.model.names import DATA_ROOT, RUN_ROOT
from lab.runtime import state
from lab.runtime.lifecycle import require_root


def clean(root: Path = RUN_ROOT, backends: Sequence[str | Backend] | None = None,
          data_root: Path = DATA_ROOT, only: str | None = None) -> list[str]:
    """Remove every lab of the given backends (default: all), and the records of the labs
    removed (of every lab, when all backends are cleaned); ``only``: that one lab alone (what
    it moved onto its gateways, such as a host interface, is put back from its record). A
    backend that cannot be asked (a docker socket with no engine behind it) does not stop the
    others: the error is raised after they are clean, and the records of labs it may own are
    kept."""
    impls = [registry.get(name) for name in backends or list(registry.REGISTRY)]
    if any(impl.needs_root for impl in impls):
        require_root()
    removed: list[str] = []
    gone: set[str] = set()
    failed: list[str] = []
    for impl in impls:
        name = impl.name
        try:
            owned = impl.list_owned()
        except LabError as exc:
            failed.append(f"{name}: {exc}")
            continue
        for lab in owned:
            if only is not None and lab != only:
                continue
            removed += [f"{lab}: {line}" for line in impl.down(lab)]
            gone.add(lab)
    for lab in state.names(root, data_root):
        if only is not None and lab != only:
            continue
        everything = backends is None and not failed
        if (lab in gone or everything) and state.remove(lab, root, data_root):
            removed.append(f"{lab}: record of lab {lab}")
    if failed:
        raise LabError(f"cleaned {len(removed)} items, but could not clean every backend:\n  "
                       + "\n  ".join(failed))
    return removed
