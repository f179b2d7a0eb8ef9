"""Malformed command and dataset fields sent to the archive (issue 12): a C-STORE whose dataset is
malformed, or whose indexed attributes have an impossible VR, a wrong length or a non-ASCII byte
in a UID, gets a failure status (PS3.4 B.2.3: 0xA7xx, 0xA9xx, 0xCxxx) and is not found by C-FIND
afterwards (pynetdicom walks the Study Root hierarchy); a command with a non-ASCII UID gets a
failure status or an A-ABORT, never Success nor silence; a malformed command set gets an A-ABORT
from the service provider (PS3.8 9.3.8). Both shapes of association are tried: Verification and
Storage only, and with Query/Retrieve beside them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from .archive_attack import (
    IDLE,
    ROOT_UID,
    SLACK,
    Archive,
    assert_legit_served,
    attacked_archive,
    stored_instances,
)
from .archive_wire import (
    A_ABORT,
    CT_IMAGE,
    DEFAULT_CONTEXTS,
    LAST,
    P_DATA_TF,
    VERIFICATION,
    associate,
    command_fields,
    command_set,
    ct_elements,
    echo_rq,
    element,
    encode_dataset,
    is_command_failure,
    is_failure,
    outcome,
    status_of,
    store_rq,
    uid,
    us,
)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with attacked_archive(tmp_path) as a:
        yield a


# --- 6. malformed command and dataset fields --------------------------------------------------


def _bad_dataset(kind: str, sop: str) -> bytes:
    """A CT dataset with one indexed attribute (or the encoding) made impossible."""
    study, series = f"{sop}.7", f"{sop}.8"
    elements = ct_elements(sop, study, series, f"BAD-{kind}")
    raw: dict[int, bytes] = {}
    if kind == "InstanceNumber-FD-3-bytes":
        raw[0x00200013] = element(0x00200013, "FD", b"\x01\x02\x03")
    elif kind == "StudyInstanceUID-SQ":
        raw[0x0020000D] = element(0x0020000D, "SQ", b"")
    elif kind == "SeriesNumber-US-3-bytes":
        raw[0x00200011] = element(0x00200011, "US", b"\x01\x00\x00")
    elif kind == "InstanceNumber-UL-2-bytes":
        raw[0x00200013] = element(0x00200013, "UL", b"\x01\x00")
    elif kind == "StudyDate-FL-4-bytes":
        raw[0x00080020] = element(0x00080020, "FL", b"\x00\x00\x80\x3f")
    elif kind == "Modality-FD-8-bytes":
        raw[0x00080060] = element(0x00080060, "FD", bytes(8))
    elif kind == "PatientID-SQ":
        raw[0x00100020] = element(0x00100020, "SQ", b"")
    elif kind == "SeriesInstanceUID-non-ASCII":
        elements[0x0020000E] = ("UI", uid(series.encode()[:-1] + b"\xe9"))
    elif kind == "StudyInstanceUID-non-ASCII":
        elements[0x0020000D] = ("UI", uid(b"1.2.\xff" + study.encode()[4:]))
    elif kind == "SOPInstanceUID-non-ASCII-in-dataset":
        elements[0x00080018] = ("UI", uid(sop.encode()[:-1] + b"\x80"))
    elif kind == "AccessionNumber-length-past-end":
        raw[0x00080050] = element(0x00080050, "SH", b"ACC1", length=0xFFF0)
    elif kind == "unknown-VR":
        raw[0x00100010] = element(0x00100010, "ZZ", b"Doe^John")
    elif kind == "truncated-in-header":
        data = encode_dataset(elements)
        return data[: data.index(struct.pack("<HH", 0x0010, 0x0020)) + 9]
    return encode_dataset(elements, raw)


BAD_DATASETS = ["InstanceNumber-FD-3-bytes", "StudyInstanceUID-SQ", "SeriesNumber-US-3-bytes",
                "InstanceNumber-UL-2-bytes", "StudyDate-FL-4-bytes", "Modality-FD-8-bytes",
                "PatientID-SQ", "SeriesInstanceUID-non-ASCII", "StudyInstanceUID-non-ASCII",
                "SOPInstanceUID-non-ASCII-in-dataset", "AccessionNumber-length-past-end",
                "unknown-VR", "truncated-in-header"]


def _bad_command(kind: str, sop: str) -> tuple[bytes, bytes | None]:
    """A C-STORE or C-ECHO request whose command set is wrong in one way."""
    dataset = encode_dataset(ct_elements(sop, f"{sop}.7", f"{sop}.8", f"BAD-{kind}"))
    if kind == "store-instance-uid-non-ASCII":
        return store_rq(sop.encode()[:-1] + b"\xe9"), dataset
    if kind == "store-class-uid-non-ASCII":
        return store_rq(sop, sop_class=CT_IMAGE.encode()[:-1] + b"\xff"), dataset
    if kind == "echo-class-uid-non-ASCII":
        return echo_rq(sop_class=b"1.2.840.10008.1.\x81"), None
    raise AssertionError(kind)


BAD_COMMAND_UIDS = ["store-instance-uid-non-ASCII", "store-class-uid-non-ASCII",
                    "echo-class-uid-non-ASCII"]

#: Malformed command sets: A-ABORT expected (PS3.8 9.3.8), source 2 (service provider).
_ECHO = [(0x0002, uid(VERIFICATION)), (0x0100, us(0x0030)), (0x0110, us(9)), (0x0800, us(0x0101))]
MALFORMED_COMMANDS = {
    "element-length-past-end": echo_rq()[:-6] + struct.pack("<L", 0x100) + us(0x0101),
    "missing-command-field": command_set([_ECHO[0], *_ECHO[2:]]),
    "message-id-3-bytes": command_set([*_ECHO[:2], (0x0110, b"\x01\x00\x00"), _ECHO[3]]),
    "data-set-type-missing": command_set(_ECHO[:3]),
    "element-of-group-0008": echo_rq() + struct.pack("<HHL", 0x0008, 0x0016, 4) + b"1.2\0",
    "truncated-element-header": echo_rq()[:-5],
    "group-length-past-end": command_set(_ECHO, group_length=0xFFFF),
}


#: Two shapes of association: Verification and Storage only, and those with Query/Retrieve (an
#: archive may serve them by different code; today's serves them by two Upper Layers).
PROPOSALS = {"storage": DEFAULT_CONTEXTS[:2], "storage+find": DEFAULT_CONTEXTS}


def _store(archive: Archive, proposal: str, cid: int, command: bytes, dataset: bytes | None,
           ) -> tuple[str, int | None]:
    """Send one request on a fresh association: ('status', code), ('abort', source) or what
    else happened (silence, a silent close)."""
    assoc = associate(archive.port, PROPOSALS[proposal])
    try:
        assoc.send_message(assoc.cid(cid), command, dataset)
        got = outcome(assoc.sock, IDLE + SLACK)
        if got.kind == P_DATA_TF:
            body = got.body
            data = b""
            pos = 0
            while pos + 6 <= len(body):
                n = struct.unpack_from(">L", body, pos)[0]
                data += body[pos + 6 : pos + 4 + n]
                pos += 4 + n
            fields = command_fields(data)
            if not (body[5] & LAST):  # a response in several PDVs: read the rest
                fields = assoc.response(3)
            return "status", status_of(fields)
        if got.kind == A_ABORT:
            return "abort", got.body[2]
        return str(got), None
    finally:
        assoc.close(release=False)


@pytest.mark.parametrize("proposal", list(PROPOSALS))
def test_malformed_datasets_commands_and_uids(archive: Archive, proposal: str) -> None:
    """Each bad dataset: a failure status; each command with a non-ASCII UID: a failure status
    or A-ABORT; each malformed command set: A-ABORT from the service provider. Afterwards
    C-FIND (pynetdicom) finds the good object and nothing else."""
    good_sop = f"{ROOT_UID}.6.0"
    assoc = associate(archive.port, PROPOSALS[proposal])
    assoc.send_message(assoc.cid(3), store_rq(good_sop), encode_dataset(
        ct_elements(good_sop, f"{good_sop}.7", f"{good_sop}.8", "GOOD")))
    assert status_of(assoc.response(5)) == 0, "a valid C-STORE was not stored"
    assoc.close()

    wrong: list[str] = []
    for n, kind in enumerate(BAD_DATASETS, 1):
        sop = f"{ROOT_UID}.6.{n}"
        what, value = _store(archive, proposal, 3, store_rq(sop), _bad_dataset(kind, sop))
        if what != "status" or value is None or not is_failure(value):
            wrong.append(f"dataset {kind}: {what} {value if value is None else hex(value)}")
    for n, kind in enumerate(BAD_COMMAND_UIDS, 50):
        command, dataset = _bad_command(kind, f"{ROOT_UID}.6.{n}")
        what, value = _store(archive, proposal, 1 if dataset is None else 3, command,
                             dataset)
        if not (what == "abort" or (what == "status" and value is not None
                                    and is_command_failure(value))):
            wrong.append(f"command {kind}: {what} {value}")
    for kind, command in MALFORMED_COMMANDS.items():
        what, value = _store(archive, proposal, 1, command, None)
        if (what, value) != ("abort", 2):
            wrong.append(f"malformed command {kind}: {what} {value} (expected A-ABORT source 2)")
    found = stored_instances(archive.port)
    if {s for _, _, s in found} != {good_sop}:
        wrong.append(f"C-FIND finds {sorted(found)}, not only {good_sop}")
    archive.check_health(*wrong)
    assert_legit_served(archive.port)
