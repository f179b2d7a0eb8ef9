"""lab.dicom.fastio: event-driven association I/O, over loopback, and its fall-back."""

from __future__ import annotations

import queue
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from lab.dicom import fastio
from lab.dicom.netopts import TunedAE


def _dataset(size: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "FAST^IO"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.EncapsulatedDocument = b"\x01\x02" * (size // 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_associations_are_event_driven_both_ends() -> None:
    received: list[tuple[Any, int]] = []

    def on_store(event: Any) -> int:
        received.append((event.assoc.dul.socket, len(event.dataset.EncapsulatedDocument)))
        return 0

    server_ae = TunedAE(ae_title="PACS")
    server_ae.add_supported_context(Verification)
    server_ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    server = server_ae.start_server(("127.0.0.1", 0), block=False,
                                    evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert server is not None
    try:
        ae = TunedAE(ae_title="MODALITY")
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="PACS",
                             max_pdu=131072)
        assert assoc.is_established
        assert isinstance(assoc.dul.socket, fastio.EventSocket)
        assert assoc.send_c_echo().Status == 0
        for size in (10, 300_000):  # PDUs far larger than one 4096-byte read
            assert assoc.send_c_store(_dataset(size)).Status == 0
        assoc.release()
        assert assoc.is_released
    finally:
        server.shutdown()
    assert [n for _, n in received] == [10, 300_000]
    assert all(isinstance(sock, fastio.EventSocket) for sock, _ in received)


def test_unexpected_internals_are_left_alone() -> None:
    class Odd:
        pass

    odd: Any = Odd()
    assert fastio.upgrade_socket(odd) is odd
    assert not isinstance(odd, fastio.EventSocket)
    assoc: Any = Odd()
    assoc.dimse = Odd()
    assoc.dimse.msg_queue = queue.LifoQueue()
    fastio.wait_for_messages(assoc)
    assert type(assoc.dimse.msg_queue) is queue.LifoQueue
