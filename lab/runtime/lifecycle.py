"""Bringing labs up and down: the steps, their order, and the rule that a failed ``up`` leaves
nothing behind."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lab import backends
from lab import topology as topology_file
from lab.backends.base import Backend, Lab, Progress, no_progress
from lab.backends.probes import ProbeResult
from lab.errors import LabError, LabExistsError, LabNotFoundError, NotRootError
from lab.host import programs
from lab.model.names import DATA_ROOT, RUN_ROOT, LabPaths, check_lab_name, default_lab_name
from lab.model.topology import Probe, SecurityMode, Topology, Wan
from lab.runtime import reach, services, state
from lab.security import plan as security_plan
from lab.security.ipsec import tunnel
from lab.security.plan import HostMachine, Machine, needs_ipsec
from lab.wan import apply as wan_apply
from lab.wan import userspace


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRootError(
            "teleradlab builds labs from network and mount namespaces, which needs root: "
            "run it with sudo (or as root)"
        )


def emulator_to_build() -> bool:
    """An impaired WAN would take the userspace path (no sch_netem in this kernel) and its
    emulator is not built yet: gcc is needed."""
    return not userspace.built_path().is_file() and not wan_apply.kernel_has_netem()


def lab_needs(topology: Topology, backend: str | Backend, wan: Wan, *, measured: bool = False,
              emulator: Callable[[], bool] | None = None) -> dict[str, str]:
    """The features of :mod:`lab.host.programs` a lab needs (feature -> why), from its topology,
    backend and effective WAN profile; ``measured`` when ``run`` will measure the WAN's fidelity.

    ``emulator`` (whether the userspace WAN emulator must be built here; default
    :func:`emulator_to_build`) is asked only for an impaired WAN. IPsec needs strongSwan on the
    host on either backend: the host's charon says which algorithms are possible before
    anything is built (:func:`lab.security.plan.resolve`)."""
    needs = dict(backends.get(backend).needs)
    mode = topology.security.mode
    if needs_ipsec(topology):
        needs["ipsec"] = ("security mode ipsec" if mode is SecurityMode.IPSEC else
                          f"security mode {mode}, carried by a tunnel between sites that "
                          "have no common address family")
    if wan.impaired:
        if (emulator or emulator_to_build)():
            needs["wan-userspace"] = (f"WAN profile {wan.name or 'given'}: this kernel has no "
                                      "sch_netem, so the userspace emulator must be built")
        if measured:
            needs["wan-measure"] = f"run measures the fidelity of WAN profile {wan.name or ''}"
    return needs


@dataclass(frozen=True)
class Built:
    """What :func:`build` made: the lab, the pings that proved it, and how long it took."""

    lab: Lab
    probes: tuple[ProbeResult, ...] = ()
    seconds: float = 0.0


def up(topology_path: str | Path, name: str | None = None, **options: Any) -> Lab:
    """:func:`build`, for callers that need only the lab."""
    return build(topology_path, name, **options).lab


def build(
    topology_path: str | Path,
    name: str | None = None,
    *,
    backend: str | Backend = backends.DEFAULT,
    check: bool = True,
    start_services: bool = True,
    progress: Progress = no_progress,
    root: Path = RUN_ROOT,
    data_root: Path = DATA_ROOT,
    overrides: Mapping[str, Any] | None = None,
    wan: Wan | None = None,
    measured: bool = False,
    machine: Machine | None = None,
) -> Built:
    """Validate the topology, resolve its security plan, build the lab, protect it, and prove
    reachability with pings.

    Root is checked first (when the backend needs it), then the file, then that every program
    the lab's features need is installed (:func:`lab_needs`), then the security plan against
    what ``machine`` (default: this one) can do; nothing is created unless all pass. If any
    later step fails (or is interrupted), everything made so far is removed before the error
    propagates. ``wan`` (from ``--wan``) replaces the topology file's WAN profile; ``measured``:
    the caller (``run``) will measure the WAN."""
    impl = backends.get(backend)
    if impl.needs_root:
        require_root()
    path = Path(topology_path)
    topology = topology_file.load(path, overrides)
    wan = topology.wan if wan is None else wan
    programs.require(lab_needs(topology, impl, wan, measured=measured))
    # An impossible or unsupported choice stops us here, before anything is made.
    plan = security_plan.resolve(topology, machine or HostMachine())
    impl.preflight(topology)
    lab_name = check_lab_name(name or default_lab_name(topology.name))
    if lab_name in impl.list_owned():
        raise LabExistsError(
            f"a lab named {lab_name!r} already exists; use --name, or "
            f"'teleradlab down {lab_name}' (or 'teleradlab clean') first"
        )
    record = state.LabRecord(name=lab_name, backend=impl.name, topology=str(path.resolve()),
                             created=time.time(), pid=os.getpid(),
                             overrides=dict(overrides or {}), plan=plan)
    state.claim(record, path.read_text(encoding="utf-8"), root)
    lab = Lab(impl, lab_name, topology, plan, LabPaths(lab_name, root, data_root))
    start = time.monotonic()
    try:
        impl.up(lab_name, topology, progress)
        results = _protect(lab, check, progress)
        if start_services:
            progress("starting the DICOM services (PACS, modality receiver)")
            services.start(lab, services.dicom_services(lab))
        _impair_wan(lab, wan, progress)
    except BaseException:
        progress("removing what was made")
        impl.down(lab_name)
        state.remove(lab_name, root, data_root)
        raise
    return Built(lab, tuple(results), time.monotonic() - start)


def _protect(lab: Lab, check: bool, progress: Progress) -> list[ProbeResult]:
    """Bring up the protection the plan asks for, then check reachability (through it)."""
    results: list[ProbeResult] = []
    skip: Callable[[Probe], bool] = lambda _: False  # noqa: E731
    if lab.plan.ipsec is not None:
        # Before any ping: the guards go in first, so nothing crosses unprotected.
        tunnel.establish(lab, progress=progress)
        skip = partial(tunnel.hidden_by_tunnel, lab.topology, lab.plan.ipsec)
        if check:
            results += tunnel.check_tunnel(lab, progress)
    if check:
        results = reach.check(lab, progress, skip) + results
    return results


def _impair_wan(lab: Lab, wan: Wan, progress: Progress) -> None:
    """Apply the WAN profile once the lab is proved reachable (lab.wan.apply)."""
    if wan.impaired:
        progress(f"impairing the WAN ({wan.name})")
        applied = wan_apply.apply(lab, wan)
        progress(f"WAN impaired by the {applied.path} path")


def running(root: Path = RUN_ROOT, data_root: Path = DATA_ROOT) -> list[str]:
    """Labs with a record on this machine."""
    return state.names(root, data_root)


def resolve(name: str | None, root: Path = RUN_ROOT, data_root: Path = DATA_ROOT) -> str:
    """The lab meant by ``name``, or the only running lab when none is named."""
    labs = running(root, data_root)
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


def attach(name: str | None, root: Path = RUN_ROOT, data_root: Path = DATA_ROOT,
           backend: Backend | None = None) -> Lab:
    """The handle of a running lab, from its record (``backend``: the instance to use, for
    tests; default the record's backend)."""
    lab_name = resolve(name, root, data_root)
    record, topology = state.read(lab_name, root)
    return Lab(backend or backends.get(record.backend), lab_name, topology, record.plan,
               LabPaths(lab_name, root, data_root))


def record(lab: Lab) -> state.LabRecord:
    """The record of a running lab (when and from what it was built)."""
    return state.read(lab.name, lab.paths.root)[0]


def down(name: str, root: Path = RUN_ROOT, backend: str | Backend | None = None,
         data_root: Path = DATA_ROOT) -> list[str]:
    """Remove lab ``name`` (by name: works for a half-built or crashed lab too). ``backend``
    is used when the lab's record is gone (default: netns); a Backend given is used as is."""
    check_lab_name(name)
    removed: list[str] = []
    chosen: str | Backend = backend or backends.DEFAULT
    if not isinstance(backend, Backend):
        with contextlib.suppress(LabError):
            chosen = state.read(name, root)[0].backend
    impl = backends.get(chosen)
    if impl.needs_root:
        require_root()
    if name not in impl.list_owned() and name not in running(root, data_root):
        raise LabNotFoundError(f"no lab named {name!r} is running")
    removed += impl.down(name)
    if state.remove(name, root, data_root):
        removed.append(f"record of lab {name}")
    return removed
