"""The SCU's C-FIND and C-MOVE on the lab's Upper Layer (lab.dicom.ul.qr_requestor, through
``python -m lab.dicom.scu``), against an independent Q/R SCP over loopback: pynetdicom's, with
small PDUs both ways so that commands, Identifiers and responses are fragmented. Command sets are
checked with pydicom's decoder (PS3.7 E.1, Implicit VR Little Endian)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from lab.dicom.reports import parse_output
from lab.dicom.ul import qr_requestor as qr

HOST = "127.0.0.1"
MATCHES = 5
#: Maximum PDU length of both ends: every Identifier here needs two P-DATA PDUs or more.
PDU = 256


def test_command_sets_decode_as_ps3_7_says() -> None:
    find = read_dataset(BytesIO(qr.find_rq(7, qr.FIND["study"])), True, True)
    assert find.CommandField == 0x0020 and find.MessageID == 7
    assert find.AffectedSOPClassUID == StudyRootQueryRetrieveInformationModelFind
    assert find.CommandDataSetType != 0x0101 and find.Priority == 0
    move = read_dataset(BytesIO(qr.move_rq(9, qr.MOVE["study"], "MODALITY")), True, True)
    assert move.CommandField == 0x0021 and move.MoveDestination == "MODALITY"
    assert move.AffectedSOPClassUID == StudyRootQueryRetrieveInformationModelMove
    assert move.CommandGroupLength == len(qr.move_rq(9, qr.MOVE["study"], "MODALITY")) - 12


@pytest.mark.parametrize("ts", [qr.IMPLICIT_LE, qr.EXPLICIT_LE])
def test_identifier_round_trip(ts: str) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.PatientName = "DOE^JOHN"
    ds.NumberOfStudyRelatedInstances = ""
    raw = qr.encode_identifier(ds, ts)
    back = qr.decode_identifier(raw, ts)
    assert [e.tag for e in back] == [e.tag for e in ds]
    assert back.StudyInstanceUID == "1.2.3.4" and back.PatientName == "DOE^JOHN"
    assert not back.NumberOfStudyRelatedInstances  # a universal matching key stays empty
    assert qr.encode_identifier(back, ts) == raw
    assert (raw[4:6] == b"CS") == (ts == qr.EXPLICIT_LE)  # the VR is written only if explicit


def test_a_destination_that_is_no_ae_title_is_refused() -> None:
    with pytest.raises(qr.AssociationError, match="AE title"):
        qr.move_rq(1, qr.MOVE["study"], "A-DESTINATION-TOO-LONG")


#: Keys whose values fill their VR's maximum (PS3.5 6.2: LO 64, PN 64 per component group).
LONG_KEYS = ("StudyDescription", "InstitutionName", "ReferringPhysicianName")


def _long_name(family: str) -> str:
    return f"{family}^" + "X" * 60


def _match(i: int) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = f"1.2.826.0.1.{i}"
    ds.PatientName = _long_name(f"P{i}")
    for keyword in LONG_KEYS:  # an Identifier longer than one PDU
        setattr(ds, keyword, keyword.upper()[:4] + "^" + "Y" * 59)
    return ds


def _on_find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
    for i in range(MATCHES):
        yield 0xFF00, _match(i)
    yield 0x0000, None


def _objects() -> list[Dataset]:
    out = []
    for i in range(2):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
        ds.SOPInstanceUID = f"1.2.826.0.2.{i}"
        ds.PatientName = "MOVED"
        out.append(ds)
    return out


@pytest.fixture(scope="module")
def scp() -> Iterator[tuple[int, list[str]]]:
    """A pynetdicom Q/R SCP (port) moving two objects to a pynetdicom storage SCP (its
    received SOP Instance UIDs) for MODALITY; other destinations are unknown (0xA801)."""
    received: list[str] = []
    store_ae = AE(ae_title="MODALITY")
    store_ae.supported_contexts = StoragePresentationContexts
    store = store_ae.start_server((HOST, 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, lambda e: received.append(e.request.AffectedSOPInstanceUID) or 0)])
    store_port = store.socket.getsockname()[1]

    def on_move(event: Any) -> Iterator[Any]:
        if event.move_destination.strip() != "MODALITY":
            yield None, None
            return
        yield HOST, store_port
        yield 2
        for ds in _objects():
            ds.file_meta = Dataset()
            ds.file_meta.TransferSyntaxUID = qr.IMPLICIT_LE
            yield 0xFF00, ds

    ae = AE(ae_title="QR")
    ae.maximum_pdu_size = PDU
    for cls in (StudyRootQueryRetrieveInformationModelFind,
                PatientRootQueryRetrieveInformationModelFind,
                StudyRootQueryRetrieveInformationModelMove):
        ae.add_supported_context(cls, [qr.IMPLICIT_LE, qr.EXPLICIT_LE])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7", qr.IMPLICIT_LE)
    server = ae.start_server((HOST, 0), block=False, evt_handlers=[
        (evt.EVT_C_FIND, _on_find), (evt.EVT_C_MOVE, on_move)])
    yield server.socket.getsockname()[1], received
    server.shutdown()
    store.shutdown()


def scu(port: int, *args: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "lab.dicom.scu", *args, f"--host={HOST}",
                          f"--port={port}", "--called=QR", "--timeout=10", f"--pdu={PDU}"],
                         capture_output=True, text=True, timeout=60, check=False)
    doc: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    assert (res.returncode == 0) == doc["ok"], res.stderr
    report = parse_output(args[0], res.stdout)  # the orchestrator's reader takes it as it is
    assert report.document() == doc
    return doc


@pytest.mark.parametrize("model", ["study", "patient"])
def test_find_gets_every_pending_match(scp: tuple[int, list[str]], model: str) -> None:
    doc = scu(scp[0], "find", f"--model={model}", "--level=STUDY", "--key=StudyInstanceUID=",
              "--key=PatientName=" + _long_name("Q"),
              *(f"--key={k}={'Z' * 64}" for k in LONG_KEYS[:2]))
    assert doc["ok"] and doc["status"] == 0, doc
    assert [m["StudyInstanceUID"] for m in doc["matches"]] == [
        f"1.2.826.0.1.{i}" for i in range(MATCHES)]
    assert doc["matches"][0]["PatientName"] == _long_name("P0")
    assert doc["matches"][0]["InstitutionName"] == "INST^" + "Y" * 59


def test_move_reports_sub_operations(scp: tuple[int, list[str]]) -> None:
    port, received = scp
    received.clear()
    doc = scu(port, "move", "--level=STUDY", "--key=StudyInstanceUID=1.2.826.0.1.0",
              "--dest=MODALITY", "--repeat=3")
    assert doc["ok"] and doc["status"] == 0 and doc["completed"] == 2, doc
    assert doc["repeat"] == 3 and doc["moves_failed"] == 0 and doc["completed_total"] == 6, doc
    assert sorted(received) == sorted(3 * [ds.SOPInstanceUID for ds in _objects()])
    unknown = scu(port, "move", "--level=STUDY", "--key=StudyInstanceUID=1.2.826.0.1.0",
                  "--dest=NOBODY")
    assert not unknown["ok"] and unknown["status"] == 0xA801, unknown


def test_a_model_the_peer_lacks_is_an_error_not_a_hang(scp: tuple[int, list[str]]) -> None:
    doc = scu(scp[0], "move", "--model=patient", "--level=STUDY", "--key=StudyInstanceUID=1")
    assert not doc["ok"] and "did not accept" in doc["error"], doc
