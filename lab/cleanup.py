"""Remove everything any teleradlab lab left on this machine, found by name alone.

Needs no in-memory state and no lab record, so it works after the orchestrator was killed with
SIGKILL half-way through ``up``; running it twice is harmless."""

from __future__ import annotations

from pathlib import Path

from lab import backends, state
from lab.lifecycle import require_root
from lab.names import RUN_ROOT


def clean(root: Path = RUN_ROOT) -> list[str]:
    require_root()
    removed: list[str] = []
    for name in backends.REGISTRY:
        impl = backends.get(name)
        for lab in impl.list_owned():
            removed += [f"{lab}: {line}" for line in impl.down(lab)]
    for lab in state.names(root):
        if state.remove(lab, root):
            removed.append(f"{lab}: record of lab {lab}")
    return removed
