"""Which node each fault hits and what it refuses, on the fake backend (nothing is injected
here: tests/integration/runtime/test_faults.py injects every fault into real labs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import fake_lab, shipped  # tests/unit/fakes.py: pytest puts tests/unit on sys.path

from lab.backends.fake import FakeBackend
from lab.errors import LabError
from lab.runtime.faults import (
    FaultKind,
    FaultRecord,
    FaultSpec,
    inject,
    parse_kind,
    target,
)


def test_each_fault_defaults_to_its_natural_target(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "ipsec"), tmp_path)
    assert target(lab, FaultSpec(FaultKind.ARCHIVE_RESTART)) == "pacs"
    assert target(lab, FaultSpec(FaultKind.IKE_RESTART)) == "gw-a"  # the initiator
    assert target(lab, FaultSpec(FaultKind.REKEY, "gw-b")) == "gw-b"
    assert target(lab, FaultSpec(FaultKind.LINK_DOWN)) == "gw-a"
    assert target(lab, FaultSpec(FaultKind.LINK_DOWN, "gw-b")) == "gw-b"
    assert target(lab, FaultSpec(FaultKind.LOSS_BURST)) == "wan"


def test_an_ipsec_fault_on_a_tls_lab_is_refused_naming_the_lab_and_its_security(
        tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "tls"), tmp_path, name="t17")
    for kind in (FaultKind.IKE_RESTART, FaultKind.REKEY):
        with pytest.raises(LabError, match=f"fault {kind} needs IPsec, and lab t17 runs"):
            target(lab, FaultSpec(kind))
    assert target(lab, FaultSpec(FaultKind.ARCHIVE_RESTART)) == "pacs"


def test_a_node_the_fault_cannot_hit_is_refused_listing_those_it_can(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "ipsec"), tmp_path)
    with pytest.raises(LabError, match=r"cannot hit node 'pacs' .*\(it can hit: gw-a, gw-b\)"):
        target(lab, FaultSpec(FaultKind.REKEY, "pacs"))
    with pytest.raises(LabError, match=r"cannot hit node 'nowhere' .*it can hit: pacs"):
        target(lab, FaultSpec(FaultKind.ARCHIVE_RESTART, "nowhere"))


def test_durations_and_losses_out_of_range_are_refused_before_anything_happens(
        tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "ipsec"), tmp_path)
    with pytest.raises(LabError, match="0 to 600 seconds"):
        inject(lab, FaultSpec(FaultKind.LINK_DOWN, seconds=601))
    with pytest.raises(LabError, match=r"loss must be in \(0, 100\]"):
        inject(lab, FaultSpec(FaultKind.LOSS_BURST, loss_pct=0))
    assert isinstance(lab.backend, FakeBackend)
    assert lab.backend.calls == []  # nothing ran in any node


def test_unknown_kind_names_the_known_ones() -> None:
    assert parse_kind("rekey") is FaultKind.REKEY
    with pytest.raises(LabError, match=r"unknown fault 'reboot'.*archive-restart, ike-restart"):
        parse_kind("reboot")


def test_default_durations_and_the_record() -> None:
    assert FaultSpec(FaultKind.LINK_DOWN).duration == 5.0
    assert FaultSpec(FaultKind.IKE_RESTART).duration == 0.0
    assert FaultSpec(FaultKind.IKE_RESTART, seconds=2).duration == 2.0
    rec = FaultRecord("rekey", "gw-a", 100.0, 100.25, "new SPIs")
    assert rec.seconds == 0.25
    assert rec.document() == {"fault": "rekey", "node": "gw-a", "started": 100.0,
                              "ended": 100.25, "observed": "new SPIs", "seconds": 0.25}
