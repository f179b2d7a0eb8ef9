"""The docker backend: each node is a container, each segment an ``internal`` docker network.

Containers run the images of ``images/`` (built and cached by :mod:`lab.backends.docker.images`),
so a lab carries its own userland (strongSwan, OpenSSL, Python) whatever the host has. The plan
(:mod:`lab.backends.docker.plan`) is the same one ``teleradlab compose`` writes out.

Every container and network carries the label ``teleradlab.lab=<lab>`` and is named
``tl-<lab>.<node>`` / ``tl-<lab>.<segment>``, so ``down`` and ``clean`` find them by label alone.
As on the netns backend, a node's ``/run`` is its own directory of the host
(``/run/teleradlab/labs/<lab>/nodes/<node>/run``: daemons' sockets reachable from the host),
``/etc/hosts`` names every node, and the lab's data directory (``/var/lib/teleradlab/<lab>``) is
at the same path inside and outside, so services and the orchestrator name files alike.

Commands run inside a container by ``nsenter`` into its namespaces (network, mount, UTS, IPC,
PID) and root directory: they use the container's userland, end with the container, and are
ordinary child processes of the caller (their pid is known, so the generic service and status
code works unchanged). A host file a command names (e.g. a study to send) that the container
cannot see is copied into it, at the same path, first.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from lab.backends.base import Backend, Progress, no_progress
from lab.backends.docker import plan
from lab.backends.docker.images import ensure_images
from lab.backends.docker.plan import LABEL, NODE_LABEL, ContainerPlan, Plan
from lab.backends.netns import hosts_file
from lab.errors import LabError, LabNotFoundError
from lab.host import shell
from lab.host.shell import Result
from lab.host.wait import until
from lab.model.names import DATA_ROOT, RUN_ROOT, LabPaths, netns_name
from lab.model.topology import IPNetwork, Topology

READY_TIMEOUT = 30.0
SOCKET = Path("/var/run/docker.sock")
SYS_NET = Path("/sys/class/net")
GONE_TIMEOUT = 20.0


def _client(timeout: int = 120) -> Any:
    """A client of the local engine; LabError saying how to start one when none answers."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise LabError(
            f"no Docker engine answers ({exc}); install docker.io and start it "
            "(scripts/docker-engine start)"
        ) from None
    return client


def _subnets_in_use(client: Any) -> dict[IPNetwork, str]:
    """Every subnet of the engine's networks -> a description of its network."""
    out: dict[IPNetwork, str] = {}
    for net in client.networks.list():
        owner = (net.attrs.get("Labels") or {}).get(LABEL)
        what = f"docker network {net.name}" + (f" (lab {owner})" if owner else "")
        for subnet in plan.subnets_of((net.attrs.get("IPAM") or {}).get("Config") or []):
            out[subnet] = what
    return out


def _refuse_overlaps(topology: Topology, taken: dict[IPNetwork, str]) -> None:
    """The engine refuses networks whose subnets overlap: say which lab holds them, first."""
    clashes = [f"{seg.name} {prefix} overlaps {what}" for seg in topology.segments
               for prefix in seg.prefixes for subnet, what in taken.items()
               if prefix.version == subnet.version and prefix.overlaps(subnet)]
    if clashes:
        raise LabError("docker networks cannot share addresses, so two docker labs of one "
                       "address plan cannot run at once:\n  " + "\n  ".join(clashes))


def _bridge_ports(nets: list[Any]) -> list[Path]:
    """The host ends of the veth pairs plugged into the networks' bridges."""
    ports: list[Path] = []
    for net in nets:
        bridge = (net.attrs.get("Options") or {}).get("com.docker.network.bridge.name")
        brif = SYS_NET / (bridge or f"br-{net.id[:12]}") / "brif"
        if brif.is_dir():
            ports += [SYS_NET / p.name for p in brif.iterdir()]
    return ports


