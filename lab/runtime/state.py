"""A running lab's record on the host: which topology and backend it was built from, and the
security plan resolved when it came up.

``/run/teleradlab/labs/<lab>/`` holds ``lab.json`` (a :class:`LabRecord`, the one model its
writer and its readers share) and a copy of the topology file as it was at ``up`` (so
``status``, ``exec`` and ``down`` work from any shell, later). Creating the directory claims the
lab name atomically. The record is a convenience, never the only way to find what a lab owns:
``cleanup`` works from names alone. The backend keeps what it must put back beside it: the
netns backend's ``uplinks.json`` (lab.backends.uplink.MovedRecord) names each host interface
it moved into a gateway, with its addresses and routes, so ``down`` and ``clean`` restore it
even after a crash; it goes with the rest of the folder only once they have.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab import topology as topology_file
from lab.errors import LabError, LabExistsError, LabNotFoundError
from lab.host import files
from lab.model.names import DATA_ROOT, RUN_ROOT, LabPaths
from lab.model.plan import SecurityPlan
from lab.model.topology import Topology


class LabRecord(BaseModel):
    """``lab.json``: what a lab was built from, by whom, and its security plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    backend: str
    topology: str  # path of the file it was built from
    created: float  # seconds since the epoch
    pid: int  # the orchestrator that built it
    overrides: dict[str, Any] = Field(default_factory=dict)  # sections replaced (--security)
    plan: SecurityPlan

    @property
    def created_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))


def claim(info: LabRecord, topology_text: str, root: Path = RUN_ROOT) -> None:
    """Reserve the lab name and write its record; LabExistsError if the name is taken."""
    paths = LabPaths(info.name, root)
    paths.state_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        paths.state_dir.mkdir()
    except FileExistsError:
        raise LabExistsError(
            f"a lab named {info.name!r} already exists; use --name to pick another name, or "
            f"'teleradlab down {info.name}' first"
        ) from None
    paths.topology_copy.write_text(topology_text, encoding="utf-8")
    files.write_json(paths.info_file, info)


def read(lab: str, root: Path = RUN_ROOT) -> tuple[LabRecord, Topology]:
    """The record of a running lab and its topology (as it was when the lab came up)."""
    paths = LabPaths(lab, root)
    try:
        info = LabRecord.model_validate_json(paths.info_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabNotFoundError(f"no lab named {lab!r} is running") from None
    except (ValueError, ValidationError) as exc:
        raise LabError(
            f"the record of lab {lab!r} is damaged ({paths.info_file}: {exc}); "
            f"'teleradlab down {lab}' removes it"
        ) from None
    text = paths.topology_copy.read_text(encoding="utf-8")
    topo = topology_file.parse(text, info.topology, info.overrides)
    return info, topo


def names(root: Path = RUN_ROOT, data_root: Path = DATA_ROOT) -> list[str]:
    """Labs with a record or data on this machine."""
    found: set[str] = set()
    for d in (root / "labs", data_root):
        if d.is_dir():
            found |= {p.name for p in d.iterdir() if p.is_dir()}
    return sorted(found)


def remove(lab: str, root: Path = RUN_ROOT, data_root: Path = DATA_ROOT) -> bool:
    """Remove the lab's record and data; False if there was neither."""
    paths = LabPaths(lab, root, data_root)
    removed = False
    for d, parents in ((paths.state_dir, (paths.state_dir.parent, root)),
                       (paths.data_dir, (data_root,))):
        if d.exists():
            shutil.rmtree(d)
            removed = True
        for parent in parents:
            try:
                parent.rmdir()
            except OSError:
                break
    return removed
