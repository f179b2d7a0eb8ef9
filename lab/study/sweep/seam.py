"""The one seam between a sweep case and the machinery that builds labs and runs transfers.

A case becomes two plain dicts: ``up`` (what needs a lab of its own: topology, its security
section in the topology's own shape, WAN profile) and ``run`` (parameters of ``teleradlab run`` on
that lab: PDU, modality, associations, repetitions...). :func:`build_lab` and :func:`run_case`
are the only places that turn them into calls, so wiring in a new feature of ``up`` or ``run``
means editing this module alone.

A case whose choices this machine cannot do (a malformed proposal, a TLS profile the local
OpenSSL lacks) fails here, before anything is created, with the schema's or ``up``'s own words;
the sweep records that and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab import topology as topology_file
from lab.backends.base import Lab, Progress, no_progress
from lab.errors import LabError
from lab.model.wan import ProfileError, parse_option
from lab.runtime import lifecycle
from lab.study import faults, run
from lab.study.sweep.spec import Case, SweepSpec

UpOptions = Mapping[str, Any]
RunParams = Mapping[str, Any]


def up_options(case: Case) -> dict[str, Any]:
    """What the lab of ``case`` must be built with (cases with equal options share a lab)."""
    return {"topology": case.topology, "security": case.security_section,
            "wan": None if case.wan == "none" else case.wan}


def run_params(case: Case, spec: SweepSpec) -> dict[str, Any]:
    """Parameters of one ``teleradlab run`` on an existing lab (run.RunOptions fields)."""
    return {"modalities": (case.modality,), "pdu": case.pdu, "repeat": spec.repetitions,
            "objects": spec.objects, "seed": spec.seed,
            "object_security": case.object_security, "courier": spec.courier,
            "associations": case.associations, "window": case.window,
            "fault": None if case.fault == "none" else faults.parse(case.fault)}


def _wan_up_options(wan: str | None) -> dict[str, Any]:
    """Keyword arguments of lifecycle.up for a WAN profile (a preset name, as ``--wan``)."""
    if wan is None:
        return {}
    try:
        return {"wan": parse_option(wan)}
    except ProfileError as exc:
        raise LabError(f"WAN profile {wan!r}: {'; '.join(exc.problems)}") from None


def lab_needs(case: Case, backend: str = "netns") -> dict[str, str]:
    """The features the lab of ``case`` needs (feature -> why; :func:`lifecycle.lab_needs`),
    for a sweep to refuse before it starts. A case whose topology or WAN profile is invalid
    needs nothing here: building its lab fails, and the sweep records that case's error."""
    try:
        topology = topology_file.load(case.topology, {"security": case.security_section})
        wan = _wan_up_options(None if case.wan == "none" else case.wan).get("wan", topology.wan)
    except LabError:
        return {}
    needs = lifecycle.lab_needs(topology, backend, wan, measured=True)
    return {f: f"{why} (case {case.case_id})" for f, why in needs.items()}


def build_lab(up: UpOptions, name: str, progress: Progress = no_progress,
              backend: str = "netns") -> Lab:
    """Build lab ``name`` for ``up`` on ``backend``: the case's security section replaces the
    topology's as ``up --security`` does (checked exactly like the file); nothing is created
    when an option is not supported."""
    extra = _wan_up_options(up.get("wan"))
    return lifecycle.up(up["topology"], name, backend=backend, progress=progress,
                        overrides={"security": up["security"]}, **extra)


def run_case(lab: Lab, params: RunParams, out: Path,
             progress: Progress = no_progress) -> run.RunResult:
    """One ``teleradlab run`` on the running ``lab``, results in ``out``."""
    opts = run.RunOptions(topology=None, lab=lab.name, out=out, **params)
    return run.execute(opts, progress)
