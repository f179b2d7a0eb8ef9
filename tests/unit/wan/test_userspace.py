"""The userspace emulator's build and command line (running it needs root: see
tests/integration/wan/test_wan.py), the offload ioctl's request, and the doctor's path line."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from lab.model.topology import WanProfile
from lab.runtime.doctor import Check, wan_path_check
from lab.wan import offloads, userspace


def test_params_are_in_the_helpers_units() -> None:
    p = WanProfile(delay_ms=30, jitter_ms=2.5, loss_pct=1, loss_corr_pct=25, rate_mbit=20,
                   reorder_pct=2, duplicate_pct=0.5, corrupt_pct=0.1)
    fields = userspace.params(p).split(",")
    assert fields[:2] == ["30000000", "2500000"]  # nanoseconds
    assert [float(f) for f in fields[2:4]] == [0.01, 0.25]
    assert float(fields[4]) == 20e6  # bit/s
    assert fields[5] == "1000"  # queue limit, packets
    assert [float(f) for f in fields[6:]] == [0.02, 0.005, 0.001]


def test_argv_names_both_directions() -> None:
    links = (userspace.Link("gw-a", "02:00:00:00:00:01"),
             userspace.Link("gw-b", "02:00:00:00:00:02"))
    argv = userspace.argv(Path("/x/tl-wanemu"), Path("/d/stats.json"), links, ["198.19.1.1"],
                          WanProfile(delay_ms=1), WanProfile(delay_ms=2), mtu=9000)
    opts = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert argv[:2] == ["/x/tl-wanemu", "run"]
    assert opts["--if0"] == "gw-a" and opts["--mac1"] == "02:00:00:00:00:02"
    assert opts["--p01"].startswith("1000000,") and opts["--p10"].startswith("2000000,")
    assert opts["--local"] == "198.19.1.1" and opts["--mtu"] == "9000"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_helper_builds_and_refuses_bad_arguments(tmp_path: Path) -> None:
    helper = userspace.binary(tmp_path)
    assert helper.is_file() and helper.name.startswith("tl-wanemu-")
    assert userspace.binary(tmp_path) == helper  # cached by source hash
    res = subprocess.run([str(helper), "run", "--if0", "x"], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 64 and "usage" in res.stderr
    res = subprocess.run([str(helper), "run", "--stats", "s", "--if0", "a", "--mac0", "zz",
                          "--if1", "b", "--mac1", "02:00:00:00:00:01", "--p01", "1,2",
                          "--p10", "1,2"], capture_output=True, text=True, check=False)
    assert res.returncode == 64


def test_ifreq_points_at_the_command_buffer() -> None:
    raw = offloads.ifreq("gw-a", 0x1234)
    assert len(raw) == offloads.IFREQ_SIZE
    name, address = struct.unpack_from("16sP", raw)
    assert name.rstrip(b"\0") == b"gw-a" and address == 0x1234


def _netem(ok: bool | None) -> list[Check]:
    return [Check("sch_netem", ok, "", "", "")]


def test_doctor_names_the_path() -> None:
    assert wan_path_check(_netem(True)).detail.startswith("netem")
    line = wan_path_check(_netem(False))
    assert line.detail.startswith("userspace emulator (no sch_netem")
    assert line.ok is (shutil.which("gcc") is not None or shutil.which("cc") is not None)
