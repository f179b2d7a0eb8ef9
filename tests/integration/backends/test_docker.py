"""The docker backend, on a real engine: every shipped topology comes up as containers on
internal networks and proves its reachability; plain DICOM runs pass and are recorded as docker
runs; gateways can run strongSwan's userspace IPsec; a failed ``up`` and ``clean`` leave no
labelled container or network. Lab names start with ``docker-`` (this branch's prefix).

Without an engine these tests are skipped on a developer machine and fail under CI (where
scripts/test starts one)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from lab import backends
from lab import topology as topology_file
from lab.backends.docker import images
from lab.backends.docker.backend import DockerBackend, _client
from lab.backends.docker.plan import LABEL
from lab.errors import LabError
from lab.model.names import LabPaths
from lab.model.routing import probes
from lab.model.topology import Family
from lab.runtime import lifecycle, state
from lab.runtime.status import live_nodes
from lab.study import run
from lab.study.results import read_csv
from lab.topology import shipped
from tests.unit.test_lock import LOCK, parse_lock

from ..conftest import TOPOLOGIES, host_links, teleradlab


@pytest.fixture(scope="module")
def engine() -> Any:
    if os.geteuid() != 0:
        pytest.skip("needs root")  # the autouse fixture reports this properly
    try:
        return _client()
    except LabError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"docker tests must run under CI: {exc}")
        pytest.skip(str(exc))


def labelled(client: Any, lab: str) -> list[str]:
    """Every container and network labelled as lab ``lab``."""
    filters = {"label": f"{LABEL}={lab}"}
    return [c.name for c in client.containers.list(all=True, filters=filters)] + [
        n.name for n in client.networks.list(filters=filters)
    ]


@pytest.fixture
def docker_lab(engine: Any) -> Iterator[list[str]]:
    """Names of the labs a test makes; each is removed afterwards, and nothing may remain."""
    made: list[str] = []
    links = host_links()
    yield made
    for lab in made:
        if lab in lifecycle.running() or labelled(engine, lab):
            lifecycle.down(lab, backend="docker")
        assert not labelled(engine, lab), f"left behind by {lab}"
        assert not LabPaths(lab).state_dir.exists() and not LabPaths(lab).data_dir.exists()
    assert host_links() <= links, f"host interfaces left: {host_links() - links}"


def _sysctl(name: str) -> str:
    return Path("/proc/sys", name.replace(".", "/")).read_text().strip()


_VERSIONS = ("import importlib.metadata as m, json; "
             "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")


def test_the_runtime_image_has_the_locked_versions(engine: Any) -> None:
    """The images install requirements.lock: inside the runtime image (which every role image
    builds FROM), each locked package is at its locked version, but for the host's own
    (images.HOST_ONLY: the probe's TLS scanner), which it does not hold."""
    runtime = images.ensure_images(engine)["runtime"]
    out = engine.containers.run(runtime, ["python3", "-c", _VERSIONS], remove=True,
                                network_mode="none")
    installed = {canonicalize_name(k): v for k, v in json.loads(out).items()}
    lock = parse_lock(images.requirements())
    assert set(lock) == set(parse_lock(LOCK.read_text(encoding="utf-8"))) - images.HOST_ONLY
    assert not images.HOST_ONLY & set(installed)
    wrong = {n: (installed.get(n, "not installed"), v) for n, (v, _, _) in lock.items()
             if installed.get(n) != v}
    assert wrong == {}, f"in {runtime} (installed, locked): {wrong}"


@pytest.mark.parametrize("name", shipped())
def test_shipped_topology_comes_up_on_docker(name: str, engine: Any,
                                             docker_lab: list[str]) -> None:
    lab_name = f"docker-{name}"
    docker_lab.append(lab_name)
    forwarding = (_sysctl("net.ipv4.ip_forward"), _sysctl("net.ipv6.conf.all.forwarding"))
    built = lifecycle.build(TOPOLOGIES / f"{name}.yaml", lab_name, backend="docker",
                            start_services=False)
    lab = built.lab
    expected = probes(lab.topology.nodes)
    assert len(built.probes) == len(expected) > 0 and all(r.ok for r in built.probes)
    # Every node is a labelled container on labelled internal networks.
    client = engine
    ctrs = client.containers.list(filters={"label": f"{LABEL}={lab_name}"})
    assert sorted(c.labels["teleradlab.node"] for c in ctrs) == sorted(lab.topology.node_names)
    nets = client.networks.list(filters={"label": f"{LABEL}={lab_name}"})
    assert len(nets) == len(lab.topology.segments)
    assert all(n.attrs["Internal"] for n in nets)
    # Inside, the interfaces have the model's names and exactly its addresses per family.
    for live in live_nodes(lab):
        node = lab.topology.node(live.name)
        assert sorted(i.name for i in live.interfaces) == sorted(i.name for i in node.interfaces)
        for iface in live.interfaces:
            model = node.interface(iface.name)
            fams = lab.topology.segment(model.segment).families
            glob = {a for a in iface.addresses if not a.startswith("fe80:")}
            assert glob == {str(a) for a in model.addresses}, (live.name, iface.name)
            if Family.IPV6 not in fams:
                assert not any(":" in a for a in iface.addresses), (live.name, iface)
    # The host's own forwarding is left as it was.
    assert (_sysctl("net.ipv4.ip_forward"), _sysctl("net.ipv6.conf.all.forwarding")) == forwarding
    lifecycle.down(lab_name)
    assert not labelled(client, lab_name)


@pytest.mark.parametrize("name", ["ipv6", "dualstack"])
def test_plain_run_on_docker(name: str, docker_lab: list[str], tmp_path: Path) -> None:
    lab_name = f"docker-run-{name}"
    docker_lab.append(lab_name)
    lifecycle.up(TOPOLOGIES / f"{name}.yaml", lab_name, backend="docker")
    opts = run.RunOptions(topology=None, lab=lab_name, modalities=("CT", "MR"),
                                 objects=4, out=tmp_path / "out")
    result = run.execute(opts)
    families = {"ipv6": {"ipv6"}, "dualstack": {"ipv4", "ipv6"}}[name]
    assert {r.family for r in result.rows} == families
    assert result.ok and all(r.backend == "docker" for r in result.rows)
    for op in ("store", "move"):
        done = [r for r in result.rows if r.operation == op]
        assert len(done) == 2 * len(families)
        assert all(r.verified == "yes" and r.objects == 4 and r.bytes > 0 for r in done)
    csv = (tmp_path / "out" / "results.csv").read_text()
    assert csv.count(",docker,none,") == len(result.rows)
    # The PACS in its container stored every object sent, in the lab's shared data directory.
    store = LabPaths(lab_name).node_data("pacs") / "store"
    assert sum(1 for p in store.rglob("*.dcm")) >= 8
    # status lists the services as processes of their nodes; exec runs in the node's own
    # userland and passes the exit code on.
    doc = json.loads(teleradlab("status", lab_name, "--json").stdout)["labs"][0]
    assert doc["backend"] == "docker"
    pacs = next(n for n in doc["nodes"] if n["name"] == "pacs")
    assert any("lab.dicom.pacs" in cmd and "--ae=PACS" in cmd for _, cmd in pacs["processes"])
    res = teleradlab("exec", "--lab", lab_name, "pacs", "--", "sh", "-c",
                     "python -c 'import lab, sys; print(sys.prefix)'; exit 3", check=False)
    assert res.returncode == 3 and res.stdout.strip() == "/opt/teleradlab"


@pytest.mark.parametrize(("name", "security"), [
    ("ipv6", "ipsec"), ("mixed-4over6", "ipsec"), ("ipv6", "tls"), ("mixed-4over6", "tls")])
def test_protected_run_on_docker(name: str, security: str, docker_lab: list[str],
                                 tmp_path: Path) -> None:
    """The lab's own IPsec (charon through VICI) and DICOM TLS layers, in containers."""
    lab_name = f"docker-{security}-{name}"[:24]
    docker_lab.append(lab_name)
    overrides = {"security": topology_file.security_override(security)}
    lifecycle.up(TOPOLOGIES / f"{name}.yaml", lab_name, backend="docker", overrides=overrides)
    opts = run.RunOptions(topology=None, lab=lab_name, modalities=("CT",), objects=3,
                                 out=tmp_path / "out")
    result = run.execute(opts)
    assert result.rows and result.ok
    assert all(r.backend == "docker" and r.security == security for r in result.rows)
    assert all(r.verified == "yes" for r in result.rows if r.operation in ("store", "move"))
    tunnel = security == "ipsec" or name.startswith("mixed")
    for r in result.rows:
        assert (r.esp_path == "libipsec") == tunnel or r.esp_path == "kernel"
        if tunnel and r.operation == "store":
            assert r.sa_bytes > r.bytes
        if security == "tls":
            assert r.tls_version.startswith("TLSv1") and r.cipher


def test_sweep_on_docker(docker_lab: list[str], tmp_path: Path) -> None:
    """teleradlab sweep --backend docker: its labs are containers, its rows say so."""
    docker_lab += ["docker-sw-1", "docker-sw-2"]
    sweep_file = tmp_path / "two.yaml"
    sweep_file.write_text("matrix: {topology: [ipv6], security: [{mode: none}, {mode: tls}]}\n"
                          "objects: 1\n")
    out = tmp_path / "out"
    teleradlab("sweep", str(sweep_file), "--out", str(out), "--name", "docker-sw",
               "--backend", "docker", timeout=900)
    state = json.loads((out / "state.json").read_text())["cases"]
    assert [s["status"] for s in state.values()] == ["done", "done"], state
    rows = read_csv(out / "results.csv")
    assert len(rows) == 8 and all(r["ok"] == "True" and r["backend"] == "docker" for r in rows)
    assert {r["security"] for r in rows} == {"none", "tls"}


def test_wan_profile_on_docker(docker_lab: list[str]) -> None:
    """The lab's WAN layer (here its userspace emulator) impairs the wan container's path."""
    lab_name = "docker-wan"
    docker_lab.append(lab_name)
    teleradlab("up", "ipv6", "--name", lab_name, "--backend", "docker", "--no-services",
               "--wan", "delay=25ms", timeout=600)
    res = teleradlab("exec", "--lab", lab_name, "modality", "--", "ping", "-n", "-q", "-c", "5",
                     "-i", "0.2", "2001:db8:2::10")
    avg = float(re.search(r"= [\d.]+/([\d.]+)/", res.stdout).group(1))  # type: ignore[union-attr]
    assert 50.0 <= avg <= 55.0, res.stdout  # RTT = 2 x 25 ms, max(1 ms, 10%)
    shown = teleradlab("wan", "show", "--lab", lab_name).stdout
    assert "delay 25ms" in shown and ("userspace" in shown or "netem" in shown)


def test_measured_wan_run_on_docker(docker_lab: list[str], tmp_path: Path) -> None:
    """``run`` measures an impaired WAN's fidelity between the gateway containers: ping and
    iperf3 come with the gateway image (its registry features include wan-measure)."""
    lab_name = "docker-measure"
    docker_lab.append(lab_name)
    teleradlab("up", "ipv4", "--name", lab_name, "--backend", "docker", "--wan",
               "delay=10ms,rate=20mbit", timeout=600)
    out = tmp_path / "out"
    teleradlab("run", "--lab", lab_name, "--objects", "1", "--out", str(out), timeout=600)
    fidelity = json.loads((out / "run.json").read_text())["wan"]["fidelity"]
    assert fidelity["between"].startswith("gw-a -> gw-b"), fidelity
    assert 20.0 <= fidelity["rtt_measured_ms"] <= 23.0, fidelity  # 2 x 10 ms
    assert abs(fidelity["rate_measured_mbit"] - 20) <= 2, fidelity


_CHARON = """charon {
  load = random nonce openssl pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink \
socket-default vici kdf
}
swanctl { load = pem pkcs1 x509 revocation constraints pubkey openssl random }
"""
_SWANCTL = """connections {{ lab {{
  version = 2
  local_addrs = {local}
  remote_addrs = {remote}
  proposals = aes128-sha256-x25519
  local {{ auth = psk
    id = {me} }}
  remote {{ auth = psk
    id = {peer} }}
  children {{ net {{ local_ts = {local_ts}
    remote_ts = {remote_ts}
    esp_proposals = aes128gcm16 }} }}
}} }}
secrets {{ ike-1 {{ id-1 = gw-a
  id-2 = gw-b
  secret = "docker-backend-test-only" }} }}
"""


def test_gateways_run_a_strongswan_tunnel_4in6(docker_lab: list[str]) -> None:
    """What strongSwan needs in the gateway containers (NET_ADMIN and /dev/net/tun for
    kernel-libipsec's TUN device, a private /run for its pid file and vici socket, reachable
    from the host): a PSK tunnel joins the IPv4 sites of mixed-4over6 across the IPv6 WAN, and
    the wan container sees only ESP between the gateways. (The lab's own IPsec layer will
    configure this through VICI; here swanctl does, to test the backend alone.)"""
    lab_name = "docker-ipsec"
    docker_lab.append(lab_name)
    lab = lifecycle.up(TOPOLOGIES / "mixed-4over6.yaml", lab_name, backend="docker",
                       start_services=False)
    topo, paths, backend = lab.topology, LabPaths(lab_name), DockerBackend()
    procs = []
    try:
        for me, peer in (("gw-a", "gw-b"), ("gw-b", "gw-a")):
            d = paths.data_dir / "ipsec" / me
            d.mkdir(parents=True)
            (d / "strongswan.conf").write_text(_CHARON)
            lan = {n: topo.node(n).interface("lan").addresses[0].network for n in (me, peer)}
            (d / "swanctl.conf").write_text(_SWANCTL.format(
                local=topo.node(me).interface("wan").addresses[0].ip,
                remote=topo.node(peer).interface("wan").addresses[0].ip,
                me=me, peer=peer, local_ts=lan[me], remote_ts=lan[peer]))
            env = ["env", f"STRONGSWAN_CONF={d / 'strongswan.conf'}"]
            procs.append(backend.spawn(lab_name, me, [*env, "/usr/lib/ipsec/charon"],
                                       log_path=d / "charon.log"))
            vici = paths.node_run(me) / "charon.vici"
            deadline = time.monotonic() + 10
            while not vici.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert vici.is_socket(), (d / "charon.log").read_text()
            backend.exec(lab_name, me, [*env, "swanctl", "--load-all", "--file",
                                        str(d / "swanctl.conf")])
        assert "ipsec0" in backend.exec(lab_name, "gw-a", ["ip", "-br", "link"]).stdout
        init = backend.exec(lab_name, "gw-a", [*env_of(paths, "gw-a"), "swanctl", "--initiate",
                                               "--child", "net"], timeout=30, check=False)
        assert "CHILD_SA net{" in init.stdout and init.returncode == 0, init.stdout
        capture = backend.spawn(lab_name, "wan", ["timeout", "10", "tcpdump", "-nli", "gw-a",
                                                  "-c", "4", "udp port 4500"],
                                log_path=paths.data_dir / "wan.txt")
        time.sleep(1)
        ping = backend.exec(lab_name, "modality", ["ping", "-n", "-q", "-c", "3", "-i", "0.2",
                                                   "-w", "5", "198.18.2.10"], check=False)
        assert ping.returncode == 0, ping.stdout
        capture.wait(timeout=15)
        esp = (paths.data_dir / "wan.txt").read_text()
        assert esp.count("ESP(spi=") >= 4, esp
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def env_of(paths: LabPaths, gateway: str) -> list[str]:
    return ["env", f"STRONGSWAN_CONF={paths.data_dir / 'ipsec' / gateway / 'strongswan.conf'}"]


def test_wan_container_shapes_and_sees_site_traffic(docker_lab: list[str]) -> None:
    """Impairments go in the wan container's own namespace: a tbf qdisc there (the wan image's
    tc, the container's NET_ADMIN) carries the modality's pings to the PACS."""
    lab_name = "docker-wan"
    docker_lab.append(lab_name)
    lifecycle.up(TOPOLOGIES / "ipv4.yaml", lab_name, backend="docker", start_services=False)
    backend = DockerBackend()
    backend.exec(lab_name, "wan", ["tc", "qdisc", "add", "dev", "gw-b", "root", "tbf", "rate",
                                   "20mbit", "burst", "32kb", "latency", "100ms"])
    ping = backend.exec(lab_name, "modality", ["ping", "-n", "-q", "-c", "5", "-i", "0.2",
                                               "198.18.2.10"], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    stats = backend.exec(lab_name, "wan", ["tc", "-s", "qdisc", "show", "dev", "gw-b"]).stdout
    sent = re.search(r"qdisc tbf .*\n\s*Sent \d+ bytes (\d+) pkt", stats)
    assert sent and int(sent.group(1)) >= 5, stats


def test_compose_file_brings_the_lab_up_by_hand(engine: Any, docker_lab: list[str],
                                                tmp_path: Path) -> None:
    """docker-compose with the file ``teleradlab compose`` writes: the same addresses and
    routes (pings across the sites in both families), labelled so that ``down`` finds it."""
    lab_name = "docker-compose"
    docker_lab.append(lab_name)
    file = tmp_path / "lab.yaml"
    teleradlab("compose", "dualstack", "--name", lab_name, "-o", str(file))
    subprocess.run(["docker-compose", "-f", str(file), "-p", lab_name, "up", "-d"], check=True,
                   capture_output=True, timeout=120)

    def node(name: str) -> Any:
        found = engine.containers.list(filters={"label": [f"{LABEL}={lab_name}",
                                                          f"teleradlab.node={name}"]})
        assert len(found) == 1
        return found[0]

    modality = node("modality")
    deadline = time.monotonic() + 30
    while modality.exec_run(["test", "-e", "/run/teleradlab-ready"]).exit_code != 0:
        assert time.monotonic() < deadline, modality.logs().decode()
        time.sleep(0.2)
    for target in ("198.18.2.10", "2001:db8:2::10"):
        res = modality.exec_run(["ping", "-n", "-c", "1", "-w", "5", target])
        assert res.exit_code == 0, res.output.decode()
    assert "gw-a" in modality.exec_run(["ip", "-br", "link"]).output.decode()
    assert lab_name in backends.get("docker").list_owned()


def test_up_refuses_a_second_lab_on_the_same_addresses(engine: Any,
                                                       docker_lab: list[str]) -> None:
    docker_lab += ["docker-first", "docker-second"]
    lifecycle.up(TOPOLOGIES / "ipv4.yaml", "docker-first", backend="docker",
                 start_services=False)
    with pytest.raises(LabError, match=r"lan-a 198\.18\.1\.0/24 overlaps docker network "
                       r"tl-docker-first\.lan-a \(lab docker-first\)"):
        lifecycle.up(TOPOLOGIES / "ipv4.yaml", "docker-second", backend="docker",
                     start_services=False)
    assert not labelled(engine, "docker-second")
    assert "docker-second" not in lifecycle.running()
    assert labelled(engine, "docker-first")  # the other lab is untouched


def test_interrupted_up_leaves_nothing(engine: Any, docker_lab: list[str]) -> None:
    """SIGTERM while the containers are being made: everything made so far is removed."""
    lab_name = "docker-interrupted"
    docker_lab.append(lab_name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", str(TOPOLOGIES / "dualstack.yaml"), "--backend",
         "docker", "--name", lab_name], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "starting" in line and "containers" in line:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not labelled(engine, lab_name)
    assert lab_name not in lifecycle.running()


def test_clean_removes_every_labelled_container_and_network(engine: Any,
                                                            docker_lab: list[str]) -> None:
    """After a crash (no record left) and with a stray labelled network, ``clean --backend
    docker`` finds everything by label."""
    docker_lab += ["docker-crashed", "docker-stray"]
    lifecycle.up(TOPOLOGIES / "ipv6.yaml", "docker-crashed", backend="docker",
                 start_services=False)
    state.remove("docker-crashed")
    engine.networks.create("tl-docker-stray.x", internal=True, labels={LABEL: "docker-stray"})
    assert labelled(engine, "docker-crashed") and labelled(engine, "docker-stray")
    out = teleradlab("clean", "--backend", "docker").stdout
    assert "docker-crashed: container tl-docker-crashed.pacs" in out
    assert not labelled(engine, "docker-crashed") and not labelled(engine, "docker-stray")
    again = teleradlab("clean", "--backend", "docker").stdout
    assert "docker-crashed" not in again and "docker-stray" not in again
