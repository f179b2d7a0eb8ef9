"""Topology files: the YAML schema, its validation, and the resolved :class:`~lab.model.Topology`.

This is the only module that knows the file format. Validation is strict (unknown keys, duplicate
keys and wrong types are errors) and every problem names the file, the field path and the value.
Nothing is created anywhere when a file is invalid: loading is pure apart from reading the file.

Schema (see ``topologies/*.yaml`` for complete examples)::

    description: free text
    sites:                       # exactly two sites; the name becomes part of node names
      a:
        description: free text
        lan: {family: ipv4|ipv6|dual, ipv4: PREFIX, ipv6: PREFIX, mtu: 1500}
        gateway: {name: gw-a, ipv4: ADDRESS, ipv6: ADDRESS}
        hosts:
          - {name: modality, role: modality|pacs|workstation, ipv4: ADDRESS, ipv6: ADDRESS}
    wan:
      family: ipv4|ipv6|dual
      router: wan
      mtu: 1500
      profile: PRESET or {delay: 30ms, rate: 20mbit, ...}   # the whole path, both ways
      links: {a: {ipv4: PREFIX, ipv6: PREFIX, profile: PROFILE or {up: .., down: ..}}, b: {...}}
    security: {mode: none}
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml
from pydantic import ValidationError

from lab.errors import TopologyError
from lab.model import Topology
from lab.topology.addressing import AllocationError, allocate
from lab.topology.schema import (
    TopologySpec,
    duplicate_key_problems,
    name_problems,
    pydantic_problems,
)
from lab.topology.wanspec import wan_of
from lab.topology.wiring import build_topology


def parse(text: str, source: str = "<string>") -> Topology:
    """Validate topology ``text`` (YAML) and return the resolved model; raise TopologyError."""
    name = Path(source).stem if source != "<string>" else "topology"
    loader = yaml.SafeLoader(text)
    loader.name = source  # YAML's error marks then name the file, not "<unicode string>"
    try:
        document = loader.get_single_node()
        problems = duplicate_key_problems(document)
        if problems:
            raise TopologyError(source, problems)
        raw = loader.construct_document(document) if document is not None else None
    except yaml.YAMLError as exc:
        raise TopologyError(source, [f"not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if raw is None:
        raise TopologyError(
            source, ["(top level): the file is empty (expected a mapping with sites and wan)"]
        )
    if not isinstance(raw, dict):
        raise TopologyError(
            source, [f"(top level): expected a mapping of keys, got {type(raw).__name__}"]
        )
    try:
        spec = TopologySpec.model_validate(raw)
    except ValidationError as exc:
        raise TopologyError(source, pydantic_problems(exc)) from None
    problems = name_problems(spec)
    if problems:
        raise TopologyError(source, problems)
    wan, problems = wan_of(spec)
    if problems:
        raise TopologyError(source, problems)
    try:
        allocation = allocate(spec)
    except AllocationError as exc:
        raise TopologyError(source, exc.problems) from None
    return replace(build_topology(spec, allocation, name=name, source=source), wan=wan)


def load(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(str(p), [f"cannot read the file: {exc.strerror}"]) from None
    return parse(text, str(p))


def shipped_dir() -> Path:
    """The ``topologies/`` folder that ships with the source tree."""
    return Path(__file__).resolve().parents[2] / "topologies"


def shipped() -> list[str]:
    """Names of the shipped topologies (``ipv6``, ...)."""
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def resolve_path(arg: str) -> Path:
    """A topology argument is a path to a file, or the name of a shipped topology (``ipv6``)."""
    p = Path(arg)
    if p.exists() or p.suffix in (".yaml", ".yml") or "/" in arg:
        return p
    candidate = shipped_dir() / f"{arg}.yaml"
    if not candidate.exists():
        raise TopologyError(
            arg,
            [
                f"no such file, and no shipped topology of that name "
                f"(shipped: {', '.join(shipped())})"
            ],
        )
    return candidate
