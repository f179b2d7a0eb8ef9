"""lab.dicom.reports: what the node programs print is what the orchestrator's parser accepts,
field for field, and a document with a field missing, unknown or mistyped is refused with an
error naming the field. The programs are run for real (their successful DICOM runs are parsed
the same way in tests/unit/dicom/ul/test_qr_requestor.py and test_dicom_tls.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.dicom.data import integrity
from lab.dicom.data.generate import generate_study
from lab.dicom.reports import (
    BulkReport,
    MoveReport,
    ReportError,
    StoreReport,
    VerifyReport,
    parse_output,
    parse_report,
)
from lab.security.pki import authority

HOST = "127.0.0.1"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=60, check=False)


def _last(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return doc


def test_a_failed_operation_reports_only_why(tmp_path: Path) -> None:
    study = generate_study("CR", tmp_path, objects=1)
    res = _run("lab.dicom.scu", "store", f"--host={HOST}", f"--port={_closed_port()}",
               "--timeout=5", str(study.files[0]))
    assert res.returncode == 1
    doc = _last(res.stdout)
    assert list(doc) == ["operation", "peer", "ok", "error"]  # as before the models
    report = parse_output("store", res.stdout)
    assert isinstance(report, StoreReport)
    assert (report.ok, report.seconds) == (False, None) and "refused" in str(report.error)


def test_repeated_moves_report_their_failures() -> None:
    res = _run("lab.dicom.scu", "move", f"--host={HOST}", f"--port={_closed_port()}",
               "--timeout=5", "--repeat=2", "--key=StudyInstanceUID=1.2.3")
    report = parse_output("move", res.stdout)
    assert isinstance(report, MoveReport)
    assert (report.repeat, report.moves_failed, report.completed_total) == (2, 2, 0)
    assert report.failures is not None and [f.move for f in report.failures] == [1, 2]
    assert report.document() == _last(res.stdout)


def test_verify_reports_every_missing_object(tmp_path: Path) -> None:
    study = generate_study("CR", tmp_path / "sent", objects=2)
    ca = authority.create_ca(tmp_path / "pki")
    signer = ca.issue("modality", usages={"signing"})
    manifest = integrity.build_manifest(study.files, sender="MODALITY")
    integrity.write_signed(integrity.sign_manifest(manifest, signer.key_path, signer.cert_path),
                           tmp_path / "manifest.json")
    res = _run("lab.dicom.verify", f"--manifest={tmp_path / 'manifest.json'}",
               f"--ca={ca.cert_path}", f"--store={tmp_path / 'empty'}",
               f"--study={study.study_instance_uid}")
    assert res.returncode == 1
    report = parse_output("verify", res.stdout)
    assert isinstance(report, VerifyReport)
    assert report.signature_ok is True and report.objects == 2 and not report.ok
    assert [p.status for p in report.problems] == ["missing", "missing"]
    assert all(p.sop_instance_uid and p.path is None for p in report.problems)
    assert report.document() == _last(res.stdout)
    res = _run("lab.dicom.verify", "--manifest=/nonexistent", f"--ca={ca.cert_path}",
               f"--store={tmp_path}", "--study=1.2.3")
    report = parse_output("verify", res.stdout)
    assert report.error and report.problems[0].status == "error"
    assert list(_last(res.stdout)) == ["ok", "error", "problems"]


def test_tlsbulk_reports_what_one_connection_carried() -> None:
    port = _closed_port()
    server = subprocess.Popen([sys.executable, "-m", "lab.bench.tlsbulk", "serve",
                               f"--port={port}"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert parse_report("tlsbulk-listening", server.stdout.readline()).document() == {
            "listening": port}
        sent = _run("lab.bench.tlsbulk", "send", f"--host={HOST}", f"--port={port}",
                    "--mbytes=2")
        assert sent.returncode == 0, sent.stderr
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    report = parse_output("tlsbulk", out)
    assert isinstance(report, BulkReport)
    assert report.bytes == 2_000_000
    assert report.seconds > 0 and report.mbit_per_s > 0 and report.cipher is None


GOOD_STORE = {"operation": "store", "peer": "[198.18.2.10]:11112", "ok": True,
              "setup_seconds": 0.01, "seconds": 0.02, "handshake_seconds": None,
              "tls_version": None, "cipher": None, "objects": 1, "bytes": 10,
              "statuses": {"0x0000": 1}, "failed": [], "retries": 0, "complete": True}


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def test_a_complete_document_round_trips() -> None:
    report = parse_report("store", json.dumps(GOOD_STORE))
    assert json.loads(report.line()) == GOOD_STORE
    assert list(json.loads(report.line())) == list(GOOD_STORE)  # same keys, same order


@pytest.mark.parametrize(("doc", "kind", "message"), [
    (_without(GOOD_STORE, "seconds"), "store", "missing field(s) seconds"),
    (_without(GOOD_STORE, "cipher"), "store", "missing field(s) cipher"),
    ({**GOOD_STORE, "sa_bytes": 5}, "store", "sa_bytes: Unexpected keyword argument"),
    ({**GOOD_STORE, "objects": "many"}, "store", "objects: Input should be a valid integer"),
    (GOOD_STORE, "echo", "operation: Input should be 'echo'"),
    (_without(GOOD_STORE, "peer"), "store", "peer: Field required"),
    ({"operation": "move", "peer": "p", "ok": False, "error": "x", "repeat": 2}, "move",
     "missing field(s) moves_failed, completed_total, failures"),
    ({"ok": True, "problems": []}, "verify", "missing field(s) signature_ok"),
    ({"bytes": 1, "seconds": 1.0, "mbit_per_s": 1.0}, "tlsbulk", "handshake_seconds: Field"),
])
def test_a_wrong_document_is_refused_naming_the_field(doc: dict[str, Any], kind: str,
                                                       message: str) -> None:
    with pytest.raises(ReportError, match="not a valid") as info:
        parse_report(kind, json.dumps(doc))
    assert message in str(info.value)


def test_not_a_report_at_all() -> None:
    with pytest.raises(ReportError, match="printed nothing"):
        parse_output("echo", "\n")
    with pytest.raises(ReportError, match="not JSON"):
        parse_output("echo", "Traceback (most recent call last):\n  boom\n")
    with pytest.raises(ReportError, match="no report kind 'ping'"):
        parse_report("ping", "{}")


def test_the_scu_help_fits_the_width_it_is_given() -> None:
    def usage(columns: str) -> list[str]:
        res = subprocess.run([sys.executable, "-m", "lab.dicom.scu", "--help"],
                             capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, "COLUMNS": columns})
        assert res.returncode == 0 and "--file-list" in res.stdout
        return res.stdout.split("\n\n")[0].splitlines()

    narrow, wide = usage("60"), usage("200")
    assert len(narrow) > len(wide) and max(map(len, wide)) > 100  # wrapped where it was told
