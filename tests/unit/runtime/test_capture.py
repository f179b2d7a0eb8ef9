"""lab.runtime.capture without root: where captures go, the dumpcap and tshark options, what the
notes tell the class, and the capture's life on the fake backend (argv sent, key-log variable
set only while it runs, dumpcap stopped by process id)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from fakes import fake_lab, shipped  # tests/unit/fakes.py: pytest puts tests/unit on sys.path

from lab.backends.base import Lab
from lab.backends.fake import FakeBackend
from lab.dicom.ul.tlsopts import KEYLOG_ENV
from lab.errors import IpsecError, LabError
from lab.model import proposals
from lab.runtime import capture as cap
from lab.security.plan import FixedMachine, resolve
from lab.topology import load, security_override, shipped_dir


def test_default_target_is_the_wan_routers_first_interface(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4"), tmp_path)
    assert cap.default_targets(lab) == [cap.Target("wan", ("gw-a",))]


def test_node_without_interfaces_named_takes_its_topology_interfaces(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4"), tmp_path)
    target = cap.parse_target(lab, "gw-a")
    assert target.node == "gw-a" and set(target.interfaces) == {"lan", "wan"}


def test_unknown_node_is_named_with_the_lab_nodes(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4"), tmp_path)
    with pytest.raises(LabError, match=r"--node nope:x: lab t has no node 'nope' \(nodes: "
                       r"modality, gw-a"):
        cap.parse_target(lab, "nope:x")


def test_dumpcap_argv_every_interface_one_file_bounded() -> None:
    argv = cap.dumpcap_argv(cap.Target("gw-a", ("lan", "ipsec0")), Path("/c/x.pcapng"), 60)
    assert argv == ["dumpcap", "-q", "-i", "lan", "-i", "ipsec0", "-a", "duration:60", "-w",
                    "/c/x.pcapng"]


def test_tshark_options_clear_lab_decode_its_dicom_ports(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4"), tmp_path)
    assert cap.tshark_options(lab, tmp_path) == ["-d", "tcp.port==11112,dicom", "-d",
                                                 "tcp.port==11113,dicom"]
    assert cap.notes(lab) == []


def test_tshark_options_tls_map_the_tls_port_to_dicom(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "tls"), tmp_path)
    key = tmp_path / cap.DISSECTOR_KEY
    assert cap.tshark_options(lab, tmp_path) == [
        "-o", f'uat:ssl_keys:"0.0.0.0","2762","dicom","{key}",""']
    assert any("secrets" in n and "C-MOVE sub-operations" in n for n in cap.notes(lab))
    cap.write_dissector_key(tmp_path)
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def _ipsec(tmp_path: Path, esp: str) -> Lab:
    topo = load(shipped_dir() / "ipv4.yaml", {"security": security_override(f"ipsec,esp={esp}")})
    lab = fake_lab(topo, tmp_path)
    assert lab.plan.ipsec is not None and lab.plan.ipsec.esp.text == esp
    return lab


def test_ipsec_notes_say_userspace_esp_and_offer_null(tmp_path: Path) -> None:
    lab = _ipsec(tmp_path, "aes256gcm16")
    text = " ".join(cap.notes(lab))
    assert "userspace" in text and "cannot be exported" in text
    assert "--security ipsec,esp=null-sha256" in text
    assert cap.ESP_NULL_OPTION not in cap.tshark_options(lab, tmp_path)


def test_esp_null_lab_decodes_esp_payloads(tmp_path: Path) -> None:
    lab = _ipsec(tmp_path, "null-sha256")
    assert cap.tshark_options(lab, tmp_path)[-2:] == ["-o", cap.ESP_NULL_OPTION]
    assert any("NULL cipher" in n for n in cap.notes(lab))


def test_null_needs_integrity_and_a_strongswan_that_has_it() -> None:
    with pytest.raises(IpsecError, match="null needs an integrity algorithm"):
        proposals.parse("null", "esp")
    prop = proposals.parse("null-sha256", "esp")
    no_null = {k: [a for a in v if a != "NULL"] for k, v in FixedMachine().algorithms.items()}
    with pytest.raises(IpsecError, match="cannot do null"):
        proposals.require_supported(prop, no_null, "security.ipsec.esp")
    topo = load(shipped_dir() / "ipv4.yaml",
                {"security": security_override("ipsec,esp=null-sha256")})
    with pytest.raises(IpsecError, match="cannot do null"):
        resolve(topo, FixedMachine(algorithms=no_null))


def test_capturing_sets_the_keylog_variable_only_while_it_runs(tmp_path: Path) -> None:
    """The fake backend runs a stand-in for the node's dumpcap (a Python one-liner writing the
    file and waiting), which shows the life cycle without root."""

    def stand_in(argv: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", f"open({argv[-1]!r}, 'wb').write(b'x'); "
                "import time; time.sleep(60)"]

    backend = FakeBackend(stand_in=stand_in)
    lab = fake_lab(shipped("ipv4"), tmp_path, backend=backend)
    out = tmp_path / "cap"
    assert KEYLOG_ENV not in os.environ
    with cap.capturing(lab, cap.default_targets(lab), out, 30) as result:
        assert os.environ[KEYLOG_ENV] == str(out.absolute() / "tls-keys.log")
        assert all(s.proc.poll() is None for s in backend.spawned)
    assert KEYLOG_ENV not in os.environ
    assert [s.argv for s in backend.spawned] == [tuple(cap.dumpcap_argv(
        cap.Target("wan", ("gw-a",)), out.absolute() / "t-wan.pcapng", 30))]
    assert all(s.proc.poll() is not None for s in backend.spawned)  # stopped
    assert result.files == {"wan": out.absolute() / "t-wan.pcapng"}
    assert not result.secrets_embedded  # nothing was logged


def test_a_dumpcap_that_fails_stops_the_capture_with_its_log(tmp_path: Path) -> None:
    backend = FakeBackend(stand_in=lambda _argv: ["false"])
    lab = fake_lab(shipped("ipv4"), tmp_path, backend=backend)
    with pytest.raises(LabError, match="dumpcap on wan:gw-a did not start: fake backend: "
                       "dumpcap"), cap.capturing(lab, cap.default_targets(lab), tmp_path):
        pass
    assert KEYLOG_ENV not in os.environ


def test_docker_labs_are_refused_before_anything_starts(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.name = "docker"
    lab = fake_lab(shipped("ipv4"), tmp_path, backend=backend)
    with pytest.raises(LabError, match="runs on docker"), cap.capturing(
            lab, cap.default_targets(lab), tmp_path / "cap"):
        pass
    assert backend.spawned == [] and not (tmp_path / "cap").exists()


@pytest.mark.parametrize(("src", "dst", "local"), [
    ("::", "ff02::16", True),  # MLDv2 report during duplicate address detection
    ("fe80::1", "ff02::1:ff00:1", True),  # neighbour solicitation
    ("fe80::1", "fe80::2", True),  # neighbour advertisement
    ("2001:db8:1::1", "2001:db8:2::1", False),  # routed: crosses the WAN
    ("fe80::1", "2001:db8:2::1", False),
    ("2001:db8:1::1", "ff05::2", False),  # site-scope multicast
    ("", "", False),  # IPv4: no IPv6 addresses
])
def test_only_ipv6_that_never_leaves_its_link_is_link_local(src: str, dst: str,
                                                            local: bool) -> None:
    assert cap._link_local(src, dst) is local
