"""The registry of outside programs: complete (every program the code and the tests run is in
it), usable by the install scripts with the system's python3, and the refusal it backs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import LabError, MissingProgramError
from lab.host import programs

from .argv_scan import programs_in, scan_sources, scan_tree

REPO = Path(__file__).resolve().parents[3]

#: Calls whose program is chosen at run time, each with what it runs (all registered or the lab's).
DYNAMIC = {
    "lab/backends/docker/images.py::ensure_base": "scripts/docker-base (debootstrap, docker, tar)",
    "lab/backends/fake.py::spawn": "the test's stand-in for a node program (sleep, false)",
    "lab/bench/store.py::dcmtk_tool": "each registered place of a DCMTK program, --version",
    "lab/cli/labs.py::exec": "the user's command in a node (teleradlab exec)",
    "lab/runtime/services.py::start": "python3 -m lab.dicom.pacs (services.dicom_services)",
    "lab/wan/userspace.py::start": "the lab's own WAN emulator, compiled from wanemu.c",
    "tests/integration/dicom/archive_attack.py::_dcmtk": "DCMTK's echoscu and findscu (registered)",
    "tests/integration/probe/peers.py::start": "the probe's test peers in their namespace: "
        "DCMTK's storescp and dcmqrscp (registered), python3 (pynetdicom, a banner server)",
    "tests/unit/wan/test_userspace.py::test_helper_builds_and_refuses_bad_arguments":
        "the lab's own WAN emulator",
}


@pytest.fixture(scope="module")
def scanned() -> tuple[dict[str, set[str]], set[str]]:
    result = scan_tree(str(REPO))
    return result.programs, result.unresolved


def test_every_program_the_code_and_tests_run_is_registered(
        scanned: tuple[dict[str, set[str]], set[str]]) -> None:
    found, _ = scanned
    unregistered = {name: sorted(sites) for name, sites in found.items()
                    if name not in programs.known_names()}
    assert not unregistered, f"add these to lab/host/programs.py: {unregistered}"
    # The scan reads what it should: programs from lab/ and from tests/, through wrappers.
    for name in ("ip", "nft", "ping", "iperf3", "charon", "gcc", "chromium", "openssl", "tshark",
                 "storescu", "movescu", "nsenter", "unshare", "python3", "touch"):
        assert name in found, name


def test_every_call_the_scan_cannot_follow_is_known(
        scanned: tuple[dict[str, set[str]], set[str]]) -> None:
    _, unresolved = scanned
    assert unresolved - set(DYNAMIC) == set(), "a program chosen at run time: register it, " \
        "or add the site to DYNAMIC saying what it runs"
    assert set(DYNAMIC) - unresolved == set(), "DYNAMIC names a site the scan now follows"


def test_the_scan_reports_an_unregistered_program_however_the_argv_is_built() -> None:
    snippet = '''
from lab.host import shell
import subprocess
import sys

TOOL = "frobnicate"
WRAPPED = ["env", "A=1", "zorkmid"]


def helper(*argv):
    return subprocess.run([sys.executable, "-m", "lab", "exec", "--lab", "x", "n", "--", *argv])


def argv_of(name):
    return ["timeout", "5", name, "-v"]


def main(backend):
    shell.run([TOOL, "--version"])
    shell.spawn(list(WRAPPED) + ["-x"])
    backend.exec("lab", "node", ["ip", "netns", "exec", "ns", "quux"])
    helper("xyzzy", "-q")
    subprocess.Popen(argv_of("plugh"))
'''
    result = scan_sources({"lab/snippet.py": snippet})
    found = set(result.programs)
    assert {"frobnicate", "zorkmid", "quux", "xyzzy", "plugh"} <= found
    assert {"frobnicate", "zorkmid", "quux", "xyzzy", "plugh"}.isdisjoint(programs.known_names())
    assert {"env", "nsenter", "ip", "timeout", "python3"} <= found
    assert result.unresolved == set()


def test_the_scan_reports_what_it_cannot_follow() -> None:
    snippet = "import subprocess\n\ndef f(path):\n    subprocess.run([str(path.parent), 'x'])\n" \
              "\ndef g():\n    f(make())\n"
    result = scan_sources({"tests/snippet.py": snippet})
    assert result.unresolved == {"tests/snippet.py::f"}


def test_wrappers_lead_to_the_program_they_run() -> None:
    assert programs_in(["nsenter", "--net=/x", "--", "env", "A=1", "B=2", "nft", "-f", "-"]) == (
        ["nsenter", "env", "nft"], False)
    assert programs_in(["/usr/lib/ipsec/charon"]) == (["charon"], False)
    assert programs_in(["sh", "-c", "anything"]) == (["sh"], False)
    assert programs_in(["env", None]) == (["env"], True)


# --- the registry itself --------------------------------------------------------------------


def test_every_program_names_known_features_and_a_package() -> None:
    for p in programs.PROGRAMS:
        assert p.package and p.purpose and p.features, p
        assert set(p.features) <= set(programs.FEATURES), p
    assert len(programs.BY_NAME) == len(programs.PROGRAMS), "one entry per program"
    used = {f for p in programs.PROGRAMS for f in p.features}
    assert used == set(programs.FEATURES), "every feature needs some program"


def test_packages_of_features_without_repeats() -> None:
    ipsec = programs.apt_packages(["ipsec"])
    assert {"strongswan-charon", "strongswan-swanctl", "nftables",
            "libcharon-extra-plugins"} <= set(ipsec)
    assert len(ipsec) == len(set(ipsec))
    default = programs.apt_packages()
    assert "nftables" in default and "docker.io" not in default
    assert {"docker.io", "debootstrap"} <= set(programs.apt_packages(["docker"]))
    assert "docker-compose" in programs.apt_packages(["docker", "compose"])
    with pytest.raises(LabError, match="unknown feature"):
        programs.apt_packages(["nosuch"])


def test_the_install_scripts_get_the_packages_from_system_python_alone() -> None:
    """What scripts/lib.sh runs: python3 -P -m lab.host.programs with PYTHONPATH, no venv;
    ``-S`` (no site packages) proves the standard library is enough."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-S", "-P", "-m", "lab.host.programs", "apt-packages",
                          "--feature", "ipsec", "--feature", "core"], env=env, cwd="/",
                         capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.split() == programs.apt_packages(["ipsec", "core"])


