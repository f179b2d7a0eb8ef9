"""Sweep files: the strict YAML schema, and its expansion into cases.

A sweep is a matrix over the axes of the paper's test schema (Zhang et al. 2007) and the WAN
profiles it did not try::

    description: free text
    matrix:
      topology: [ipv4, ipv6]                  # shipped names or paths (relative to the file)
      security:                               # one entry per configuration: the topology's
        - {mode: none}                        # own security section (same keys), replacing it
        - {mode: ipsec, ipsec: {esp: aes128gcm16-ecp256}}   # and ike, scope, auth
        - {mode: tls, tls: {profile: bcp195-rfc8996, cipher: ECDHE-ECDSA-AES128-GCM-SHA256}}
      pdu: [0, 16384]                         # maximum PDU length (0 = unlimited), PS3.8 9.3
      modality: [CT, MR]
      wan: [none, dsl-20m-30ms]               # a WAN preset name; none = unimpaired
      object_security: [none, sign, deid, sign+deid]   # PS3.15 on the objects (run
                                              # --object-security); no lab of its own
      associations: [1, 4]                    # associations a C-STORE spreads a study over
      window: [1, 16]                         # C-STOREs outstanding per association (PS3.7
                                              # D.3.3.3; default 16, run --window)
      fault: [none, rekey@1s, "link-down@1s,seconds=2"]   # injected during a C-STORE (run
                                              # --fault, lab.study.faults); no lab of its own;
                                              # IPsec faults pair with IPsec entries only
    courier: false                            # also carry every study on secure media
    repetitions: 3                            # of every case (run --repeat)
    objects: 4                                # objects per study (default: realistic sizes)
    seed: 0

Validation is strict like topology files: unknown or duplicate keys, wrong types and bad values
are errors naming the file, the field path and the value.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab import topology as topology_file
from lab.dicom.data.generate import MODALITIES
from lab.dicom.objsec import MODES as OBJECT_SECURITY
from lab.dicom.scu import WINDOW
from lab.errors import LabError, SweepError
from lab.study.faults import parse as parse_fault
from lab.topology.schema import (
    SecuritySpec,
    duplicate_key_problems,
    pydantic_problems,
    security_problems,
)

#: Most associations a case may spread a C-STORE over (the archive serves 64 at once).
MAX_ASSOCIATIONS = 32
#: Largest asynchronous operations window a case may propose (the lab's archive grants 16).
MAX_WINDOW = 256
WAN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MatrixSpec(_Strict):
    topology: list[str] = Field(min_length=1)
    security: list[SecuritySpec] = Field(default=[SecuritySpec()], min_length=1)
    pdu: list[int] = Field(default=[0], min_length=1)
    modality: list[str] = Field(default=["CT"], min_length=1)
    wan: list[str] = Field(default=["none"], min_length=1)
    associations: list[int] = Field(default=[1], min_length=1)

    @field_validator("associations")
    @classmethod
    def _associations(cls, v: list[int]) -> list[int]:
        bad = [n for n in v if not 1 <= n <= MAX_ASSOCIATIONS]
        if bad:
            raise ValueError(f"associations are 1 to {MAX_ASSOCIATIONS}, got {bad}")
        return v

    window: list[int] = Field(default=[WINDOW], min_length=1)

    @field_validator("window")
    @classmethod
    def _window(cls, v: list[int]) -> list[int]:
        bad = [n for n in v if not 1 <= n <= MAX_WINDOW]
        if bad:
            raise ValueError(f"windows are 1 to {MAX_WINDOW}, got {bad}")
        return v

    object_security: list[str] = Field(default=["none"], min_length=1)
    fault: list[str] = Field(default=["none"], min_length=1)

    @field_validator("fault")
    @classmethod
    def _fault(cls, v: list[str]) -> list[str]:
        for text in v:
            if text != "none":
                try:
                    parse_fault(text, "")
                except LabError as exc:
                    raise ValueError(str(exc).lstrip(": ")) from None
        return v

    @field_validator("object_security")
    @classmethod
    def _object_security(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in OBJECT_SECURITY]
        if bad:
            raise ValueError(f"object security is one of {', '.join(OBJECT_SECURITY)}, got {bad}")
        return v

    @field_validator("pdu")
    @classmethod
    def _pdu(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if p != 0 and not 16384 <= p <= 2**32 - 1]
        if bad:
            raise ValueError(f"PDU sizes are 0 (unlimited) or 16384 and up, got {bad}")
        return v

    @field_validator("modality")
    @classmethod
    def _modality(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in MODALITIES]
        if bad:
            raise ValueError(f"unknown modality {bad} (known: {', '.join(MODALITIES)})")
        return v

    @field_validator("wan")
    @classmethod
    def _wan(cls, v: list[str]) -> list[str]:
        bad = [w for w in v if not WAN_NAME_RE.match(w)]
        if bad:
            raise ValueError(f"WAN profiles are preset names like dsl-20m-30ms, got {bad}")
        return v


class SweepSpec(_Strict):
    description: str = ""
    matrix: MatrixSpec
    repetitions: int = Field(1, ge=1, le=1000)
    objects: int | None = Field(None, ge=1)
    seed: int = 0
    courier: bool = False


@dataclass(frozen=True)
class Case:
    """One cell of the matrix. ``lab_key`` is what needs a lab of its own: cases sharing it run
    on one lab, the others (PDU, modality, object security, associations, window, repetitions)
    are parameters of a run."""

    index: int
    topology: Path
    security: SecuritySpec
    wan: str
    pdu: int
    modality: str
    object_security: str = "none"
    associations: int = 1
    window: int = WINDOW
    fault: str = "none"  # KIND@WHEN[,...] injected during each C-STORE (lab.study.faults)

    @property
    def security_section(self) -> dict[str, Any]:
        """The topology's ``security`` section for this case: what the sweep file gives (the
        topology's defaults for the rest), as ``up --security`` would replace it."""
        given = self.security.model_dump(exclude_unset=True, mode="json")
        return {**given, "mode": self.security.mode}

    @property
    def security_profile(self) -> str:
        """The ESP proposal or TLS profile the case names ('' when it keeps the default)."""
        sec = self.security_section
        return str(sec.get("ipsec", {}).get("esp") or sec.get("tls", {}).get("profile") or "")

    @property
    def security_label(self) -> str:
        sec = self.security_section
        mode = sec["mode"]
        given = dict(sec.get(mode, {})) if mode != "none" else {}
        first = given.pop("esp", None) or given.pop("profile", None)
        ike = given.pop("ike", None)
        parts = [mode, first, f"ike-{ike}" if ike else None, given.pop("cipher", None),
                 *(f"{k}-{v}" for k, v in sorted(given.items()) if k != "psk")]
        return "-".join(str(x) for x in parts if x)

    @property
    def lab_key(self) -> tuple[str, str, str]:
        return (str(self.topology), self.security_label, self.wan)

    @property
    def case_id(self) -> str:
        """Stable across edits of the file (resuming matches cases by it), readable, and short."""
        # object security 'none', one association and the default window add nothing, so the
        # cases of older sweeps keep their ids
        extra = (() if self.object_security == "none" else (self.object_security,)) + (
            () if self.associations == 1 else (f"assoc{self.associations}",)) + (
            () if self.window == WINDOW else (f"win{self.window}",)) + (
            () if self.fault == "none" else (self.fault,))
        text = "_".join((self.topology.stem, self.security_label, self.wan, f"pdu{self.pdu}",
                         self.modality, *extra))
        digest = hashlib.sha256("|".join((*self.lab_key, str(self.pdu), self.modality, *extra))
                                .encode()).hexdigest()[:6]
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:90] + f"_{digest}"


