"""A run's control flow on the fake backend, without root: the lab it builds, the programs it runs
in which node and in which order, the rows and files it writes, and the lab taken down whether
the run succeeds, finds a bad object or fails half-way. The node programs' answers are given by
the test (their own behaviour is tested in tests/unit/dicom and the integration tests)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from lab.backends.fake import FakeBackend
from lab.dicom import scu
from lab.dicom.reports import SCU_REPORTS, Report, VerifyReport
from lab.errors import LabError
from lab.host.shell import Result
from lab.security.plan import FixedMachine
from lab.study import run
from lab.study.results import read_csv
from lab.topology import shipped_dir

PING = ("20 packets transmitted, 20 received, 0% packet loss, time 950ms\n"
        "rtt min/avg/max/mdev = 0.040/0.050/0.070/0.010 ms\n")


def programs(*, verify_ok: Callable[[str], bool] = lambda _node: True,
             move_fails: bool = False) -> Callable[[str, str, Sequence[str]], Result]:
    """Answers of the node programs: ping, the SCU's operations and the verifier."""

    def answer(_lab: str, node: str, argv: Sequence[str]) -> Result:
        argv = tuple(argv)
        if argv[0] == "ping":
            return Result(argv, 0, PING, "")
        module, op = argv[2], argv[3] if len(argv) > 3 else ""
        if module == "lab.dicom.scu" and op == "move" and move_fails:
            return Result(argv, 1, "", "Traceback: the SCU crashed")
        report: Report
        if module == "lab.dicom.scu":
            files = [a for a in argv[4:] if not a.startswith("--")]
            common = {"operation": op, "peer": "[2001:db8:2::10]:11112", "ok": True,
                      "setup_seconds": 0.01, "seconds": 0.25, "handshake_seconds": None,
                      "tls_version": None, "cipher": None}
            extra: dict[str, Any] = {
                "echo": {"status": 0},
                "store": {"objects": len(files), "bytes": 1000 * len(files),
                          "statuses": {"0x0000": len(files)}, "failed": [],
                          "retries": 0, "complete": True,
                          **({"committed": len(files)} if "--commit" in argv else {}),
                          **_asked(argv, "window", lambda w: min(w, 3)),
                          **_asked(argv, "associations", lambda n: n)},
                "find": {"status": 0, "matches": [{"StudyInstanceUID": "1"}]},
                "move": {"status": 0, "completed": 1, "failed": 0, "warning": 0}}[op]
            report = SCU_REPORTS[op].build({**common, **extra})
        elif module == "lab.dicom.verify":
            ok = verify_ok(node)
            problems = [] if ok else [{"status": "mismatch", "detail": "pixel data changed"}]
            report = VerifyReport.build({"ok": ok, "signature_ok": True, "signer": "site-a",
                                         "objects": 1, "summary": "checked",
                                         "problems": problems})
        else:
            return Result(argv, 2, "", f"unexpected program {argv}")
        return Result(argv, 0, report.line() + "\n", "")

    return answer


def _asked(argv: Sequence[str], option: str, answer: Callable[[int], int]) -> dict[str, int]:
    """The report field of ``--option=N`` in ``argv`` (a peer granting a window of 3 at most)."""
    given = [int(a.split("=", 1)[1]) for a in argv if a.startswith(f"--{option}=")]
    return {option: answer(given[-1])} if given else {}


def options(tmp_path: Path, backend: FakeBackend, **extra: object) -> run.RunOptions:
    return run.RunOptions(topology=shipped_dir() / "ipv6.yaml", lab=None, objects=1, repeat=2,
                          out=tmp_path / "out", backend=backend, root=tmp_path / "run",
                          data_root=tmp_path / "data", machine=FixedMachine(), **extra)


def scu_calls(backend: FakeBackend) -> list[tuple[str, ...]]:
    return [c for c in backend.calls if c[0] == "exec" and "lab.dicom.scu" in c]


