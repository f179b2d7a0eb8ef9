"""Topology files: the YAML schema, its validation, and the resolved
:class:`~lab.model.topology.Topology`.

This is the only module that knows the file format. Validation is strict (unknown keys, duplicate
keys and wrong types are errors) and every problem names the file, the field path and the value.
Nothing is created anywhere when a file is invalid: loading is pure apart from reading the file.

Schema (see ``topologies/*.yaml`` for complete examples)::

    description: free text
    sites:                       # exactly two sites (one with a remote peer); the name becomes
                                 # part of node names
      a:
        description: free text
        lan: {family: ipv4|ipv6|dual, ipv4: PREFIX, ipv6: PREFIX, mtu: 1500}
        gateway: {name: gw-a, ipv4: ADDRESS, ipv6: ADDRESS,
                  uplink: {interface: HOST-IFACE, mode: macvlan, address: ADDRESS/LEN,
                           gateway: ADDRESS, mtu: 1500}}   # with a remote peer only
        hosts:
          - {name: modality, role: modality|pacs|workstation, ipv4: ADDRESS, ipv6: ADDRESS}
    wan:                         # required, unless the site has a remote peer (then absent)
      family: ipv4|ipv6|dual
      router: wan
      mtu: 1500
      profile: PRESET or {delay: 30ms, rate: 20mbit, ...}   # the whole path, both ways
      links: {a: {ipv4: PREFIX, ipv6: PREFIX, profile: PROFILE or {up: .., down: ..}}, b: {...}}
    security:                    # optional; --security on up/run replaces it
      mode: none|ipsec|tls
      ipsec: {scope: site-to-site|host-to-host, auth: psk|cert,
              ike: aes256-sha256-modp2048, esp: aes256gcm16, psk: KEY (default: random per lab),
              remote: {address: ADDRESS, identity: ID, local_identity: ID, auth: psk|cert,
                       psk: KEY, ca: FILE, cert: FILE, key: FILE, remote_ts: [PREFIX, ...]}}
                                 # a real IKE peer instead of a second site: see attached.py
      tls: {profile: bcp195-rfc8996|non-downgrading|extended|aes|basic, port: 2762,
            cipher: OPENSSL-NAME (one TLS 1.2 suite of the profile; TLS 1.2 is then used)}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lab.errors import TopologyError
from lab.model.topology import Topology
from lab.topology import attached
from lab.topology.addressing import AllocationError, allocate
from lab.topology.schema import (
    TopologySpec,
    duplicate_key_problems,
    name_problems,
    pydantic_problems,
)
from lab.topology.wanspec import wan_of
from lab.topology.wiring import build_topology


def parse(text: str, source: str = "<string>", overrides: Mapping[str, Any] | None = None
          ) -> Topology:
    """Validate topology ``text`` (YAML) and return the resolved model; raise TopologyError.

    ``overrides`` replace top-level sections of the file (``--security`` on the command line
    replaces ``security``) before validation, so they are checked exactly like the file."""
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
    if overrides:
        raw = {**raw, **overrides}
        source = f"{source} (with {', '.join(f'--{k}' for k in overrides)})"
    try:
        spec = TopologySpec.model_validate(raw)
    except ValidationError as exc:
        raise TopologyError(source, pydantic_problems(exc)) from None
    problems = name_problems(spec) + attached.problems(spec)
    if problems:
        raise TopologyError(source, problems)
    wan, problems = wan_of(spec)
    if problems:
        raise TopologyError(source, problems)
    try:
        allocation = allocate(spec)
    except AllocationError as exc:
        raise TopologyError(source, exc.problems) from None
    base = Path(source).parent if source != "<string>" else Path.cwd()
    return replace(build_topology(spec, allocation, name=name, source=source, base=base),
                   wan=wan)


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Topology:
    """Read and validate a topology file (see :func:`parse` for ``overrides``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(str(p), [f"cannot read the file: {exc.strerror}"]) from None
    return parse(text, str(p), overrides)


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


def security_override(text: str) -> dict[str, Any]:
    """``--security MODE[,KEY=VALUE...]`` as a ``security`` section: ``ipsec``,
    ``ipsec,esp=aes128gcm16,auth=cert``, ``tls,profile=extended``. Keys belong to the chosen
    mode's part of the section (see the schema above); values are checked like the file's."""
    mode, *pairs = [p.strip() for p in text.split(",")]
    section: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TopologyError("--security", [f"{pair!r}: expected KEY=VALUE after the mode"])
        section[key.strip()] = int(value) if key.strip() == "port" and value.isdigit() else value
    if mode not in ("none", "ipsec", "tls"):
        raise TopologyError("--security", [f"mode {mode!r}: expected none, ipsec or tls"])
    if section and mode == "none":
        raise TopologyError("--security", ["mode none takes no settings"])
    return {"mode": mode, mode: section} if section else {"mode": mode}
