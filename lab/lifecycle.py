"""Bringing labs up and down: the steps, their order, and the rule that a failed ``up`` leaves
nothing behind."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from lab import backends, reach, services, state
from lab import topology as topology_file
from lab.backends.base import Backend, Progress, no_progress
from lab.errors import LabError, LabExistsError, LabNotFoundError, NotRootError
from lab.model import Topology
from lab.names import RUN_ROOT, LabPaths, check_lab_name, default_lab_name


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRootError(
            "teleradlab builds labs from network and mount namespaces, which needs root: "
            "run it with sudo (or as root)"
        )


@dataclass(frozen=True)
class Lab:
    name: str
    topology: Topology
    backend: Backend
    info: state.LabInfo
    probes: tuple[reach.ProbeResult, ...] = ()
    seconds: float = 0.0


def up(
    topology_path: str | Path,
    name: str | None = None,
    *,
    backend: str = backends.DEFAULT,
    check: bool = True,
    start_services: bool = True,
    progress: Progress = no_progress,
    root: Path = RUN_ROOT,
) -> Lab:
    """Validate the topology, build the lab, and prove reachability with pings.

    Root is checked first, then the file; nothing is created unless both pass. If any later step
    fails (or is interrupted), everything made so far is removed before the error propagates."""
    require_root()
    path = Path(topology_path)
    topology = topology_file.load(path)
    lab_name = check_lab_name(name or default_lab_name(topology.name))
    impl = backends.get(backend)
    if lab_name in impl.list_owned():
        raise LabExistsError(
            f"a lab named {lab_name!r} already exists; use --name, or "
            f"'teleradlab down {lab_name}' (or 'teleradlab clean') first"
        )
    info = state.LabInfo(lab_name, impl.name, str(path.resolve()), time.time(), os.getpid())
    state.claim(info, path.read_text(encoding="utf-8"), root)
    start = time.monotonic()
    try:
        impl.up(lab_name, topology, progress)
        results = reach.check(impl, lab_name, topology, progress) if check else []
        if start_services:
            progress("starting the DICOM services (PACS, modality receiver)")
            wanted = services.dicom_services(topology, LabPaths(lab_name, root))
            services.start(impl, lab_name, wanted)
    except BaseException:
        progress("removing what was made")
        impl.down(lab_name)
        state.remove(lab_name, root)
        raise
    return Lab(lab_name, topology, impl, info, tuple(results), time.monotonic() - start)


def running(root: Path = RUN_ROOT) -> list[str]:
    """Labs with a record on this machine."""
    return state.names(root)


def resolve(name: str | None, root: Path = RUN_ROOT) -> str:
    """The lab meant by ``name``, or the only running lab when none is named."""
    labs = running(root)
    if name is not None:
        if name not in labs:
            known = f" (running: {', '.join(labs)})" if labs else " (no lab is running)"
            raise LabNotFoundError(f"no lab named {name!r} is running{known}")
        return name
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabNotFoundError("no lab is running; start one with 'teleradlab up TOPOLOGY'")
    raise LabError(f"several labs are running ({', '.join(labs)}): name one with --lab")


def attach(name: str | None, root: Path = RUN_ROOT) -> Lab:
    lab_name = resolve(name, root)
    info, topology = state.read(lab_name, root)
    return Lab(lab_name, topology, backends.get(info.backend), info)


def down(name: str, root: Path = RUN_ROOT, backend: str | None = None) -> list[str]:
    """Remove lab ``name`` (by name: works for a half-built or crashed lab too). ``backend``
    is used when the lab's record is gone (default: netns)."""
    require_root()
    check_lab_name(name)
    removed: list[str] = []
    backend_name = backend or backends.DEFAULT
    with contextlib.suppress(LabError):
        backend_name = state.read(name, root)[0].backend
    impl = backends.get(backend_name)
    if name not in impl.list_owned() and name not in running(root):
        raise LabNotFoundError(f"no lab named {name!r} is running")
    removed += impl.down(name)
    if state.remove(name, root):
        removed.append(f"record of lab {name}")
    return removed