def test_a_run_builds_its_lab_runs_each_operation_in_order_and_takes_it_down(
        tmp_path: Path) -> None:
    backend = FakeBackend(responder=programs())
    result = run.execute(options(tmp_path, backend, pdu=16384))
    ops = [(r.repetition, r.operation) for r in result.rows]
    assert ops == [(rep, op) for rep in (1, 2) for op in ("echo", "store", "find", "move")]
    assert result.ok and all(r.family == "ipv6" and r.backend == "fake" for r in result.rows)
    store = next(r for r in result.rows if r.operation == "store")
    assert store.verified == "yes" and store.objects == 1 and store.bytes > 0
    assert store.mbytes_per_s == round(store.bytes / 0.25 / 1e6, 3)
    # the SCU runs in the modality, against the PACS's IPv6 address and port, with the PDU
    calls = scu_calls(backend)
    assert {c[2] for c in calls} == {"modality"}
    assert all("--port=11112" in c and "--pdu=16384" in c and "--host=2001:db8:2::10" in c
               for c in calls)
    # each C-STORE is verified at the PACS, each C-MOVE at the modality, right after it
    seq = [(c[2], c[6] if "lab.dicom.scu" in c else "verify") for c in backend.calls
           if c[0] == "exec" and c[3] != "ping"]
    assert seq[:5] == [("modality", "echo"), ("modality", "store"), ("pacs", "verify"),
                       ("modality", "find"), ("modality", "move")]
    assert seq[5] == ("modality", "verify")
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert len(rows) == 8
    doc = json.loads((tmp_path / "out" / "run.json").read_text())
    assert doc["all_ok"] and doc["rows"] == 8 and doc["security"] == "none"
    assert backend.labs == {} and not any(s.proc.poll() is None for s in backend.spawned)
    assert not (tmp_path / "run" / "labs").exists()


def test_rows_carry_the_window_granted_and_the_associations(tmp_path: Path) -> None:
    """run proposes its window (the SCU's default) and associations to each C-STORE; the store rows
    carry what the SCU reports (the window the peer granted), the others 1 and 1."""
    backend = FakeBackend(responder=programs())
    rows = run.execute(options(tmp_path, backend, associations=5)).rows
    stores = [c for c in scu_calls(backend) if "store" in c]
    assert stores and all(f"--window={scu.WINDOW}" in c and "--associations=5" in c for c in stores)
    assert {(r.operation, r.window, r.associations) for r in rows} == {
        ("echo", 1, 1), ("store", 3, 5), ("find", 1, 1), ("move", 1, 1)}
    csv_rows = read_csv(tmp_path / "out" / "results.csv")
    assert {(r["operation"], r["window"], r["associations"]) for r in csv_rows} >= {
        ("store", "3", "5")}


def test_an_object_that_fails_verification_fails_its_row_not_the_run(tmp_path: Path) -> None:
    backend = FakeBackend(responder=programs(verify_ok=lambda node: node != "modality"))
    result = run.execute(options(tmp_path, backend))
    moves = [r for r in result.rows if r.operation == "move"]
    assert moves and all(not r.ok and r.verified == "no" for r in moves)
    assert all("pixel data changed" in r.detail for r in moves)
    assert all(r.ok for r in result.rows if r.operation != "move")
    assert not json.loads((tmp_path / "out" / "run.json").read_text())["all_ok"]
    assert backend.labs == {}


def test_a_program_that_crashes_stops_the_run_keeps_its_rows_and_takes_the_lab_down(
        tmp_path: Path) -> None:
    backend = FakeBackend(responder=programs(move_fails=True))
    with pytest.raises(LabError, match=r"lab.dicom.scu in modality failed \(status 1\):\nTrace"):
        run.execute(options(tmp_path, backend))
    doc = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "the SCU crashed" in doc["error"] and not doc["all_ok"]
    assert backend.labs == {} and not any(s.proc.poll() is None for s in backend.spawned)
    assert not (tmp_path / "run" / "labs").exists()


def test_tls_runs_give_the_scu_the_plan_s_port_and_certificates(tmp_path: Path) -> None:
    backend = FakeBackend(responder=programs())
    sec = {"security": {"mode": "tls", "tls": {"profile": "bcp195-rfc8996"}}}
    result = run.execute(options(tmp_path, backend, overrides=sec))
    assert all(r.security == "tls" and r.security_profile == "bcp195-rfc8996"
               for r in result.rows)
    calls = scu_calls(backend)
    assert calls and all("--port=2762" in c and "--tls-profile=bcp195-rfc8996" in c
                         for c in calls)
