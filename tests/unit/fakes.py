"""Lab handles on the fake backend (lab.backends.fake), for unit tests of what runs on a lab:
nothing is built, the security plan is resolved against a machine that can do everything."""

from __future__ import annotations

from pathlib import Path

from lab.backends.base import Lab
from lab.backends.fake import FakeBackend
from lab.model.names import LabPaths
from lab.model.topology import Topology
from lab.security.plan import FixedMachine, resolve
from lab.topology import load, shipped_dir


def shipped(name: str, mode: str = "none") -> Topology:
    """A shipped topology with its security mode replaced."""
    return load(shipped_dir() / f"{name}.yaml", {"security": {"mode": mode}})


def fake_lab(topology: Topology, root: Path, name: str = "t",
             backend: FakeBackend | None = None) -> Lab:
    """A handle of lab ``name`` of ``topology`` whose nodes exist on ``backend`` (a new fake
    one by default), its records and data under ``root``."""
    backend = backend or FakeBackend()
    backend.labs[name] = [n.name for n in topology.nodes]
    return Lab(backend, name, topology, resolve(topology, FixedMachine()),
               LabPaths(name, root / "run", root / "data"))