@dataclass(frozen=True)
class Sweep:
    name: str
    source: str
    spec: SweepSpec
    cases: tuple[Case, ...]


def over_wan(sweep: Sweep, wan: str) -> Sweep:
    """The sweep with every case on the WAN ``wan`` (a ``--wan`` value such as
    ``delay=12.5ms,jitter=0.3ms``, the profile ``teleradlab probe`` measured) instead of the
    file's: cases that differed only in their WAN become one, renumbered in order."""
    cases: dict[str, Case] = {}
    for case in sweep.cases:
        moved = replace(case, wan=wan, index=len(cases))
        cases.setdefault(moved.case_id, moved)
    return Sweep(sweep.name, sweep.source, sweep.spec, tuple(cases.values()))


def _topology(arg: str, base: Path, where: str, problems: list[str]) -> Path | None:
    candidate = base / arg
    if ("/" in arg or arg.endswith((".yaml", ".yml"))) and candidate.exists():
        return candidate.resolve()
    try:
        path = topology_file.resolve_path(arg)
    except LabError:
        problems.append(f"{where}: no topology file or shipped topology {arg!r} "
                        f"(shipped: {', '.join(topology_file.shipped())})")
        return None
    if not path.exists():
        problems.append(f"{where}: no such file {arg!r}")
        return None
    return path.resolve()


