"""lab.dicom.ul.pdu and lab.dicom.ul.command against pynetdicom's and pydicom's own encoders, as an
independent reference, and against malformed input."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode as pyn_decode
from pynetdicom.dsutils import encode as pyn_encode
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
)
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

from lab.dicom.ul import command as cmd
from lab.dicom.ul import pdu
from lab.dicom.ul.link import Link, LinkClosed

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"


def _rq() -> pdu.Associate:
    return pdu.Associate("PACS", "MODALITY", contexts=(
        pdu.Proposed(1, CT, (EXPLICIT, IMPLICIT)), pdu.Proposed(3, MR, (EXPLICIT,))),
        max_length=16384, implementation_class_uid="1.2.3.4", implementation_version_name="X_1")


def test_associate_rq_decodes_in_pynetdicom() -> None:
    ours = pdu.encode_associate(pdu.A_ASSOCIATE_RQ, _rq())
    theirs = A_ASSOCIATE_RQ()
    theirs.decode(ours)
    assert theirs.called_ae_title == "PACS" and theirs.calling_ae_title == "MODALITY"
    assert theirs.application_context_name == pdu.APPLICATION_CONTEXT
    contexts = [(cx.context_id, cx.abstract_syntax, cx.transfer_syntax)
                for cx in theirs.presentation_context]
    assert contexts == [(1, CT, [EXPLICIT, IMPLICIT]), (3, MR, [EXPLICIT])]
    user = theirs.user_information
    assert (user.maximum_length, user.implementation_class_uid) == (16384, "1.2.3.4")
    assert user.implementation_version_name == "X_1"
    assert len(ours) == 6 + struct.unpack(">L", ours[2:6])[0]
    assert ours == theirs.encode()  # and pynetdicom encodes what it read to the same bytes


def _pyn_associate(kind: str) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = pdu.APPLICATION_CONTEXT
    primitive.calling_ae_title = "MODALITY"
    primitive.called_ae_title = "PACS"
    maxlen = MaximumLengthNotification()
    maxlen.maximum_length_received = 32768
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.826.0.1.3680043.9.3811"
    primitive.user_information = [maxlen, impl]
    cx = build_context(CT, [EXPLICIT, IMPLICIT])
    cx.context_id = 1
    if kind == "rq":
        primitive.presentation_context_definition_list = [cx]
        rq = A_ASSOCIATE_RQ()
        rq.from_primitive(primitive)
        return bytes(rq.encode())
    cx.result = 0
    cx.transfer_syntax = [EXPLICIT]
    primitive.presentation_context_definition_results_list = [cx]
    primitive.result = 0
    ac = A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    return bytes(ac.encode())


def test_pynetdicom_associate_rq_and_ac_decode_here() -> None:
    rq = pdu.decode_associate(pdu.A_ASSOCIATE_RQ, _pyn_associate("rq")[6:])
    assert (rq.called, rq.calling, rq.max_length) == ("PACS", "MODALITY", 32768)
    assert rq.contexts == (pdu.Proposed(1, CT, (EXPLICIT, IMPLICIT)),)
    assert rq.implementation_class_uid == "1.2.826.0.1.3680043.9.3811"
    ac = pdu.decode_associate(pdu.A_ASSOCIATE_AC, _pyn_associate("ac")[6:])
    assert ac.results == (pdu.Result(1, 0, EXPLICIT),) and ac.max_length == 32768


def test_associate_ac_decodes_in_pynetdicom() -> None:
    ac = pdu.Associate("PACS", "MODALITY", results=(
        pdu.Result(1, pdu.ACCEPTANCE, EXPLICIT), pdu.Result(3, pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED)),
        max_length=0, implementation_class_uid="1.2.3")
    theirs = A_ASSOCIATE_AC()
    theirs.decode(pdu.encode_associate(pdu.A_ASSOCIATE_AC, ac))
    got = [(cx.context_id, cx.result, cx.transfer_syntax) for cx in theirs.presentation_context]
    assert got == [(1, 0, EXPLICIT), (3, 3, None)]
    assert pdu.decode_associate(pdu.A_ASSOCIATE_AC,
                                pdu.encode_associate(pdu.A_ASSOCIATE_AC, ac)[6:]) == ac


@pytest.mark.parametrize(("ours", "cls", "fields"), [
    (pdu.encode_reject(1, 1, 7), A_ASSOCIATE_RJ,
     {"result": 1, "source": 1, "reason_diagnostic": 7}),
    (pdu.encode_abort(2, 0), A_ABORT_RQ, {"source": 2, "reason_diagnostic": 0}),
    (pdu.RELEASE_RQ, A_RELEASE_RQ, {}),
    (pdu.RELEASE_RP, A_RELEASE_RP, {}),
])
def test_fixed_pdus_match_pynetdicom(ours: bytes, cls: type, fields: dict[str, int]) -> None:
    theirs = cls()
    theirs.decode(ours)
    for name, value in fields.items():
        assert getattr(theirs, name) == value
    assert bytes(theirs.encode()) == ours


@pytest.mark.parametrize("max_length", [0, 16384, 100])
def test_fragments_decode_in_pynetdicom_within_the_maximum(max_length: int) -> None:
    data = bytes(range(256)) * 200
    pieces = list(pdu.fragments(5, False, data, max_length))
    joined, controls = b"", []
    for piece in pieces:
        theirs = P_DATA_TF()
        theirs.decode(piece)
        (item,) = theirs.presentation_data_value_items
        assert item.presentation_context_id == 5
        controls.append(item.presentation_data_value[0])
        joined += item.presentation_data_value[1:]
        if max_length:
            assert len(piece) - 6 <= max_length
    assert joined == data
    assert controls == [0] * (len(pieces) - 1) + [pdu.LAST]


def test_command_sets_match_pydicom() -> None:
    ours = cmd.store_rq(7, CT, "1.2.3.45")
    ds = Dataset()
    ds.CommandGroupLength = len(ours) - 12
    ds.AffectedSOPClassUID = CT
    ds.CommandField = 0x0001
    ds.MessageID = 7
    ds.Priority = 0
    ds.CommandDataSetType = 0
    ds.AffectedSOPInstanceUID = "1.2.3.45"
    assert ours == pyn_encode(ds, True, True)
    rsp = pyn_decode(__import__("io").BytesIO(cmd.store_rsp(7, CT, "1.2.3.45", 0xC000)),
                     True, True)
    assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (0x8001, 7, 0xC000)
    assert rsp.AffectedSOPInstanceUID == "1.2.3.45" and rsp.CommandDataSetType == 0x0101
    fields = cmd.decode(pyn_encode(ds, True, True))
    assert cmd.us(fields, cmd.MESSAGE_ID) == 7 and cmd.text(fields, cmd.AFFECTED_SOP_CLASS) == CT
    assert cmd.has_data_set(fields)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x00\x00\x00\x04\x00", "truncated"),
    (struct.pack("<HHL", 0, 0x0100, 40) + b"\x01\x00", "truncated"),
    (struct.pack("<HHL", 8, 0x0018, 2) + b"ab", "in a command set"),
    (struct.pack("<HHL", 0, 0x0002, 2) + b"1\x00", "lacks"),
])
def test_malformed_command_sets_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(pdu.PduError, match=message):
        cmd.decode(data)


@pytest.mark.parametrize(("body", "message"), [
    (b"\x00\x01", "too short"),
    (bytes(68) + b"\x10\x00\x00\x30abc", "needs 48 bytes"),
    (bytes(68) + b"\x10\x00\x00\x03abc" + b"\x20\x00\x00\x08\x01\x00\x00\x00\x30\x00\x00\x00",
     "lacks its abstract or transfer syntax"),
    (bytes(68) + b"\x99\x00\x00\x00", "unexpected item"),
    (bytes(68), "without an application context"),
])
def test_malformed_associate_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(pdu.PduError, match=message):
        pdu.decode_associate(pdu.A_ASSOCIATE_RQ, body)


def test_link_reads_pdus_split_anyhow_and_refuses_garbage() -> None:
    a, b = socket.socketpair()
    with a, b:
        link = Link(b, 5)
        whole = pdu.encode_abort(2, 1) + b"".join(pdu.fragments(1, True, b"x" * 300_000, 0))
        sender = threading.Thread(target=lambda: [a.sendall(whole[i : i + 70_001])
                                                  for i in range(0, len(whole), 70_001)])
        sender.start()  # PDUs cut across reads
        assert link.header() == (pdu.A_ABORT, 4) and link.body(4) == b"\0\0\2\1"
        kind, length = link.header()
        n, cid, control = link.pdv_header()
        got = bytearray()
        link.stream(n, got.extend)
        assert (kind, length, n, cid, control) == (4, 300_006, 300_000, 1, 3)
        assert got == b"x" * 300_000
        sender.join()
        a.sendall(b"\x09\x00\x00\x00\x00\x00")
        with pytest.raises(pdu.PduError, match="unknown PDU type"):
            link.header()
        a.sendall(b"\x01\x00")
        a.close()
        with pytest.raises(LinkClosed):
            link.header()


def test_gathered_sends_the_first_answer_alone_then_ever_larger_writes() -> None:
    messages = [[bytes([n % 251]) * 150, bytes([n % 7]) * 250] for n in range(400)]
    writes = list(pdu.gathered(messages, size=16384))
    assert b"".join(writes) == b"".join(b"".join(m) for m in messages)  # all, in order
    assert writes[0] == b"".join(messages[0])  # the peer can start at once
    middle = [len(w) for w in writes[1:-1]]
    assert all(n >= min(16384, pdu.FIRST_GATHER << i) for i, n in enumerate(middle))
    assert max(middle) >= 16384 and len(writes) < 20  # few large writes, not 800 small ones
    assert len(writes[-1]) > len(b"".join(messages[-1]))  # the last message not alone


@pytest.mark.parametrize("count", [1, 2, 3])
def test_gathered_never_sends_the_last_message_alone(count: int) -> None:
    messages = [[bytes([n]) * 40, bytes([n]) * 60] for n in range(count)]
    writes = list(pdu.gathered(messages))
    assert b"".join(writes) == b"".join(b"".join(m) for m in messages)
    assert len(writes) == (1 if count < 3 else 2)  # one match and its final response: one write
