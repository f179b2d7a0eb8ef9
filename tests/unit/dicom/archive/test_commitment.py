"""The archive's Storage Commitment SCP (lab.dicom.archive.commitment behind the acceptor) against
pynetdicom as the independent SCU: results on the same association and on a new one, answered
from what the store holds; and malformed N-ACTIONs answered with a failure status, never a crash.
"""

from __future__ import annotations

import queue
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from lab.dicom.archive.commitment import CommitmentService
from lab.dicom.archive.store import Store
from lab.dicom.ul import command as cmd
from lab.dicom.ul import commitment as sc
from lab.dicom.ul.acceptor import Config
from lab.dicom.ul.requestor import AssociationError, open_association

from ..conftest import make_dataset, put
from ..ul.test_acceptor import SUPPORTED, make_config, serving

UNKNOWN = "1.2.826.0.1.3680043.10.1.1.1.999"
SOPS = [f"1.2.826.0.1.3680043.10.1.1.1.{n}" for n in range(1, 4)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as s:
        for sop in SOPS:
            put(s, make_dataset(sop))
        yield s


def commit_config(store: Store, peers: dict[str, tuple[str, int]] | None = None,
                  ) -> tuple[Config, CommitmentService]:
    """The archive's configuration with Storage Commitment, as lab.dicom.pacs makes it."""
    service = CommitmentService(store, peers or {}, ae_title="PACS", timeout=5)
    supported = {**SUPPORTED, sc.SOP_CLASS: frozenset(sc.SYNTAXES)}
    return make_config(store, supported=supported, action=service), service


def _request(uids: list[tuple[str, str]], transaction: str = "1.2.3.4.5") -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    ds.ReferencedSOPSequence = Sequence()
    for sop_class, sop in uids:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop
        ds.ReferencedSOPSequence.append(item)
    return ds


def _scu(port: int, reports: queue.Queue[Any] | None, ts: str, answer: int = 0) -> Any:
    """pynetdicom associated with the archive; ``reports`` gets each N-EVENT-REPORT it
    receives there (answered with ``answer``), none bound without it."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(sc.SOP_CLASS, ts)
    ae.add_requested_context(Verification)
    handlers = []
    if reports is not None:
        def on_report(event: Any) -> tuple[int, None]:
            reports.put((event.event_type, event.event_information))
            return answer, None
        handlers = [(evt.EVT_N_EVENT_REPORT, on_report)]
    assoc = ae.associate("127.0.0.1", port, ae_title="PACS", evt_handlers=handlers)
    assert assoc.is_established
    return assoc


@pytest.mark.parametrize("ts", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_pynetdicom_scu_gets_the_result_on_its_association(store: Store, ts: str) -> None:
    """Three objects held, one unknown (0x0112), one of another class (0x0119), one whose file
    was cut short on disk (0x0110): event type 2 with both sequences, read by pynetdicom."""
    bad = store.get(SOPS[2])
    assert bad is not None
    bad.path.write_bytes(bad.path.read_bytes()[:-10])
    config, _ = commit_config(store)
    reports: queue.Queue[Any] = queue.Queue()
    with serving(config) as server:
        assoc = _scu(server.port, reports, ts)
        asked = [(CTImageStorage, s) for s in SOPS] + [(CTImageStorage, UNKNOWN),
                                                      ("1.2.840.10008.5.1.4.1.1.7", SOPS[0])]
        status, _ = assoc.send_n_action(_request(asked), 1, sc.SOP_CLASS, sc.INSTANCE)
        assert status.Status == 0
        event_type, ds = reports.get(timeout=5)
        assoc.release()
    assert event_type == 2 and ds.TransactionUID == "1.2.3.4.5"
    assert [i.ReferencedSOPInstanceUID for i in ds.ReferencedSOPSequence] == SOPS[:2]
    failed = {(i.ReferencedSOPInstanceUID, i.ReferencedSOPClassUID): i.FailureReason
              for i in ds.FailedSOPSequence}
    assert failed == {(SOPS[2], CTImageStorage): 0x0110, (UNKNOWN, CTImageStorage): 0x0112,
                      (SOPS[0], "1.2.840.10008.5.1.4.1.1.7"): 0x0119}


def test_all_committed_is_event_type_1(store: Store) -> None:
    config, _ = commit_config(store)
    reports: queue.Queue[Any] = queue.Queue()
    with serving(config) as server:
        assoc = _scu(server.port, reports, ImplicitVRLittleEndian)
        status, _ = assoc.send_n_action(_request([(CTImageStorage, s) for s in SOPS]), 1,
                                        sc.SOP_CLASS, sc.INSTANCE)
        event_type, ds = reports.get(timeout=5)
        assoc.release()
    assert status.Status == 0 and event_type == 1 and "FailedSOPSequence" not in ds
    assert len(ds.ReferencedSOPSequence) == 3


# pynetdicom's state machine may raise in its own thread when our N-EVENT-REPORT arrives just
# after its A-ABORT (PS3.8 Sta13 would ignore it): that is the peer's thread, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("ending", ["abort", "refuse"])
def test_result_goes_over_a_new_association_when_the_first_is_gone(store: Store,
                                                                   ending: str) -> None:
    """The SCU aborts as soon as the N-ACTION is answered, or refuses the result there
    (status 0x0110): the archive opens an association to the SCU's AE title (its known peer),
    proposing the SCP role, and pynetdicom receives the result there."""
    reports: queue.Queue[Any] = queue.Queue()
    roles: list[tuple[bool, bool]] = []

    def on_report(event: Any) -> tuple[int, None]:
        roles.extend((r.scu_role, r.scp_role) for r in event.assoc.requestor.role_selection
                     .values())
        reports.put((event.event_type, event.event_information))
        return 0, None

    receiver = AE(ae_title="MODALITY")
    receiver.add_supported_context(sc.SOP_CLASS, ImplicitVRLittleEndian, scu_role=False,
                                   scp_role=True)
    listener = receiver.start_server(("127.0.0.1", 0), block=False,
                                     evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        config, service = commit_config(store, {"MODALITY": listener.server_address[:2]})
        with serving(config) as server:
            refused: queue.Queue[Any] = queue.Queue()
            assoc = _scu(server.port, refused if ending == "refuse" else None,
                         ImplicitVRLittleEndian, answer=0x0110)
            asked = [(CTImageStorage, SOPS[0]), (CTImageStorage, UNKNOWN)]
            status, _ = assoc.send_n_action(_request(asked), 1, sc.SOP_CLASS, sc.INSTANCE)
            if ending == "abort":
                assoc.abort()
            event_type, ds = reports.get(timeout=10)
            if ending == "refuse":
                assert refused.get(timeout=1)[0] == 2  # it came there first
                assoc.release()
            for thread in service.threads:
                thread.join(5)
    finally:
        listener.shutdown()
    assert status.Status == 0 and event_type == 2 and roles == [(False, True)]
    assert ds.FailedSOPSequence[0].ReferencedSOPInstanceUID == UNKNOWN


def _raw_action(port: int, dataset: bytes, *, action_type: int = 1,
                instance: str = sc.INSTANCE) -> int:
    """An N-ACTION-RQ with ``dataset`` as it is, from the lab's requestor; its status, after
    checking the association still answers a C-ECHO."""
    assoc, _ = open_association("127.0.0.1", port, called="PACS", calling="MODALITY",
                                max_pdu=0, timeout=5,
                                contexts=[(sc.SOP_CLASS, [ImplicitVRLittleEndian]),
                                          (Verification, [ImplicitVRLittleEndian])])
    try:
        command = cmd.encode({cmd.REQUESTED_SOP_CLASS: sc.SOP_CLASS,
                              cmd.COMMAND_FIELD: cmd.N_ACTION_RQ, cmd.MESSAGE_ID: 7,
                              cmd.DATA_SET_TYPE: 0, cmd.REQUESTED_SOP_INSTANCE: instance,
                              cmd.ACTION_TYPE_ID: action_type})
        assoc.send_message(1, command, dataset)
        _, fields, _ = assoc.message(1 << 16)
        assert cmd.us(fields, cmd.COMMAND_FIELD) == cmd.N_ACTION_RSP
        assert cmd.us(fields, cmd.RESPONDED_TO) == 7
        status = cmd.us(fields, cmd.STATUS)
        if status == 0:  # then the result comes: answer it
            _, report, _ = assoc.message(sc.DATASET_LIMIT)
            assoc.send_message(1, sc.event_report_rsp(cmd.us(report, cmd.MESSAGE_ID), 0, 1),
                               None)
        assert assoc.echo(9) == 0
    finally:
        assoc.release()
    return status


def _ui(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", group, element, len(value)) + value


GOOD = sc.encode_request("1.2.3", [sc.Reference(CTImageStorage, SOPS[0])],
                         ImplicitVRLittleEndian)
NESTED = _ui(0x0008, 0x1195, b"1.2.3\0") + struct.pack("<HHL", 0x0008, 0x1199, 0xFFFFFFFF) \
    + (struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
       + struct.pack("<HHL", 0x0008, 0x1199, 0xFFFFFFFF)) * 50


@pytest.mark.parametrize(("dataset", "expected"), [
    (b"", sc.MISSING_ATTRIBUTE),
    (b"\x08\x00", sc.PROCESSING_FAILURE),  # truncated header
    (GOOD[:-3], sc.PROCESSING_FAILURE),  # truncated value
    (_ui(0x0008, 0x1195, b"1.2.3\0") + struct.pack("<HHL", 0x0008, 0x1199, 0x7FFFFFF0),
     sc.PROCESSING_FAILURE),  # a sequence longer than the dataset
    (NESTED, sc.PROCESSING_FAILURE),  # nesting without end
    (_ui(0x0008, 0x1195, b"not a uid"), sc.INVALID_VALUE),
    (_ui(0x0008, 0x1195, b"1.2.3\0"), sc.MISSING_ATTRIBUTE),  # no references
    (sc.encode_request("1..2", [sc.Reference(CTImageStorage, SOPS[0])],
                       ImplicitVRLittleEndian), sc.INVALID_VALUE),  # bad UID
    (GOOD[GOOD.index(b"\x08\x00\x99\x11"):], sc.MISSING_ATTRIBUTE),  # no Transaction UID
    (bytes(range(256)) * 8, sc.PROCESSING_FAILURE),
])
def test_malformed_n_action_gets_a_failure_status(store: Store, dataset: bytes,
                                                  expected: int) -> None:
    config, _ = commit_config(store)
    with serving(config) as server:
        assert _raw_action(server.port, GOOD) == 0
        assert _raw_action(server.port, dataset) == expected


def test_wrong_action_or_instance_is_refused(store: Store) -> None:
    config, _ = commit_config(store)
    with serving(config) as server:
        assert _raw_action(server.port, GOOD, action_type=2) == sc.NO_SUCH_ACTION
        assert _raw_action(server.port, GOOD, instance="1.2.3") == sc.INVALID_INSTANCE


def test_oversized_n_action_is_aborted_before_it_is_read(store: Store) -> None:
    """A dataset above DATASET_LIMIT ends the association (memory stays bounded); the archive
    serves the next one."""
    config, _ = commit_config(store)
    with serving(config) as server:
        with pytest.raises((AssociationError, OSError)):
            _raw_action(server.port, GOOD + _ui(0x0009, 0x0010, bytes(sc.DATASET_LIMIT)))
        assert _raw_action(server.port, GOOD) == 0