def _wait_gone(ports: list[Path]) -> None:
    """The kernel removes a container's veth pairs when it frees the container's network
    namespace, which it does in the background: wait for it, so that ``down`` returns with the
    host as it was."""
    until(lambda: not any(p.exists() for p in ports), GONE_TIMEOUT,
          what="host interfaces gone after their containers were removed",
          detail=lambda: "still present: " + ", ".join(p.name for p in ports if p.exists()))


class DockerBackend(Backend):
    name = "docker"
    needs: ClassVar[dict[str, str]] = {"core": "every lab", "docker": "the docker backend"}

    def __init__(self, root: Path = RUN_ROOT, data_root: Path = DATA_ROOT) -> None:
        self.root = root
        self.data_root = data_root
        self._pids: dict[tuple[str, str], int] = {}

    def paths(self, lab: str) -> LabPaths:
        return LabPaths(lab, self.root, self.data_root)

    # --- building -------------------------------------------------------------------------

    def up(self, lab: str, topology: Topology, progress: Progress = no_progress) -> None:
        client = _client(timeout=1800)
        try:
            images = ensure_images(client, progress)
            taken = _subnets_in_use(client)
            _refuse_overlaps(topology, taken)
            the_plan = plan.plan(topology, list(taken))
            progress(f"creating {len(the_plan.networks)} docker networks")
            self._networks(client, lab, the_plan)
            progress(f"starting {len(the_plan.containers)} containers")
            self._containers(client, lab, topology, the_plan, images)
            progress("waiting for every node to be configured")
            self._wait_ready(client, lab, the_plan)
        except BaseException:
            self.down(lab)
            raise

    def _networks(self, client: Any, lab: str, the_plan: Plan) -> None:
        import docker.errors
        import docker.types

        for net in the_plan.networks:
            pools = [docker.types.IPAMPool(subnet=str(s), gateway=str(g)) for s, g in net.subnets]
            try:
                client.networks.create(
                    netns_name(lab, net.segment),
                    driver="bridge",
                    internal=True,
                    enable_ipv6=net.ipv6,
                    ipam=docker.types.IPAMConfig(pool_configs=pools),
                    options={"com.docker.network.driver.mtu": str(net.mtu),
                             "com.docker.network.bridge.enable_ip_masquerade": "false"},
                    labels={LABEL: lab},
                )
            except docker.errors.APIError as exc:
                raise LabError(f"could not create the docker network for segment "
                               f"{net.segment} ({', '.join(str(s) for s, _ in net.subnets)}): "
                               f"{exc.explanation or exc}") from None

    def _containers(self, client: Any, lab: str, topology: Topology, the_plan: Plan,
                    images: dict[str, str]) -> None:
        paths = self.paths(lab)
        paths.data_dir.mkdir(parents=True, exist_ok=True)
        for c in the_plan.containers:
            paths.node_run(c.node).mkdir(parents=True, exist_ok=True)
            (paths.node_run(c.node) / plan.READY_FILE).unlink(missing_ok=True)
            paths.node_hosts(c.node).write_text(hosts_file(topology, c.node))
        with ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(self._container, client, lab, c, images[c.image])
                           for c in the_plan.containers]:
                future.result()

    def _container(self, client: Any, lab: str, c: ContainerPlan, image: str) -> None:
        """Create the container attached to all its networks, then start it."""
        api = client.api
        paths = self.paths(lab)
        binds = {
            str(paths.node_run(c.node)): {"bind": "/run", "mode": "rw"},
            str(paths.node_hosts(c.node)): {"bind": "/etc/hosts", "mode": "ro"},
            str(paths.data_dir): {"bind": str(paths.data_dir), "mode": "rw"},
        }
        host_config = api.create_host_config(
            binds=binds,
            cap_add=["NET_ADMIN"],
            devices=["/dev/net/tun:/dev/net/tun:rwm"] if c.tun else None,
            sysctls=dict(c.sysctls),
        )

        def endpoint(a: plan.Attachment) -> Any:
            return api.create_endpoint_config(
                ipv4_address=str(a.ipv4.ip) if a.ipv4 else None,
                ipv6_address=str(a.ipv6.ip) if a.ipv6 else None,
            )

        first, *rest = c.attachments
        created = api.create_container(
            image,
            command=["sh", "-c", c.script],
            name=netns_name(lab, c.node),
            hostname=c.node,
            stop_signal="SIGKILL",
            labels={LABEL: lab, NODE_LABEL: c.node, "teleradlab.role": c.role.value},
            host_config=host_config,
            networking_config=api.create_networking_config(
                {netns_name(lab, first.segment): endpoint(first)}
            ),
        )
        for a in rest:
            api.connect_container_to_network(
                created["Id"], netns_name(lab, a.segment),
                ipv4_address=str(a.ipv4.ip) if a.ipv4 else None,
                ipv6_address=str(a.ipv6.ip) if a.ipv6 else None,
            )
        api.start(created["Id"])

    def _wait_ready(self, client: Any, lab: str, the_plan: Plan) -> None:
        """Return once every node's script has marked its /run ready; LabError with the
        container's log if one stopped or took too long."""
        paths = self.paths(lab)
        waiting = [c.node for c in the_plan.containers]

        def log(node: str) -> str:
            ctr = client.containers.get(netns_name(lab, node))
            text: bytes = ctr.logs(tail=20)
            return f"node {node} ({ctr.status}):\n" + text.decode(errors="replace")

        def configured() -> bool:
            waiting[:] = [n for n in waiting
                          if not (paths.node_run(n) / plan.READY_FILE).exists()]
            for node in waiting:
                if client.containers.get(netns_name(lab, node)).status not in ("created",
                                                                               "running"):
                    raise LabError(f"a node stopped before it was configured: {log(node)}")
            return not waiting

        until(configured, READY_TIMEOUT, what="every node configured by its start script",
              detail=lambda: "\n".join(map(log, waiting)))

    # --- working inside nodes -------------------------------------------------------------

    def _pid(self, lab: str, node: str) -> int:
        key = (lab, node)
        pid = self._pids.get(key)
        if pid is not None and Path(f"/proc/{pid}").exists():
            return pid
        import docker.errors

        client = _client()
        try:
            ctr = client.containers.get(netns_name(lab, node))
        except docker.errors.NotFound:
            nodes = sorted(c.labels.get(NODE_LABEL, "?") for c in client.containers.list(
                all=True, filters={"label": f"{LABEL}={lab}"}))
            if not nodes:
                raise LabNotFoundError(f"no lab named {lab!r} is running") from None
            raise LabNotFoundError(
                f"lab {lab!r} has no node {node!r} (nodes: {', '.join(nodes)})") from None
        pid = int(ctr.attrs["State"]["Pid"])
        if not pid:
            raise LabError(f"the container of node {node} in lab {lab} is {ctr.status}")
        self._pids[key] = pid
        return pid

    def netns_path(self, lab: str, node: str) -> Path:
        """The network namespace of the container's first process (a path that does not exist
        when the container is not running)."""
        try:
            return Path(f"/proc/{self._pid(lab, node)}/ns/net")
        except LabError:
            return Path(f"/proc/<pid of {netns_name(lab, node)}>/ns/net")

    def node_argv(self, lab: str, node: str, argv: Sequence[str]) -> list[str]:
        """nsenter into the container (its root directory and working directory too), with the
        image's PATH and the lab's Python standing in for the caller's."""
        argv = list(argv)
        if argv and argv[0] == sys.executable:
            argv[0] = plan.PYTHON
        return [
            "nsenter", f"--target={self._pid(lab, node)}", "--net", "--mount", "--uts", "--ipc",
            "--pid", "--root", "--wd", "--",
            "env", f"PATH={plan.NODE_PATH}", "PYTHONPATH=/opt/teleradlab/src", *argv,
        ]

    def exec(self, lab: str, node: str, argv: Sequence[str], *, check: bool = True,
             timeout: float = 30.0, input: str | None = None) -> Result:
        self._stage(lab, node, argv)
        return super().exec(lab, node, argv, check=check, timeout=timeout, input=input)

    def spawn(self, lab: str, node: str, argv: Sequence[str], *,
              log_path: Path | None = None) -> subprocess.Popen[bytes]:
        self._stage(lab, node, argv)
        return super().spawn(lab, node, argv, log_path=log_path)

    def _stage(self, lab: str, node: str, argv: Sequence[str]) -> None:
        """Copy host files named in ``argv`` (as ``/path`` or ``--opt=/path``) that the container
        cannot see into it at the same path. The lab's data directory is shared already."""
        shared = self.paths(lab).data_dir
        files = []
        for arg in argv[1:]:
            value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
            path = Path(value)
            if (path.is_absolute() and path.is_file() and not path.is_relative_to(shared)
                    and not path.is_relative_to("/proc")):
                files.append(path)
        if not files:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in files:
                tar.add(str(f), arcname=str(f).lstrip("/"))
        client = _client()
        client.containers.get(netns_name(lab, node)).put_archive("/", buf.getvalue())

    # --- finding and removing -------------------------------------------------------------

    def _release_interfaces(self, ctr: Any) -> None:
        """Give a running container's interfaces back the names the engine gave them, so that
        it releases them (and their host ends) at once when the container goes; without them
        it would only notice in its periodic cleanup, up to a minute later. Without the note of
        those names (a crashed lab whose state is gone), delete the interfaces instead."""
        pid = int(ctr.attrs.get("State", {}).get("Pid") or 0)
        if not pid:
            return
        note = self.paths(ctr.labels.get(LABEL, "")).node_run(
            ctr.labels.get(NODE_LABEL, "")) / plan.IFNAMES_FILE
        enter = ["nsenter", f"--target={pid}", "--net"]
        if note.exists():
            batch = "".join(f"link set dev {model} down\nlink set dev {model} name {engine}\n"
                            for model, engine in (ln.split() for ln in note.read_text()
                                                  .splitlines() if ln.strip()))
            shell.run([*enter, "ip", "-batch", "-"], input=batch, check=False)
        else:
            shell.run([*enter, "sh", "-c", "for d in $(ip -o link | awk -F': ' '{print $2}' "
                       "| cut -d@ -f1); do [ \"$d\" = lo ] || ip link del dev \"$d\"; done"],
                      check=False)

    def list_owned(self) -> list[str]:
        if not SOCKET.exists() and "DOCKER_HOST" not in os.environ:
            return []  # no engine on this machine: no docker lab can exist
        client = _client()
        labs = {c.labels.get(LABEL) for c in client.containers.list(
            all=True, filters={"label": LABEL})}
        labs |= {n.attrs.get("Labels", {}).get(LABEL) for n in client.networks.list(
            filters={"label": LABEL})}
        return sorted(lab for lab in labs if lab)

    def down(self, lab: str) -> list[str]:
        """Remove the lab's containers (which ends every process in them) and networks, found
        by label, then its node directories on the host."""
        removed: list[str] = []
        if SOCKET.exists() or "DOCKER_HOST" in os.environ:
            client = _client()
            ctrs = client.containers.list(all=True, filters={"label": f"{LABEL}={lab}"})
            nets = client.networks.list(filters={"label": f"{LABEL}={lab}"})
            ports = _bridge_ports(nets)
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(self._release_interfaces, ctrs))
                list(pool.map(lambda c: c.remove(force=True, v=True), ctrs))
            removed += [f"container {c.name}" for c in ctrs]
            for net in nets:
                net.remove()
                removed.append(f"docker network {net.name}")
            _wait_gone(ports)
        self._pids = {k: v for k, v in self._pids.items() if k[0] != lab}
        nodes_dir = self.paths(lab).state_dir / "nodes"
        if nodes_dir.exists():
            shutil.rmtree(nodes_dir)
            removed.append(f"node directories {nodes_dir}")
        with contextlib.suppress(OSError):
            self.root.rmdir()
        return removed



def build_images(progress: Progress = no_progress) -> dict[str, str]:
    """Build (or find cached) every image the backend runs; image name -> tag."""
    return ensure_images(_client(timeout=1800), progress)
