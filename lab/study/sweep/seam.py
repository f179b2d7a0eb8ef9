"""The one seam between a sweep case and the machinery that builds labs and runs transfers.

A case becomes two plain dicts: ``up`` (what needs a lab of its own: topology, security, WAN
profile) and ``run`` (parameters of ``teleradlab run`` on that lab: PDU, modality,
repetitions...). :func:`build_lab` and :func:`run_case` are the only places that turn them into
calls, so wiring in a new feature of ``up`` or ``run`` means editing this module alone.

A case whose choices this machine cannot do (a malformed proposal, a TLS profile the local
OpenSSL lacks) fails here, before anything is created, with the schema's or ``up``'s own words;
the sweep records that and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lab import topology as topology_file
from lab.backends.base import Progress, no_progress
from lab.errors import LabError
from lab.model.wan import ProfileError, parse_option
from lab.runtime import lifecycle
from lab.study import run
from lab.study.sweep.spec import Case, SweepSpec

UpOptions = Mapping[str, Any]
RunParams = Mapping[str, Any]


def security_section(case: Case) -> dict[str, Any]:
    """The topology's ``security`` section for the case: ``{mode: M, M: {settings}}``, the
    shape of ``teleradlab up --security M,KEY=VALUE`` (``ipsec: {esp, ike}``, ``tls: {profile,
    cipher}``)."""
    s = case.security
    settings = {"ipsec": {"esp": s.proposal, "ike": s.ike},
                "tls": {"profile": s.profile, "cipher": s.cipher}}.get(s.mode, {})
    given = {k: v for k, v in settings.items() if v is not None}
    return {"mode": s.mode, s.mode: given} if given else {"mode": s.mode}


def up_options(case: Case) -> dict[str, Any]:
    """What the lab of ``case`` must be built with (cases with equal options share a lab)."""
    return {"topology": case.topology, "security": security_section(case),
            "wan": None if case.wan == "none" else case.wan}


def run_params(case: Case, spec: SweepSpec) -> dict[str, Any]:
    """Parameters of one ``teleradlab run`` on an existing lab (run.RunOptions fields)."""
    return {"modalities": (case.modality,), "pdu": case.pdu, "repeat": spec.repetitions,
            "objects": spec.objects, "seed": spec.seed}


def derive_topology(up: UpOptions, work: Path) -> Path:
    """The case's topology file: the named one with its ``security`` block replaced.

    Written under ``work`` with the original's file name, so results keep the topology's name.
    The mode alone is validated first so that an unsupported mode is reported as such (rather
    than as an unknown key of its algorithm settings)."""
    source = Path(up["topology"])
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    security = dict(up["security"])
    topology_file.parse(yaml.safe_dump({**doc, "security": {"mode": security["mode"]}}),
                        str(source))
    text = yaml.safe_dump({**doc, "security": security}, sort_keys=False)
    topology_file.parse(text, str(source))
    work.mkdir(parents=True, exist_ok=True)
    path = work / source.name
    path.write_text(f"# {source} with the sweep's security settings\n{text}", encoding="utf-8")
    return path


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
        topology = topology_file.load(case.topology, {"security": security_section(case)})
        wan = _wan_up_options(None if case.wan == "none" else case.wan).get("wan", topology.wan)
    except LabError:
        return {}
    needs = lifecycle.lab_needs(topology, backend, wan, measured=True)
    return {f: f"{why} (case {case.case_id})" for f, why in needs.items()}


def build_lab(up: UpOptions, name: str, work: Path, progress: Progress = no_progress,
              backend: str = "netns") -> lifecycle.Lab:
    """Build lab ``name`` for ``up`` on ``backend``; nothing is created when an option is not
    supported."""
    extra = _wan_up_options(up.get("wan"))
    topology = derive_topology(up, work)
    return lifecycle.up(topology, name, backend=backend, progress=progress, **extra)


def run_case(lab: lifecycle.Lab, params: RunParams, out: Path,
             progress: Progress = no_progress) -> run.RunResult:
    """One ``teleradlab run`` on the running ``lab``, results in ``out``."""
    opts = run.RunOptions(topology=None, lab=lab.name, out=out, **params)
    return run.execute(opts, progress)
