"""Applying a :class:`~lab.model.topology.Wan` to a running lab's WAN router, by the kernel path
(netem, with tbf for the rate) where the kernel has sch_netem, else by the userspace emulator;
and the record of what was applied (``/run/teleradlab/labs/LAB/wan.json``), which ``wan show``,
``run`` and the result rows read.

Never silently unimpaired: a requested impairment is applied or the call fails; the userspace
path switches the router's kernel forwarding off, so a dead emulator cuts the WAN rather than
opening it, and :func:`check` turns a dead emulator into an error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.backends.base import Lab
from lab.errors import LabError
from lab.host import files, programs, shell
from lab.host.processes import stop
from lab.model.names import LabPaths
from lab.model.topology import Topology, Wan
from lab.model.wan import describe
from lab.wan import netem, userspace

PathChoice = Literal["auto", "netem", "userspace"]
#: The path that impairs the WAN ('' when nothing does).
WanPath = Literal["", "netem", "userspace"]
FORWARDING = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")


class WanState(BaseModel):
    """What is applied, as ``wan.json`` holds it (written and read only through this model):
    the profile, the path (netem | userspace | '' when unimpaired), the emulator's pid, why
    this path was taken, and the last fidelity measurement (:func:`lab.wan.measure.fidelity`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    wan: Wan = Field(default_factory=Wan)
    path: WanPath = ""
    pid: int = 0
    why: str = ""
    fidelity: dict[str, Any] = Field(default_factory=dict)


def state_file(paths: LabPaths) -> Path:
    return paths.state_dir / "wan.json"


def log_dir(paths: LabPaths) -> Path:
    """The emulator's log and counters, in the lab's data dir (same path inside nodes)."""
    return paths.data_dir / "wan"


def read_state(paths: LabPaths) -> WanState:
    """The recorded state; the unimpaired one if nothing was recorded."""
    path = state_file(paths)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return WanState()
    try:
        return WanState.model_validate_json(text)
    except ValidationError as exc:
        raise LabError(f"{path} is not a WAN state this version understands: {exc}") from None


def write_state(paths: LabPaths, state: WanState) -> None:
    """Record ``state`` (atomically: a reader sees the old record or the new one)."""
    files.write_json(state_file(paths), state)


def router_links(topology: Topology) -> tuple[userspace.Link, userspace.Link]:
    """The router's interfaces towards the first and second site (MACs filled in later)."""
    first, second = topology.sites[:2]
    return userspace.Link(first.gateway, ""), userspace.Link(second.gateway, "")


def apply(lab: Lab, wan: Wan, prefer: PathChoice = "auto") -> WanState:
    """Replace whatever impairs the WAN by ``wan``; returns (and records) the new state.

    The path is chosen (and the emulator built) before anything changes, so a refusal leaves
    the WAN as it was; a failure after that leaves it reset, and recorded so."""
    router = lab.topology.wan_router
    a, b = router_links(lab.topology)
    netns_path = lab.netns_path(router)
    path, why = choose_path(netns_path, a.ifname, prefer) if wan.impaired else ("", "")
    helper = (userspace.staged(userspace.binary(), lab.paths.data_dir / "wan")
              if path == "userspace" else None)
    reset(lab)
    if not wan.impaired:
        return WanState()
    pid = 0
    write_state(lab.paths, WanState(wan=wan, path=path, why=why))  # what reset must undo
    try:
        _offloads_off(lab)
        if helper is None:
            netem.apply(netns_path, {b.ifname: wan.forward, a.ifname: wan.reverse})
        else:
            pid = _start_emulator(lab, wan, helper)
        state = WanState(wan=wan, path=path, pid=pid, why=why)
        write_state(lab.paths, state)
    except BaseException:
        if pid:
            write_state(lab.paths, WanState(wan=wan, path=path, pid=pid, why=why))  # for reset
        reset(lab)
        raise
    return state


def kernel_has_netem() -> bool:
    """Whether this kernel takes a netem qdisc, asked before any lab exists: on the loopback of
    a throwaway network namespace that vanishes with the probe (``unshare --net``), so nothing
    is left behind. Needs root, like building a lab."""
    programs.require({"core": "the probe for sch_netem"})
    argv = ["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    return shell.run(argv, check=False, timeout=10).ok


def choose_path(netns_path: Path, ifname: str, prefer: PathChoice) -> tuple[WanPath, str]:
    """(netem | userspace, why): netem where the kernel has it, unless told otherwise."""
    if prefer == "userspace":
        return "userspace", "asked for userspace"
    ok, detail = netem.available(netns_path, ifname)
    if prefer == "netem" and not ok:
        raise LabError(f"the kernel path was asked for, but {detail}")
    return ("netem", detail) if ok else ("userspace", f"no sch_netem here; {detail}")


def _offloads_off(lab: Lab) -> None:
    topology = lab.topology
    for site in topology.sites:
        lab.exec(site.gateway, [sys.executable, "-m", "lab.wan.offloads", topology.wan_router])
    lab.exec(topology.wan_router, [sys.executable, "-m", "lab.wan.offloads",
                                   *(s.gateway for s in topology.sites)])


def _start_emulator(lab: Lab, wan: Wan, helper: Path) -> int:
    topology = lab.topology
    router = topology.wan_router
    links = tuple(
        userspace.Link(s.gateway, _mac(lab, s.gateway, router))
        for s in topology.sites[:2]
    )
    local = [str(a.ip) for a in topology.node(router).addresses()]
    logs = log_dir(lab.paths)
    mtu = max(i.mtu for i in topology.node(router).interfaces)
    args = userspace.argv(helper, logs / "stats.json", (links[0], links[1]), local,
                          wan.forward, wan.reverse, mtu=mtu)
    _forwarding(lab, router, on=False)
    return userspace.start(lab, router, args, logs / "stats.json", logs / "emulator.log")


def _mac(lab: Lab, node: str, ifname: str) -> str:
    res = lab.exec(node, ["cat", f"/sys/class/net/{ifname}/address"])
    return res.stdout.strip()


def _forwarding(lab: Lab, node: str, *, on: bool) -> None:
    """Kernel forwarding in the WAN router, written from the host into the node's network
    namespace only (a container's own /proc/sys is read-only)."""
    value = "1" if on else "0"
    script = "; ".join(f"echo {value} > {f}" for f in FORWARDING)
    shell.run(["nsenter", f"--net={lab.netns_path(node)}", "sh", "-c", script])


def reset(lab: Lab) -> None:
    """Back to the unimpaired WAN: stop the emulator, remove qdiscs, kernel forwarding on."""
    state = read_state(lab.paths)
    router = lab.topology.wan_router
    if state.pid and userspace.running(lab, router, state.pid):
        stop([state.pid])
    if state.path == "netem":
        netem.reset(lab.netns_path(router), [s.gateway for s in lab.topology.sites])
    _forwarding(lab, router, on=True)
    write_state(lab.paths, WanState())


def check(lab: Lab) -> WanState:
    """The applied state; LabError if the emulator it needs has stopped."""
    state = read_state(lab.paths)
    if state.path == "userspace" and not userspace.running(
            lab, lab.topology.wan_router, state.pid):
        log = log_dir(lab.paths) / "emulator.log"
        raise LabError(
            f"the WAN emulator (pid {state.pid}, {describe(state.wan.forward)}) has stopped, "
            f"so the WAN is cut; 'teleradlab wan set' restarts it. Its log ({log}):\n"
            f"{userspace.tail(log)}")
    return state


def counters(paths: LabPaths) -> dict[str, Any]:
    """The emulator's packet counters (refreshed every second), or {} without an emulator."""
    try:
        doc: dict[str, Any] = json.loads((log_dir(paths) / "stats.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc


def record_fidelity(paths: LabPaths, fidelity: dict[str, Any]) -> None:
    """Keep the last fidelity measurement beside the state it measured."""
    write_state(paths, read_state(paths).model_copy(update={"fidelity": fidelity}))