def test_no_second_package_list_in_the_scripts() -> None:
    lines = (REPO / "scripts" / "lib.sh").read_text(encoding="utf-8").splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert "lab.host.programs apt-packages" in code
    for package in ("nftables", "strongswan-charon", "dcmtk", "docker.io", "debootstrap"):
        assert package not in code, package


# --- the refusal ----------------------------------------------------------------------------


def test_require_names_the_program_the_feature_and_the_install_command(tmp_path: Path) -> None:
    for name in ("ip", "nsenter"):  # a PATH that has core's programs but not nft
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    with pytest.raises(MissingProgramError) as exc:
        programs.require({"ipsec": "security mode ipsec"}, path=str(tmp_path))
    message = str(exc.value)
    assert "nft (Debian package nftables) is missing; needed for ipsec: security mode ipsec" \
        in message
    assert "swanctl" in exc.value.programs and "nft" in exc.value.programs
    assert "ip" not in exc.value.programs
    assert exc.value.install.startswith("apt-get install ")
    assert "nftables" in exc.value.install.split()
    assert message.endswith(f"install: {exc.value.install}")


def test_require_passes_when_every_program_is_there(tmp_path: Path) -> None:
    for p in programs.programs_for(["wan-measure"]):
        (tmp_path / p.name).write_text("#!/bin/sh\n")
        (tmp_path / p.name).chmod(0o755)
    programs.require({"wan-measure": "run"}, path=str(tmp_path))


def test_locate_looks_only_in_the_places_of_a_program_with_places(tmp_path: Path) -> None:
    (tmp_path / "storescu").write_text("#!/bin/sh\n")
    (tmp_path / "storescu").chmod(0o755)
    # pynetdicom's storescu on PATH is not DCMTK's
    dcmtk = programs.BY_NAME["storescu"]
    assert programs.locate(dcmtk, path=str(tmp_path)) in (None, *dcmtk.places)
    gcc = programs.BY_NAME["gcc"]
    (tmp_path / "cc").write_text("#!/bin/sh\n")
    (tmp_path / "cc").chmod(0o755)
    assert programs.locate(gcc, path=str(tmp_path)) == str(tmp_path / "cc")
