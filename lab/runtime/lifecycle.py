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
from lab.backends.base import Backend, Progress, no_progress
from lab.backends.probes import ProbeResult
from lab.errors import LabError, LabExistsError, LabNotFoundError, NotRootError, TlsError
from lab.host import programs
from lab.model.names import RUN_ROOT, LabPaths, check_lab_name, default_lab_name
from lab.model.tls_profiles import PROFILES
from lab.model.topology import Probe, SecurityMode, Topology, Wan
from lab.runtime import reach, services, state
from lab.security.ipsec import tunnel
from lab.security.ipsec.plan import make_plan, uses_ipsec
from lab.security.tls import contexts
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


def lab_needs(topology: Topology, backend: str, wan: Wan, *, measured: bool = False,
              emulator: Callable[[], bool] | None = None) -> dict[str, str]:
    """The features of :mod:`lab.host.programs` a lab needs (feature -> why), from its topology,
    backend and effective WAN profile; ``measured`` when ``run`` will measure the WAN's fidelity.

    ``emulator`` (whether the userspace WAN emulator must be built here; default
    :func:`emulator_to_build`) is asked only for an impaired WAN. IPsec needs strongSwan on the
    host on either backend: the host's charon says which algorithms are possible before
    anything is built (``tunnel.preflight``)."""
    needs = {"core": "every lab"}
    if backend == "docker":
        needs["docker"] = "the docker backend"
    mode = topology.security.mode
    if uses_ipsec(topology):
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
class Lab:
    name: str
    topology: Topology
    backend: Backend
    info: state.LabInfo
    probes: tuple[ProbeResult, ...] = ()
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
    overrides: Mapping[str, Any] | None = None,
    wan: Wan | None = None,
    measured: bool = False,
) -> Lab:
    """Validate the topology, build the lab, and prove reachability with pings.

    Root is checked first, then the file, then that every program the lab's features need is
    installed (:func:`lab_needs`); nothing is created unless all pass. If any later step fails
    (or is interrupted), everything made so far is removed before the error propagates.
    ``wan`` (from ``--wan``) replaces the topology file's WAN profile; ``measured``: the caller
    (``run``) will measure the WAN."""
    require_root()
    path = Path(topology_path)
    topology = topology_file.load(path, overrides)
    wan = topology.wan if wan is None else wan
    programs.require(lab_needs(topology, backend, wan, measured=measured))
    # An impossible or unsupported choice stops us here, before anything is made.
    if uses_ipsec(topology):
        tunnel.preflight(topology)
    if topology.security.mode is SecurityMode.TLS:
        tls_preflight(topology)
    lab_name = check_lab_name(name or default_lab_name(topology.name))
    impl = backends.get(backend)
    if lab_name in impl.list_owned():
        raise LabExistsError(
            f"a lab named {lab_name!r} already exists; use --name, or "
            f"'teleradlab down {lab_name}' (or 'teleradlab clean') first"
        )
    info = state.LabInfo(lab_name, impl.name, str(path.resolve()), time.time(), os.getpid(),
                         dict(overrides or {}))
    state.claim(info, path.read_text(encoding="utf-8"), root)
    start = time.monotonic()
    try:
        impl.up(lab_name, topology, progress)
        results = _protect(impl, lab_name, topology, check, progress, root)
        if start_services:
            progress("starting the DICOM services (PACS, modality receiver)")
            wanted = services.dicom_services(topology, LabPaths(lab_name, root))
            services.start(impl, lab_name, wanted)
        _impair_wan(impl, lab_name, topology, wan, progress)
    except BaseException:
        progress("removing what was made")
        impl.down(lab_name)
        state.remove(lab_name, root)
        raise
    return Lab(lab_name, topology, impl, info, tuple(results), time.monotonic() - start)


def tls_preflight(topology: Topology) -> None:
    """The TLS profile must be one the local OpenSSL can really do (tried by a handshake)."""
    name = topology.security.tls.profile
    ok, why = contexts.supported(PROFILES[name])
    if not ok:
        raise TlsError(f"security.tls.profile: {name!r} cannot be used here: {why}; profiles "
                       f"this machine can do: {', '.join(contexts.supported_profiles())}")


def _protect(impl: Backend, lab: str, topology: Topology, check: bool, progress: Progress,
             root: Path) -> list[ProbeResult]:
    """Bring up the protection the topology asks for, then check reachability (through it)."""
    results: list[ProbeResult] = []
    skip: Callable[[Probe], bool] = lambda _: False  # noqa: E731
    if uses_ipsec(topology):
        # Before any ping: the guards go in first, so nothing crosses unprotected.
        tunnel.establish(impl, lab, topology, progress=progress, root=root)
        plan = make_plan(topology)
        skip = partial(tunnel.hidden_by_tunnel, topology, plan)
        if check:
            results += tunnel.check_tunnel(impl, lab, topology, plan, progress)
    if check:
        results = reach.check(impl, lab, topology, progress, skip) + results
    return results


def _impair_wan(impl: Backend, lab: str, topology: Topology, wan: Wan,
                progress: Progress) -> None:
    """Apply the WAN profile once the lab is proved reachable (lab.wan.apply)."""
    if wan.impaired:
        progress(f"impairing the WAN ({wan.name})")
        state = wan_apply.apply(impl, lab, topology, wan)
        progress(f"WAN impaired by the {state.path} path")


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
