"""Faults injected into real labs (``teleradlab fault``): fail closed while a gateway's IKE
daemon is down and while the SAs are rekeyed, with DICOM running (tshark on the WAN router sees
only IKE and ESP, never a DICOM byte), and every fault recovered from."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.dicom.data.generate import generate_study
from lab.dicom.reports import parse_output
from lab.runtime import lifecycle
from lab.security.ipsec import tunnel
from lab.wan import apply as wan_apply

from ..capture import PATIENT, capture, contains, frames
from ..conftest import teleradlab

IPSEC_LAB = "flt-fc"
TLS_LAB = "flt-ft"
PACS = "198.18.2.10"


@pytest.fixture(scope="module")
def ipsec_lab() -> Iterator[str]:
    teleradlab("down", IPSEC_LAB, check=False)
    teleradlab("up", "ipv4", "--name", IPSEC_LAB, "--security", "ipsec")
    yield IPSEC_LAB
    teleradlab("down", IPSEC_LAB)


@dataclass
class Traffic:
    """C-ECHO then C-STORE of a small study, again and again from the modality, in a thread:
    (end time, ok) of each C-STORE."""

    lab: str
    files: list[str]
    stores: list[tuple[float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def loop(self) -> None:
        base = ["exec", "--lab", self.lab, "modality", "--", sys.executable, "-m",
                "lab.dicom.scu"]
        while not self.stop.is_set():
            teleradlab(*base, "echo", f"--host={PACS}", check=False)
            res = teleradlab(*base, "store", f"--host={PACS}", "--timeout=30", *self.files,
                             check=False, timeout=90)
            self.stores.append((time.time(), res.returncode == 0))


@pytest.fixture
def traffic(ipsec_lab: str, tmp_path: Path) -> Iterator[Traffic]:
    study = generate_study("CT", tmp_path / "study", objects=6)
    t = Traffic(ipsec_lab, [str(f) for f in study.files])
    thread = threading.Thread(target=t.loop, daemon=True)
    thread.start()
    yield t
    t.stop.set()
    thread.join(120)


def _fault(lab: str, *args: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(
        teleradlab("fault", lab, *args, "--json", timeout=180).stdout)
    return doc


def _guard_drops(lab: str, node: str) -> int:
    out = teleradlab("exec", "--lab", lab, node, "--", "nft", "list", "table", "inet",
                     "teleradlab_ipsec").stdout
    return sum(int(line.split("counter packets ")[1].split()[0])
               for line in out.splitlines() if "counter packets" in line)


def _only_ike_and_esp(pcap: Path) -> list[list[str]]:
    """Every IP frame on the WAN: IKE, ESP (in UDP, RFC 3948), or an ICMP error quoting one;
    no TCP at all (all TCP between the sites is DICOM here), the patient's name nowhere."""
    seen = frames(pcap, "frame.time_epoch", "frame.protocols", "esp.spi", display="ip")
    assert seen
    assert frames(pcap, "frame.number", display="tcp || dicom") == []
    assert not contains(pcap, PATIENT)
    for _, protocols, _ in seen:
        assert protocols.endswith(":esp") or ":isakmp" in protocols or (
            ":icmp:" in protocols and (":esp" in protocols or ":isakmp" in protocols)), protocols
    return seen


