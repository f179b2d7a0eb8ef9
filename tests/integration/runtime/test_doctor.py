"""``teleradlab doctor`` on this very machine: real commands, real kernel probes (as root).

The doctor's kernel answers are compared with the same probes made directly here, and no probe
namespace may outlive a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.backends.netns import NetnsBackend
from lab.host import programs
from lab.runtime import doctor

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
KEY16 = "0x0102030405060708090a0b0c0d0e0f10"
KEY32 = "0x" + "0f" * 32
QDISCS = {
    "netem": ["delay", "1ms"],
    "tbf": ["rate", "1mbit", "burst", "32kbit", "latency", "400ms"],
    "htb": ["default", "1"],
}


@pytest.fixture(scope="module", autouse=True)
def as_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the doctor's kernel probes need root, and CI runs as root")
        pytest.skip("needs root (kernel probes run in a network namespace)")


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def doctor_netns() -> list[str]:
    return [n for n in netns_names() if n.startswith("tl-doctor")]


def ok(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, check=False, timeout=10).returncode == 0


def esp_argv(ns: str, src: str, dst: str) -> list[str]:
    sa = f"src {src} dst {dst} proto esp spi 0x200 mode tunnel"
    keys = f"enc cbc(aes) {KEY16} auth hmac(sha256) {KEY32}"
    return ["ip", "-n", ns, "xfrm", "state", "add", *sa.split(), *keys.split()]


@pytest.fixture(scope="module")
def direct() -> dict[str, bool]:
    """The kernel features, probed here by hand in a namespace of our own."""
    ns = f"tl-doctortest{os.getpid()}.direct"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        found = {
            "kernel-esp4": ok(esp_argv(ns, "198.18.1.1", "198.18.1.2")),
            "kernel-esp6": ok(esp_argv(ns, "2001:db8:1::1", "2001:db8:1::2")),
        }
        tc = ["ip", "netns", "exec", ns, "tc", "qdisc"]
        for kind, args in QDISCS.items():
            found[f"sch_{kind}"] = ok([*tc, "add", "dev", "lo", "root", kind, *args])
            ok([*tc, "del", "dev", "lo", "root"])
        return found
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def run_cli(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "lab", "doctor", "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def test_cli_json_reports_this_machine_and_matches_direct_probes(direct: dict[str, bool]) -> None:
    doc = run_cli()
    checks = by_name(doc)
    assert checks["root"]["ok"] is True
    assert checks["ip"]["ok"] is True and checks["ip"]["detail"].endswith("/ip")
    assert [c["name"] for c in doc["checks"]][1:len(programs.PROGRAMS) + 1] == [
        p.name for p in programs.PROGRAMS], "every program of the registry, in its order"
    for name, present in direct.items():
        assert checks[name]["ok"] is present, (name, checks[name])
        assert checks[name]["detail"], name
    assert doctor_netns() == []


def test_run_checks_in_process_matches_direct_probes(direct: dict[str, bool]) -> None:
    report = doctor.run_checks()
    checks = {c.name: c for c in report.checks}
    assert len(checks) == len(report.checks), "check names are unique"
    assert all(isinstance(c.ok, bool) for c in report.checks), "as root everything is checked"
    assert {n: checks[n].ok for n in direct} == direct
    missing = [c.name for c in report.missing]
    assert missing == [n for n, c in checks.items() if not c.ok]
    if not direct["kernel-esp4"]:
        assert "kernel-libipsec" in checks["kernel-esp4"].meaning
    if not direct["sch_netem"]:
        assert "userspace emulator" in checks["sch_netem"].meaning
    assert doctor_netns() == []


def run_checks_as_nobody() -> dict[str, Any]:
    """Run the doctor in a forked child that has given up root for good (user nobody)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with os.fdopen(write, "w") as out:
                json.dump(doctor.as_document(doctor.run_checks()), out)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        data = f.read()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    doc: dict[str, Any] = json.loads(data)
    return doc


def test_without_root_kernel_probes_are_reported_unchecked() -> None:
    doc = run_checks_as_nobody()
    checks = by_name(doc)
    assert checks["root"]["ok"] is False and checks["root"]["detail"] == "euid 65534"
    assert checks["ip"]["ok"] is True
    kernel = ["kernel-esp4", "kernel-esp6", "sch_netem", "sch_tbf", "sch_htb"]
    for name in kernel:
        assert checks[name]["ok"] is None and checks[name]["detail"] == doctor.NEEDS_ROOT
    # Asking charon for its algorithms needs root too (it runs in new namespaces).
    assert checks["ipsec-algorithms"]["ok"] is None
    assert doc["unchecked"] == [*kernel, "ipsec-algorithms"]
    assert doctor_netns() == []


@pytest.fixture
def stray_probe_netns() -> Iterator[str]:
    """A probe namespace as a killed doctor would leave it (pid 1 never runs the doctor)."""
    ns = doctor.probe_netns_name(1)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def test_a_stray_probe_namespace_is_found_and_removed_by_the_lab_sweep(
    stray_probe_netns: str,
) -> None:
    backend = NetnsBackend()
    assert "doctor1" in backend.list_owned()
    backend.down("doctor1")
    assert stray_probe_netns not in netns_names()
