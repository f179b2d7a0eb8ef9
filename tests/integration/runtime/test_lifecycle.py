"""Real labs: every shipped topology comes up, reaches what it should, and goes away cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.model.routing import probes
from lab.model.topology import Family
from lab.topology import load

from ..conftest import REPO, TOPOLOGIES, leftovers, netns_names, teleradlab

SHIPPED = sorted(TOPOLOGIES.glob("*.yaml"))


def _status(lab: str) -> dict[str, object]:
    doc = json.loads(teleradlab("status", lab, "--json").stdout)
    (one,) = doc["labs"]
    assert isinstance(one, dict)
    return one


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_topology_up_reach_down(path: Path, clean_host: None) -> None:
    topo = load(path)
    lab = f"it-{path.stem}"
    out = teleradlab("up", str(path), "--name", lab).stdout
    expected = probes(topo.nodes)
    assert f"reachability: {len(expected)} pings answered" in out
    assert len(netns_names(f"tl-{lab}.")) == len(topo.nodes)

    # What the kernel has matches the model: every configured address is on its interface.
    live = {n["name"]: n for n in _status(lab)["nodes"]}  # type: ignore[union-attr]
    for node in topo.nodes:
        ifaces = {i["name"]: i for i in live[node.name]["interfaces"]}
        for iface in node.interfaces:
            got = ifaces[iface.name]["addresses"]
            assert ifaces[iface.name]["state"] == "up"
            for addr in iface.addresses:
                assert str(addr) in got
            if Family.IPV6 not in topo.segment(iface.segment).families:
                # An IPv4-only segment carries no IPv6 at all, not even link-local.
                assert not [a for a in got if ":" in a], (node.name, iface.name, got)

    # The sites reach each other end to end in every family the WAN routes.
    src, dst = topo.sites[0].hosts[0], topo.sites[1].hosts[0]
    for addr in topo.node(dst).addresses():
        routed = any(p.source == src and p.target == addr.ip for p in expected)
        res = teleradlab(
            "exec", "--lab", lab, src, "--", "ping", "-c", "1", "-W", "2", str(addr.ip), check=False
        )
        assert (res.returncode == 0) == routed, (src, addr, res.stdout, res.stderr)
    if topo.notes:
        assert "IPsec tunnel" in out

    teleradlab("down", lab)
    assert not any(leftovers(lab).values()), leftovers(lab)


def test_exec_runs_inside_the_node(clean_host: None) -> None:
    teleradlab("up", "ipv4", "--name", "it-exec")
    try:
        assert (
            teleradlab(
                "exec", "--lab", "it-exec", "modality", "--", "sh", "-c", "exit 7", check=False
            ).returncode
            == 7
        )
        assert (
            teleradlab("exec", "--lab", "it-exec", "pacs", "--", "hostname").stdout.strip()
            == "pacs"
        )
        # Names resolve through the node's own /etc/hosts.
        teleradlab("exec", "--lab", "it-exec", "modality", "--", "ping", "-c", "1", "pacs")
        # Each node has its own /run, visible from the host under the lab's state directory.
        teleradlab("exec", "--lab", "it-exec", "modality", "--", "touch", "/run/marker")
        node_run = Path("/run/teleradlab/labs/it-exec/nodes")
        assert (node_run / "modality/run/marker").exists()
        assert (
            teleradlab(
                "exec", "--lab", "it-exec", "pacs", "--", "test", "-e", "/run/marker", check=False
            ).returncode
            == 1
        )
        bad = teleradlab("exec", "--lab", "it-exec", "nosuch", "--", "true", check=False)
        assert bad.returncode == 1
        assert "no node 'nosuch'" in bad.stderr and "modality" in bad.stderr
    finally:
        teleradlab("down", "it-exec")


def test_processes_are_listed_and_stopped_on_down(clean_host: None) -> None:
    teleradlab("up", "ipv4", "--name", "it-proc")
    # A background process left running inside a node, as a daemon would be.
    subprocess.Popen(
        [sys.executable, "-m", "lab", "exec", "--lab", "it-proc", "wan", "--", "sleep", "300"],
        cwd=REPO,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        wan = next(n for n in _status("it-proc")["nodes"] if n["name"] == "wan")  # type: ignore
        if any("sleep 300" in cmd for _, cmd in wan["processes"]):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the process started in the node is not listed by status")
    teleradlab("down", "it-proc")
    assert not leftovers("it-proc")["processes"]


def test_two_labs_run_side_by_side(clean_host: None) -> None:
    teleradlab("up", "ipv4", "--name", "it-one")
    teleradlab("up", "ipv4", "--name", "it-two")
    try:
        teleradlab("exec", "--lab", "it-one", "modality", "--", "touch", "/run/only-in-one")
        teleradlab("down", "it-one")
        # The other lab, with the very same addresses, is untouched.
        teleradlab("exec", "--lab", "it-two", "modality", "--", "ping", "-c", "1", "pacs")
        assert not (Path("/run/teleradlab/labs/it-two/nodes/modality/run/only-in-one")).exists()
        clash = teleradlab("up", "ipv4", "--name", "it-two", check=False)
        assert clash.returncode == 1 and "already exists" in clash.stderr
        teleradlab("exec", "--lab", "it-two", "modality", "--", "ping", "-c", "1", "pacs")
    finally:
        teleradlab("down", "it-two")


def _start_up_and_wait_for_first_namespace(lab: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", "dualstack", "--name", lab],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not netns_names(f"tl-{lab}.") and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "up finished before it could be interrupted"
    return proc


def test_sigkill_during_up_then_clean_leaves_nothing(clean_host: None) -> None:
    proc = _start_up_and_wait_for_first_namespace("it-kill")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let orphaned setup steps finish, so clean sees the worst case
    assert any(leftovers("it-kill").values()), "SIGKILL left nothing: the test proved nothing"
    out = teleradlab("clean").stdout
    assert "network namespace tl-it-kill." in out
    assert not any(leftovers().values()), leftovers()
    assert "nothing to clean" in teleradlab("clean").stdout


def test_sigterm_during_up_rolls_back(clean_host: None) -> None:
    proc = _start_up_and_wait_for_first_namespace("it-term")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    assert not any(leftovers("it-term").values()), leftovers("it-term")


def test_invalid_topology_creates_nothing(tmp_path: Path, clean_host: None) -> None:
    bad = tmp_path / "bad.yaml"
    text = (TOPOLOGIES / "ipv4.yaml").read_text().replace("name: pacs", "name: modality")
    bad.write_text(text)
    res = teleradlab("up", str(bad), check=False)
    assert res.returncode == 1
    assert str(bad) in res.stderr and "duplicate node name 'modality'" in res.stderr
    assert not netns_names() and not Path("/run/teleradlab").exists()


def _run_cli_as_nobody(*args: str) -> tuple[int, str]:
    """Run the CLI in a forked child that dropped root (the interpreter may live where user
    nobody cannot read, so a fresh process as nobody is not an option)."""
    from lab.cli.main import main

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - pytest replaced them
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            main(list(args), prog_name="teleradlab")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        output = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), output


def test_not_root_is_reported_first(tmp_path: Path, clean_host: None) -> None:
    # Even with a file that does not exist, the missing privilege is what is reported.
    code, output = _run_cli_as_nobody("up", str(tmp_path / "missing.yaml"))
    assert code == 1, output
    assert "needs root" in output and "missing.yaml" not in output
    assert not netns_names()


def test_down_of_unknown_lab_says_so(clean_host: None) -> None:
    res = teleradlab("down", "it-nosuch", check=False)
    assert res.returncode == 1 and "no lab named 'it-nosuch'" in res.stderr
