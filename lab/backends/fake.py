"""A backend that builds nothing, for unit tests of everything above the backends (design.md,
style 2): ``up``, ``down`` and ``clean``, the services, a run's control flow — without root.

It keeps, in memory, which labs and nodes "exist" and every call made, in order
(:attr:`FakeBackend.calls`), so a test can assert on the order of steps and on what is left
after a failure. Commands "run in a node" are answered by a :data:`Responder` the test gives
(default: success with empty output); processes "started in a node" are real, harmless
processes on the host (``sleep``), so waiting, stopping by pid and ``poll`` behave as they do
with a real backend, and ``down`` stops them. Nothing is sent on any network.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lab.backends.base import Backend, Progress, no_progress
from lab.errors import LabError
from lab.host import processes, shell
from lab.host.shell import Result
from lab.model.topology import Topology

#: How long a started process must run before it counts as listening.
READY_S = 0.3
#: Answers a command run in a node: (lab, node, argv) -> its result.
Responder = Callable[[str, str, Sequence[str]], Result]


def succeed(_lab: str, _node: str, argv: Sequence[str]) -> Result:
    """Every command succeeds and prints nothing."""
    return Result(tuple(argv), 0, "", "")


@dataclass
class Spawned:
    """A process started in a node: what was asked, and the stand-in that runs."""

    lab: str
    node: str
    argv: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


@dataclass
class FakeBackend(Backend):
    """Labs as records in memory; see the module's doc. ``fail_up_at``: the node at whose
    creation ``up`` raises (after creating the nodes before it), to test rollback;
    ``stand_in``: the program a spawned process really runs (default: a long sleep)."""

    responder: Responder = succeed
    fail_up_at: str | None = None
    stand_in: Callable[[Sequence[str]], list[str]] = field(
        default=lambda _argv: ["sleep", "600"])
    labs: dict[str, list[str]] = field(default_factory=dict)  # lab -> nodes made
    calls: list[tuple[str, ...]] = field(default_factory=list)
    spawned: list[Spawned] = field(default_factory=list)

    name = "fake"
    needs: ClassVar[dict[str, str]] = {}  # no outside program: nothing is built
    needs_root = False

    def preflight(self, topology: Topology) -> None:
        """Uplinks are taken as given: nothing real is attached."""

    def up(self, lab: str, topology: Topology, progress: Progress = no_progress) -> None:
        self.calls.append(("up", lab))
        self.labs[lab] = []
        for node in topology.nodes:
            if node.name == self.fail_up_at:
                self.down(lab)
                raise LabError(f"fake backend: creating node {node.name} failed")
            self.labs[lab].append(node.name)
            progress(f"node {node.name}")

    def down(self, lab: str) -> list[str]:
        self.calls.append(("down", lab))
        removed = []
        for s in [s for s in self.spawned if s.lab == lab]:
            if s.proc.poll() is None:
                processes.stop([s.proc.pid])
            s.proc.wait(timeout=10)
            self.spawned.remove(s)
            removed.append(f"process {s.proc.pid} in {s.node}")
        removed += [f"node {n}" for n in self.labs.pop(lab, [])]
        return removed

    def list_owned(self) -> list[str]:
        return sorted(self.labs)

    def node_argv(self, lab: str, node: str, argv: Sequence[str]) -> list[str]:
        """What runs "in" the node: the command itself is never run, only answered; a
        ``ping`` batch (lab.backends.probes) runs ``true``, so every probe gets a reply."""
        self._node(lab, node)
        return ["true"]

    def netns_path(self, lab: str, node: str) -> Path:
        return Path("/nonexistent/fake") / lab / node

    def exec(self, lab: str, node: str, argv: Sequence[str], *, check: bool = True,
             timeout: float = 30.0, input: str | None = None) -> Result:
        self._node(lab, node)
        self.calls.append(("exec", lab, node, *argv))
        res = self.responder(lab, node, argv)
        if check and not res.ok:
            raise LabError(f"fake backend: {' '.join(argv)} failed in {node}: {res.stderr}")
        return res

    def spawn(self, lab: str, node: str, argv: Sequence[str], *,
              log_path: Path | None = None) -> subprocess.Popen[bytes]:
        self._node(lab, node)
        self.calls.append(("spawn", lab, node, *argv))
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(f"fake backend: {' '.join(argv)}\n", encoding="utf-8")
        proc = shell.spawn(self.stand_in(argv))
        self.spawned.append(Spawned(lab, node, tuple(argv), proc))
        return proc

    def listening(self, lab: str, node: str, pid: int, port: int) -> bool:
        """A started process "listens" once it has run for READY_S (so one that exits at once,
        like a program refusing its arguments, is seen to exit first)."""
        return any(s.proc.pid == pid and s.proc.poll() is None
                   and time.monotonic() - s.started >= READY_S for s in self.spawned)

    def _node(self, lab: str, node: str) -> None:
        if node not in self.labs.get(lab, []):
            raise LabError(f"fake backend: no node {node!r} in lab {lab!r}")
