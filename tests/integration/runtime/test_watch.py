"""``teleradlab watch --once --json`` on a real IPsec lab: its counters are the kernel's, charon's
and the archive's — they grow by what a C-ECHO and a C-STORE sent (pynetdicom's
``echoscu``-equivalent is not needed: the lab's SCU is the sender, the numbers come from netlink,
VICI and the PACS's log, none of which the SCU writes)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.dicom.data.generate import generate_study

from ..conftest import REPO, teleradlab

LAB = "tch-watch"


@pytest.fixture(scope="module")
def lab() -> Iterator[str]:
    teleradlab("down", LAB, check=False)
    teleradlab("up", "ipv4", "--name", LAB, "--security", "ipsec", "--no-check")
    yield LAB
    teleradlab("down", LAB, check=False)


def snapshot(lab: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(teleradlab("watch", lab, "--once", "--json",
                                                "--interval", "0.5").stdout)
    return doc


def scu(lab: str, *args: str) -> None:
    teleradlab("exec", "--lab", lab, "modality", "--", sys.executable, "-m", "lab.dicom.scu",
               *args[:1], "--host=198.18.2.10", "--port=11112", *args[1:], timeout=120)


def _link(doc: dict[str, Any], node: str, iface: str) -> dict[str, Any]:
    return next(x for x in doc["links"] if (x["node"], x["interface"]) == (node, iface))


def _pacs(doc: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in doc["services"] if s["service"] == "pacs")


def test_watch_once_json_counts_what_echo_and_store_sent(lab: str, tmp_path: Path) -> None:
    study = generate_study("CT", tmp_path / "ct", objects=3, seed=7)
    size = sum(f.stat().st_size for f in study.files)
    before = snapshot(lab)
    assert before["lab"] == LAB and before["security"].startswith("ipsec")
    assert before["wan"]["path"] == "unimpaired" and before["problems"] == []
    assert {s["node"] for s in before["sas"]} == {"gw-a", "gw-b"}
    assert all(s["state"] == "INSTALLED" for s in before["sas"])
    scu(lab, "echo")
    scu(lab, "store", *map(str, study.files))
    after = snapshot(lab)
    # the WAN router forwarded the study (ESP-in-UDP, so more than the objects' bytes) ...
    grown = _link(after, "wan", "gw-a")["rx_bytes"] - _link(before, "wan", "gw-a")["rx_bytes"]
    assert grown > size, (grown, size)
    # ... charon's initiator SA counted it going out ...
    out = {s["node"]: s["bytes_out"] for s in after["sas"]}
    was = {s["node"]: s["bytes_out"] for s in before["sas"]}
    assert out["gw-a"] - was["gw-a"] > size
    # ... and the PACS accepted two associations and stored three objects of the study's size.
    pacs, pacs_was = _pacs(after), _pacs(before)
    assert pacs["associations_total"] - pacs_was["associations_total"] == 2
    assert pacs["objects_stored"] - pacs_was["objects_stored"] == 3
    assert pacs["bytes_stored"] - pacs_was["bytes_stored"] == size
    assert pacs["associations_open"] == 0 and pacs["objects_in_open"] == 0
    assert after["clients"] == []


def test_watch_text_view_names_the_lab(lab: str) -> None:
    text = teleradlab("watch", lab, "--once", "--interval", "0.2").stdout
    assert f"lab {LAB}" in text and "IPsec SAs" in text and "pacs on pacs" in text


def test_watch_sees_an_association_in_progress(lab: str, tmp_path: Path) -> None:
    """Over 80 ms of round trip, one C-STORE at a time: while the store runs, the watch shows
    the SCU running, one association open at the PACS and its objects growing, and the WAN
    profile applied."""
    teleradlab("wan", "set", "--lab", lab, "delay=40ms", timeout=120)
    study = generate_study("CT", tmp_path / "ct", objects=40, seed=8)
    argv = [sys.executable, "-m", "lab", "exec", "--lab", lab, "modality", "--",
            sys.executable, "-m", "lab.dicom.scu", "store", "--host=198.18.2.10",
            "--port=11112", "--window=1", *map(str, study.files)]
    store = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    seen: list[tuple[int, int, list[str]]] = []
    try:
        while store.poll() is None and len(seen) < 6:
            doc = snapshot(lab)
            pacs = _pacs(doc)
            if pacs["associations_open"]:
                seen.append((pacs["associations_open"], pacs["objects_in_open"],
                             [c["operation"] for c in doc["clients"]]))
        assert store.wait(timeout=120) == 0
    finally:
        if store.poll() is None:
            store.kill()
        teleradlab("wan", "reset", "--lab", lab, timeout=120)
    assert len(seen) >= 2, seen
    assert all(open_ == 1 and ops == ["store"] for open_, _, ops in seen), seen
    assert seen[-1][1] > seen[0][1], seen  # its objects done grow
    assert doc["wan"]["forward"]["delay_ms"] == 40.0 and doc["wan"]["path"] != "unimpaired"
