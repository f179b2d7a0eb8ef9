"""Faults scheduled in a run: the ``KIND@WHEN`` form and its refusals, the moment (seconds or
objects received), and what the C-STORE's row says (lab.study.faults)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fakes import fake_lab, shipped  # tests/unit/fakes.py: pytest puts tests/unit on sys.path

from lab.errors import LabError
from lab.runtime.faults import FaultKind, FaultRecord, FaultSpec
from lab.study import faults
from lab.study.faults import Injection, Scheduled, parse
from lab.study.results import Row


def test_the_forms_of_a_scheduled_fault() -> None:
    s = parse("rekey@2.5s")
    assert (s.spec, s.at_s, s.after_objects) == (FaultSpec(FaultKind.REKEY), 2.5, None)
    s = parse("archive-restart@20obj")
    assert (s.spec.kind, s.at_s, s.after_objects) == (FaultKind.ARCHIVE_RESTART, None, 20)
    s = parse("link-down@1,seconds=3,node=gw-b")
    assert s.spec == FaultSpec(FaultKind.LINK_DOWN, "gw-b", 3.0) and s.at_s == 1.0
    assert parse("loss-burst@0s,loss=50").spec.loss_pct == 50.0


@pytest.mark.parametrize(("text", "message"), [
    ("rekey", "expected KIND@WHEN"),
    ("reboot@1s", "unknown fault 'reboot'"),
    ("rekey@soon", "the moment 'soon'"),
    ("rekey@1s,colour=red", "'colour=red' .* is not node=, seconds= or loss="),
    ("rekey@1s,node=a,node=b", "each once"),
    ("loss-burst@1s,loss=200", r"loss= in \(0, 100\]"),
    ("link-down@1s,seconds=long", "take numbers"),
])
def test_bad_forms_are_refused_naming_where_and_what(text: str, message: str) -> None:
    with pytest.raises(LabError, match=f"matrix.fault\\[0\\]: .*{message}"):
        parse(text, "matrix.fault[0]")


def _row(ok: bool = True) -> Row:
    return Row(topology="ipv4", family="ipv4", backend="netns", security="ipsec",
               operation="store", modality="CT", pdu=0, repetition=1, objects=2, bytes=10,
               seconds=1.0, mbytes_per_s=0.0, setup_seconds=0.1, verified="yes", ok=ok,
               detail="")


def test_the_row_names_the_fault_and_fails_when_the_lab_did_not_recover() -> None:
    s = parse("rekey@1s")
    rec = FaultRecord("rekey", "gw-a", 10.0, 10.5, "new SPIs")
    row = Injection(s, rec, at_s=1.01).apply(_row())
    assert (row.fault, row.fault_node, row.fault_at_s, row.fault_seconds, row.fault_observed,
            row.ok) == ("rekey@1s", "gw-a", 1.01, 0.5, "new SPIs", True)
    row = Injection(s, at_s=1.0, error="the lab did not recover: timeout").apply(_row())
    assert not row.ok and row.fault_observed.startswith("the lab did not recover")
    row = Injection(s).apply(_row())
    assert row.ok and row.fault_observed.startswith("not injected")
    assert Injection(None).apply(_row()) == _row()


def test_a_store_that_ends_first_leaves_the_fault_uninjected(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    injected: list[FaultSpec] = []
    monkeypatch.setattr(faults, "inject", lambda lab, spec: injected.append(spec))
    lab = fake_lab(shipped("ipv4", "ipsec"), tmp_path)
    start = time.monotonic()
    with faults.during(lab, parse("rekey@30s"), tmp_path / "store") as inj:
        pass
    assert time.monotonic() - start < 1.0 and injected == [] and inj.record is None


def test_the_fault_starts_once_the_archive_has_received_n_objects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    store = tmp_path / "store"
    (store / "objects" / "ab").mkdir(parents=True)
    old = store / "objects" / "ab" / "old.dcm"  # from an earlier run: not counted
    old.write_bytes(b"x")
    os.utime(old, (1.0, 1.0))

    def fake_inject(lab: object, spec: FaultSpec) -> FaultRecord:
        seen.append(len(list(store.glob("objects/*/*.dcm"))))
        return FaultRecord(str(spec.kind), "pacs", 1.0, 2.0, "ok")

    monkeypatch.setattr(faults, "inject", fake_inject)
    lab = fake_lab(shipped("ipv4"), tmp_path)
    with faults.during(lab, parse("archive-restart@2obj"), store) as inj:
        for i in range(3):
            time.sleep(0.2)
            (store / "objects" / "ab" / f"{i}.dcm").write_bytes(b"x")
            time.sleep(0.2)
    assert seen == [3]  # the old file and the two received: started after the second
    assert inj.record is not None and 0.3 < inj.at_s < 1.2


def test_a_fault_the_lab_cannot_take_fails_before_the_store(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "tls"), tmp_path)
    with pytest.raises(LabError, match="needs IPsec"):
        faults.check(lab, parse("ike-restart@1s"))
    with pytest.raises(LabError, match="needs IPsec"), faults.during(
            lab, parse("rekey@1s"), tmp_path):
        pytest.fail("the body must not run")
    faults.check(lab, None)
    faults.check(lab, Scheduled("x", FaultSpec(FaultKind.ARCHIVE_RESTART)))
