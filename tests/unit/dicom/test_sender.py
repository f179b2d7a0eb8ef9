"""The SCU's Storage Commitment and resume (lab.dicom.scu store --commit --retries,
lab.dicom.sender): against pynetdicom as the independent Storage Commitment SCP, and against the
lab's archive run as a process of its own that the test kills and restarts mid-study (a real
fault over loopback): every object stored exactly once, bit for bit, and committed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from lab.dicom import scu
from lab.dicom.archive.store import Store
from lab.dicom.reports import parse_output
from lab.dicom.ul.requestor import open_association, read_part10

from .conftest import make_dataset
from .ul.test_acceptor import make_config, serving

COMMITMENT = "1.2.840.10008.1.20.1"
NOT_KEPT = "1.2.826.0.1.3680043.10.1.1.1.2"  # the object the pynetdicom SCP says it lacks


def _files(tmp_path: Path, count: int, size: int = 2000) -> list[Path]:
    out = []
    for n in range(1, count + 1):
        ds = make_dataset(f"1.2.826.0.1.3680043.10.1.1.1.{n}", pixels=os.urandom(size))
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = tmp_path / f"{n}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def _item(ref: Any, reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
    item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
    if reason is not None:
        item.FailureReason = reason
    return item


def _report_on_new_association(result: Dataset, port: int) -> None:
    """pynetdicom, as the SCP, opening an association to the SCU in the SCP role (PS3.7
    D.3.3.4) to deliver the result."""
    ae = AE(ae_title="PACS")
    ae.add_requested_context(COMMITMENT, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="MODALITY",
                         ext_neg=[build_role(COMMITMENT, scu_role=False, scp_role=True)])
    assert assoc.is_established
    status, _ = assoc.send_n_event_report(result, 2, COMMITMENT, "1.2.840.10008.1.20.1.1")
    assert status.Status == 0
    assoc.release()


@pytest.fixture
def commitment_scp(request: pytest.FixtureRequest) -> Iterator[tuple[int, list[Dataset]]]:
    """pynetdicom storing and answering Storage Commitment: the N-ACTION-RSP, then (from a
    thread of its own, as an SCP does its check later) the N-EVENT-REPORT on the same
    association, or on a new one to the port ``request.param`` names, every object committed
    but NOT_KEPT (0x0112)."""
    report_port: int = getattr(request, "param", 0)
    asked: list[Dataset] = []

    def on_action(event: Any) -> tuple[int, None]:
        request = event.action_information
        asked.append(request)
        result = Dataset()
        result.TransactionUID = request.TransactionUID
        refs = request.ReferencedSOPSequence
        result.ReferencedSOPSequence = Sequence(
            [_item(r) for r in refs if r.ReferencedSOPInstanceUID != NOT_KEPT])
        result.FailedSOPSequence = Sequence(
            [_item(r, 0x0112) for r in refs if r.ReferencedSOPInstanceUID == NOT_KEPT])
        if report_port:
            threading.Timer(0.2, _report_on_new_association, (result, report_port)).start()
        else:
            threading.Timer(0.2, event.assoc.send_n_event_report,
                            (result, 2, COMMITMENT, "1.2.840.10008.1.20.1.1")).start()
        return 0, None

    ae = AE(ae_title="PACS")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_supported_context(COMMITMENT, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_N_ACTION, on_action),
                                           (evt.EVT_C_STORE, lambda e: 0)])
    assert server is not None
    yield server.server_address[1], asked
    server.shutdown()


def _store(port: int, files: list[Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.dicom.scu", "store", "--host=127.0.0.1",
                           f"--port={port}", "--timeout=10", *extra, *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_scu_asks_pynetdicom_for_commitment_and_records_each_answer(
        commitment_scp: tuple[int, list[Dataset]], tmp_path: Path) -> None:
    port, asked = commitment_scp
    files = _files(tmp_path, 3)
    res = _store(port, files, "--commit", "--commit-timeout=10")
    report = parse_output("store", res.stdout)
    assert report.complete is True and report.committed == 2 and not report.ok
    assert report.commitment == {
        "1.2.826.0.1.3680043.10.1.1.1.1": "committed",
        NOT_KEPT: "failed 0x0112 (no such object instance)",
        "1.2.826.0.1.3680043.10.1.1.1.3": "committed"}
    (request,) = asked  # what pynetdicom decoded of our N-ACTION dataset
    assert request.TransactionUID.startswith("2.25.")
    assert [r.ReferencedSOPInstanceUID for r in request.ReferencedSOPSequence] == \
        [f"1.2.826.0.1.3680043.10.1.1.1.{n}" for n in (1, 2, 3)]
    assert {r.ReferencedSOPClassUID for r in request.ReferencedSOPSequence} == {CTImageStorage}


LISTEN_PORT = 0  # set at import below: one free port for the parametrized fixture


def _a_free_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::", 0))
        return int(s.getsockname()[1])


LISTEN_PORT = _a_free_port()


@pytest.mark.parametrize("commitment_scp", [LISTEN_PORT], indirect=True)
def test_scu_takes_the_result_on_a_new_association(
        commitment_scp: tuple[int, list[Dataset]], tmp_path: Path) -> None:
    """pynetdicom opens an association to the SCU's --commit-port to report, while the SCU
    still holds its own: the SCU accepts it (the SCP role) and records each answer."""
    port, asked = commitment_scp
    files = _files(tmp_path, 3)
    res = _store(port, files, "--commit", "--commit-timeout=10",
                 f"--commit-port={LISTEN_PORT}")
    report = parse_output("store", res.stdout)
    assert report.committed == 2 and len(asked) == 1, res.stdout
    assert report.commitment is not None and report.commitment[NOT_KEPT].startswith(
        "failed 0x0112")


def test_resent_identical_object_is_one_copy_and_success(tmp_path: Path) -> None:
    """A duplicate (its response lost with an association) is harmless: success again, one
    file, the same bytes."""
    (path,) = _files(tmp_path, 1)
    obj = read_part10(path)
    with Store.open(tmp_path / "store") as store, serving(make_config(store)) as server:
        for _ in range(2):
            assoc, _ = open_association("127.0.0.1", server.port, called="PACS",
                                        calling="MODALITY", max_pdu=0, timeout=5,
                                        contexts=[(CTImageStorage, [ExplicitVRLittleEndian])])
            assert assoc.store_all([obj], 0) == [0]
            assoc.release()
        files = list((tmp_path / "store" / "objects").rglob("*.dcm"))
        assert store.count() == 1 and len(files) == 1
        assert _dataset_digest(files[0]) == _dataset_digest(path)


def _dataset_digest(path: Path) -> str:
    """SHA-256 of a Part-10 file's dataset (what follows its File Meta Information)."""
    obj = read_part10(path)
    return hashlib.sha256(path.read_bytes()[obj.offset:]).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _archive(root: Path, port: int) -> subprocess.Popen[str]:
    """The lab's archive as its own process; returns once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "lab.dicom.pacs", f"--root={root}",
                             "--bind=127.0.0.1", f"--port={port}", "--ae=PACS"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening" in line, line
    return proc


@contextlib.contextmanager
def _running(root: Path, port: int) -> Iterator[list[subprocess.Popen[str]]]:
    procs = [_archive(root, port)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)


def _stored(root: Path) -> list[Path]:
    return list((root / "objects").rglob("*.dcm")) if (root / "objects").exists() else []


def test_study_survives_the_archive_killed_mid_study(tmp_path: Path) -> None:
    """The archive is killed (SIGKILL, by pid) once a fifth of the study is stored, and
    started again 0.5 s later: the SCU resumes on a new association, every object ends up in
    the store exactly once with its bytes, and the whole study is committed."""
    files = _files(tmp_path, 60, size=400_000)
    root, port = tmp_path / "archive", _free_port()
    with _running(root, port) as procs:
        scu_proc = subprocess.Popen(
            [sys.executable, "-m", "lab.dicom.scu", "store", "--host=127.0.0.1",
             f"--port={port}", "--timeout=10", "--window=1", "--commit", "--retries=8",
             "--retry-backoff=0.1", *map(str, files)], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(_stored(root)) < 12:
            assert time.monotonic() < deadline and scu_proc.poll() is None
            time.sleep(0.005)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(10)
        killed_with = len(_stored(root))
        time.sleep(0.5)
        procs.append(_archive(root, port))
        out, _ = scu_proc.communicate(timeout=120)
    report = parse_output("store", out)
    assert killed_with < len(files), "the fault came after the study was stored"
    assert report.ok and report.complete and report.committed == len(files), out
    assert report.retries is not None and report.retries >= 1
    assert report.recover_seconds is not None and report.recover_seconds >= 0.5
    assert set(report.commitment or {}) == {read_part10(f).sop_instance for f in files}
    stored = _stored(root)
    assert len(stored) == len(files)  # each object exactly once
    assert sorted(map(_dataset_digest, stored)) == sorted(map(_dataset_digest, files))
    print(json.dumps({"retries": report.retries, "recover_seconds": report.recover_seconds,
                      "killed_with": killed_with, "breaks": report.breaks}))


def test_retries_are_bounded(tmp_path: Path) -> None:
    """Nobody listens: two retries with back-off 0.1 then 0.2 s, then the report says why."""
    files = _files(tmp_path, 1)
    start = time.monotonic()
    res = _store(_free_port(), files, "--retries=2", "--retry-backoff=0.1")
    report = parse_output("store", res.stdout)
    assert not report.ok and "gave up after 2 retries" in (report.error or "")
    assert 0.3 <= time.monotonic() - start < 10


def test_scu_parser_knows_the_options() -> None:
    args = scu.parser().parse_args(["store", "--host=::1", "--commit", "--retries=3",
                                    "--retry-backoff=0.25"])
    assert (args.commit, args.retries, args.retry_backoff) == (True, 3, 0.25)


def test_a_study_given_up_reports_how_far_it_went(tmp_path: Path) -> None:
    """The archive is killed mid-study and stays down: after one retry the report says why,
    and which objects were stored before (complete false, the rest without a status)."""
    files = _files(tmp_path, 40, size=400_000)
    root, port = tmp_path / "archive", _free_port()
    with _running(root, port) as procs:
        scu_proc = subprocess.Popen(
            [sys.executable, "-m", "lab.dicom.scu", "store", "--host=127.0.0.1",
             f"--port={port}", "--timeout=10", "--window=1", "--retries=1",
             "--retry-backoff=0.1", *map(str, files)], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(_stored(root)) < 5:
            assert time.monotonic() < deadline and scu_proc.poll() is None
            time.sleep(0.005)
        os.kill(procs[0].pid, signal.SIGKILL)
        out, _ = scu_proc.communicate(timeout=60)
    report = parse_output("store", out)
    assert not report.ok and report.complete is False and report.retries == 1
    assert "gave up after 1 retries" in (report.error or "")
    statuses = report.statuses or {}
    assert statuses.get("0x0000", 0) >= 5 and statuses.get("none", 0) >= 1
    assert statuses["0x0000"] + statuses["none"] == len(files)
    assert len(report.failed or []) == statuses["none"]


@pytest.mark.parametrize("bad", ["--retries=-1", "--retry-backoff=-0.5", "--commit-timeout=0"])
def test_bad_retry_options_are_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        scu.main(["store", "--host=::1", bad, "x.dcm"])
    assert bad.split("=")[0] in capsys.readouterr().err