@pytest.mark.parametrize("node", ["gw-a", "gw-b"])
def test_no_dicom_in_clear_while_a_gateways_ike_daemon_is_down(
        node: str, ipsec_lab: str, traffic: Traffic, tmp_path: Path) -> None:
    pcap = tmp_path / "wan.pcap"
    drops = _guard_drops(ipsec_lab, node)
    with capture(ipsec_lab, "wan", pcap):
        time.sleep(1.5)
        record = _fault(ipsec_lab, "ike-restart", "--node", node, "--seconds", "2")
        time.sleep(3)
        traffic.stop.set()
    assert record["node"] == node and 2.0 <= float(str(record["seconds"])) < 30
    if node == "gw-a":
        # The modality's side, which sends the C-STOREs: DICOM left the modality while the SAs
        # were missing, and the guard dropped it rather than let it out in clear. (With gw-b's
        # daemon down, gw-a still encrypts, and the PACS had nothing to send.)
        assert _guard_drops(ipsec_lab, node) > drops
    seen = _only_ike_and_esp(pcap)
    started, ended = float(str(record["started"])), float(str(record["ended"]))
    esp = [(float(t), spi) for t, p, spi in seen if p.endswith(":esp")]
    assert any(t < started for t, _ in esp) and any(t > ended for t, _ in esp)
    # ...and new SAs carried it afterwards, and DICOM went on: a C-STORE succeeded after.
    assert {s for t, s in esp if t > ended}.isdisjoint({s for t, s in esp if t < started})
    assert any(ok for t, ok in traffic.stores if t > ended), traffic.stores


def test_no_dicom_in_clear_while_the_sas_are_rekeyed_under_load(
        ipsec_lab: str, traffic: Traffic, tmp_path: Path) -> None:
    pcap = tmp_path / "wan.pcap"
    with capture(ipsec_lab, "wan", pcap):
        time.sleep(1.5)
        records = [_fault(ipsec_lab, "rekey") for _ in range(3)]
        time.sleep(2)
        traffic.stop.set()
    seen = _only_ike_and_esp(pcap)
    spis = {spi for _, p, spi in seen if p.endswith(":esp")}
    assert len(spis) >= 2 * 4  # the first SAs and three rekeys, two directions each
    assert all("CHILD_SA SPI in" in str(r["observed"]) for r in records)
    assert traffic.stores and all(ok for _, ok in traffic.stores), traffic.stores


def _echo_ok(lab: str) -> bool:
    res = teleradlab("exec", "--lab", lab, "modality", "--", sys.executable, "-m",
                     "lab.dicom.scu", "echo", f"--host={PACS}", check=False)
    return res.returncode == 0 and parse_output("echo", res.stdout).ok


@pytest.mark.parametrize(("kind", "args"), [
    ("archive-restart", ("--seconds", "1")),
    ("ike-restart", ()),
    ("rekey", ("--node", "gw-b")),
    ("link-down", ("--node", "gw-b", "--seconds", "2")),
    ("loss-burst", ("--seconds", "2", "--loss", "30")),
])
def test_each_fault_is_recovered_from(kind: str, args: tuple[str, ...], ipsec_lab: str) -> None:
    before = wan_apply.read_state(lifecycle.attach(ipsec_lab).paths).wan
    record = _fault(ipsec_lab, kind, *args)
    assert record["fault"] == kind and record["observed"]
    lab = lifecycle.attach(ipsec_lab)
    assert all(tunnel.sa_ids(lab, gw) for gw in ("gw-a", "gw-b"))  # SAs up on both
    assert _echo_ok(ipsec_lab)  # the archive answers across the WAN, through the tunnel
    assert wan_apply.read_state(lab.paths).wan == before  # the WAN as it was
    if kind in ("link-down", "loss-burst", "archive-restart"):
        assert float(str(record["seconds"])) >= 1.0


def test_tls_lab_archive_restart_and_the_refusals() -> None:
    teleradlab("down", TLS_LAB, check=False)
    teleradlab("up", "ipv4", "--name", TLS_LAB, "--security", "tls")
    try:
        record = _fault(TLS_LAB, "archive-restart")
        assert "C-ECHO answered" in str(record["observed"])
        res = teleradlab("fault", TLS_LAB, "ike-restart", check=False)
        assert res.returncode == 1 and "fault ike-restart needs IPsec, and lab flt-ft" in (
            res.stderr), res.stderr
        res = teleradlab("fault", TLS_LAB, "link-down", "--node", "pacs", check=False)
        assert res.returncode == 1 and "it can hit: gw-a, gw-b" in res.stderr
        res = teleradlab("fault", "flt-none", "rekey", check=False)
        assert res.returncode == 1 and "no lab named 'flt-none' is running" in res.stderr
    finally:
        teleradlab("down", TLS_LAB)
