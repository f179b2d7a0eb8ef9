"""Remove everything any teleradlab lab left on this machine, found by name alone.

Needs no in-memory state and no lab record, so it works after the orchestrator was killed with
SIGKILL half-way through ``up``; running it twice is harmless."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab import backends as registry
from lab import state
from lab.lifecycle import require_root
from lab.names import RUN_ROOT


def clean(root: Path = RUN_ROOT, backends: Sequence[str] | None = None) -> list[str]:
    """Remove every lab of the given backends (default: all), and the records of the labs
    removed (of every lab, when all backends are cleaned)."""
    require_root()
    removed: list[str] = []
    gone: set[str] = set()
    for name in backends or list(registry.REGISTRY):
        impl = registry.get(name)
        for lab in impl.list_owned():
            removed += [f"{lab}: {line}" for line in impl.down(lab)]
            gone.add(lab)
    for lab in state.names(root):
        if (backends is None or lab in gone) and state.remove(lab, root):
            removed.append(f"{lab}: record of lab {lab}")
    return removed