def _security_problems(spec: SweepSpec) -> list[str]:
    """Each entry as the topology file's own ``security`` section is checked (proposal shapes,
    profile names, a cipher of its profile), and no settings for a mode the entry is not."""
    problems = []
    for i, s in enumerate(spec.matrix.security):
        where = f"matrix.security[{i}]"
        for other in ("ipsec", "tls"):
            if s.mode != other and other in s.model_fields_set:
                problems.append(f"{where}.{other}: only for mode {other} (mode is {s.mode!r})")
        problems += [f"{where}: {p}" for p in security_problems(s)]
    return problems


def parse(text: str, source: str = "<string>") -> Sweep:
    """Validate sweep ``text`` (YAML) and expand its matrix into cases."""
    loader = yaml.SafeLoader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
        problems = duplicate_key_problems(node)
        if problems:
            raise SweepError(source, problems)
        raw: Any = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise SweepError(source, [f"not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise SweepError(source, ["(top level): expected a mapping with a matrix "
                                  f"(got {type(raw).__name__})"])
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise SweepError(source, pydantic_problems(exc)) from None
    problems = _security_problems(spec)
    base = Path(source).parent
    topologies = [_topology(t, base, f"matrix.topology[{i}]", problems)
                  for i, t in enumerate(spec.matrix.topology)]
    for axis in ("topology", "pdu", "modality", "wan", "object_security", "associations",
                 "window", "fault"):
        values = getattr(spec.matrix, axis)
        if len(set(values)) != len(values):
            problems.append(f"matrix.{axis}: repeated values {values!r}")
    if problems:
        raise SweepError(source, problems)
    m = spec.matrix
    cells = product([t for t in topologies if t], m.security, m.wan, m.pdu, m.modality,
                    m.object_security, m.associations, m.window, m.fault)
    # a fault on the IKE daemon or the SAs means nothing without IPsec: no such case
    kept = [c for c in cells if c[1].mode == "ipsec" or c[-1] == "none"
            or not parse_fault(c[-1]).spec.kind.needs_ipsec]
    cases = tuple(Case(i, *cell) for i, cell in enumerate(kept))
    return Sweep(Path(source).stem, source, spec, cases)


def load(path: str | Path) -> Sweep:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(str(p), [f"cannot read the file: {exc.strerror}"]) from None
    return parse(text, str(p))


def shipped_dir() -> Path:
    return topology_file.shipped_dir() / "sweeps"


def resolve_path(arg: str) -> Path:
    """A sweep argument is a file, or the name of a shipped sweep (``quick``)."""
    p = Path(arg)
    if p.exists() or "/" in arg or p.suffix in (".yaml", ".yml"):
        return p
    candidate = shipped_dir() / f"{arg}.yaml"
    if not candidate.exists():
        names = ", ".join(sorted(q.stem for q in shipped_dir().glob("*.yaml")))
        raise SweepError(arg, [f"no such file, and no shipped sweep of that name ({names})"])
    return candidate
