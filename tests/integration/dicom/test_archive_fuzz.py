"""The archive fuzzed (issue 12): seeded mutations of a valid A-ASSOCIATE-RQ (lengths, item types,
truncations, non-ASCII and over-long UIDs, unknown or malformed user sub-items, protocol version,
called AE title) and of valid P-DATA-TF PDUs on an established association (PDV lengths,
context ids, message control headers, command elements, PDU types, fragments never completed).

Every case must end properly within a bound: an A-ASSOCIATE-AC (then a working release),
A-ASSOCIATE-RJ or A-ABORT while setting up (PS3.8 9.3), a response or an A-ABORT from the
service provider once established; a connection left waiting for bytes that never come may
instead be closed when its timer (ARTIM, idle timeout) expires. Never silence until our
deadline, never a silent close of a complete PDU. Afterwards the archive is alive, has stayed
under 300 MB with no thread crashed, and serves pynetdicom and DCMTK. ``pytest -m slow`` runs
ten times as many cases.
"""

from __future__ import annotations

import contextlib
import random
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .archive_attack import (
    ARTIM,
    IDLE,
    ROOT_UID,
    SLACK,
    Archive,
    abort_source_problem,
    assert_legit_served,
    attacked_archive,
    pynetdicom_echo,
)
from .archive_wire import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    COMMAND,
    CT_IMAGE,
    DEFAULT_CONTEXTS,
    EXPLICIT,
    IMPLICIT,
    LAST,
    P_DATA_TF,
    RELEASE_RQ,
    VERIFICATION,
    Context,
    Outcome,
    associate,
    associate_body,
    connect,
    ct_elements,
    echo_rq,
    encode_dataset,
    find_rq,
    item,
    outcome,
    p_data,
    pdu,
    pdv,
    store_rq,
    user_item,
)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with attacked_archive(tmp_path) as a:
        yield a


# --- 1. seeded fuzzers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One mutated input; ``waits``: it leaves the archive waiting for bytes that never come,
    so a close when its timer expires is a proper end too."""

    name: str
    data: bytes
    waits: bool = False


def _non_ascii(rng: random.Random, text: str) -> bytes:
    raw = bytearray(text.encode())
    raw[rng.randrange(len(raw))] = rng.randrange(0x80, 0x100)
    return bytes(raw)


def _rq(kind: str, body: bytes, length: int | None = None, waits: bool = False) -> Case:
    return Case(kind, pdu(A_ASSOCIATE_RQ, body, length), waits)


def _framing(rng: random.Random, kind: str, body: bytes) -> Case:
    """The PDU's length or type wrong, or its body cut short."""
    if kind == "declared-longer":  # more announced than ever comes: the archive waits
        return _rq(kind, body, len(body) + rng.randrange(1, 5000), waits=True)
    if kind == "declared-shorter":  # the rest is read as the next PDU
        return _rq(kind, body, rng.randrange(0, len(body)))
    if kind == "truncated":  # a complete PDU whose items are cut short
        return _rq(kind, body[: rng.randrange(0, len(body))])
    if kind == "cut":  # the header says the whole, fewer bytes come
        return _rq(kind, body[: rng.randrange(0, len(body))], len(body), waits=True)
    return Case(kind, pdu(rng.choice([0x00, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x47,
                                      0xFF]), body))


def _items(rng: random.Random, kind: str, body: bytes) -> Case:
    """An item's type or length changed, or a few bytes anywhere."""
    mutated = bytearray(body)
    if kind == "flip":
        for _ in range(rng.randrange(1, 6)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        return _rq(kind, bytes(mutated))
    pos, starts = 68, []
    while pos + 4 <= len(body):
        starts.append(pos)
        pos += 4 + struct.unpack_from(">H", body, pos + 2)[0]
    at = rng.choice(starts)
    if kind == "item-type":
        mutated[at] = rng.choice([0x00, 0x11, 0x21, 0x30, 0x40, 0x51, 0x60, 0xFF])
    else:
        mutated[at + 2 : at + 4] = struct.pack(">H", rng.randrange(0, 0x10000))
    return _rq(kind, bytes(mutated))


def _uids(rng: random.Random, kind: str, body: bytes) -> Case:
    """A non-ASCII byte in a UID, or an abstract syntax UID far over 64 characters."""
    cx = list(DEFAULT_CONTEXTS)
    if kind == "long-uid":
        long = "1." + ".".join(str(rng.randrange(10**8)) for _ in range(rng.randrange(10, 120)))
        return _rq(kind, associate_body([Context(1, long, (IMPLICIT,)), *cx[1:]]))
    which = rng.randrange(4)
    if which == 0:
        return _rq(kind, associate_body(app_context=_non_ascii(rng, "1.2.840.10008.3.1.1.1")))
    if which == 1:
        cx[0] = Context(1, _non_ascii(rng, VERIFICATION), (IMPLICIT,))
    elif which == 2:
        cx[1] = Context(3, CT_IMAGE, (_non_ascii(rng, EXPLICIT),))
    else:
        return _rq(kind, associate_body(user=user_item(
            class_uid=_non_ascii(rng, "1.2.826.0.1.99"))))
    return _rq(kind, associate_body(cx))


#: User Information sub-items that are malformed (PS3.7 D.3.3, PS3.8 D.1).
BAD_USER_ITEMS = (
    item(0x51, b"\x00\x01"),  # Maximum Length of 2 bytes
    item(0x53, b"\x00"),  # Asynchronous Operations Window, too short
    item(0x54, b"\x00\x40" + b"1.2" + b"\x01"),  # Role Selection, UID length past its end
    item(0x54, b"\x00\x03" + b"1.\xff" + b"\x01\x01"),  # Role Selection, non-ASCII SOP class
    item(0x56, b"\xff\xff"),  # SOP Class Extended Negotiation, UID length past its end
    item(0x58, b"\x01\x00\xff\xff"),  # User Identity, length past its end
    item(0x52, b""),  # empty Implementation Class UID
    item(0x52, b"1." * 200),  # over-long Implementation Class UID
)


def _user(rng: random.Random, kind: str, body: bytes) -> Case:
    """A sub-item of an unknown type, a malformed known one, or an odd Maximum Length."""
    if kind == "huge-max-length":
        return _rq(kind, associate_body(user=user_item(
            max_length=rng.choice([0, 1, 7, 0xFFFFFFFF]))))
    if kind == "unknown-user-item":
        sub = item(rng.choice([0x00, 0x50, 0x57, 0x5A, 0x60, 0x99, 0xFF]),
                   rng.randbytes(rng.randrange(0, 300)))
    else:
        sub = rng.choice(BAD_USER_ITEMS)
    return _rq(kind, associate_body(user=user_item(extra=sub)))


def _fields(rng: random.Random, kind: str, body: bytes) -> Case:
    """The protocol version, the called AE title or the presentation contexts wrong."""
    if kind == "version":
        return _rq(kind, associate_body(version=rng.randrange(0, 0x10000)))
    if kind == "called-ae":
        return _rq(kind, associate_body(called=rng.choice(
            [b" " * 16, b"\xff" * 16, b"PACS\0\0", rng.randbytes(16)])))
    if kind == "many-contexts":
        return _rq(kind, associate_body(
            [Context(rng.randrange(256), CT_IMAGE, (EXPLICIT,)) for _ in range(300)]))
    return _rq(kind, b"" if kind == "empty" else associate_body([]))


ASSOCIATE_MUTATIONS: dict[str, Callable[[random.Random, str, bytes], Case]] = {
    **dict.fromkeys(("declared-longer", "declared-shorter", "truncated", "cut", "pdu-type"),
                    _framing),
    **dict.fromkeys(("item-type", "item-length", "flip"), _items),
    **dict.fromkeys(("non-ascii-uid", "long-uid"), _uids),
    **dict.fromkeys(("unknown-user-item", "bad-user-item", "huge-max-length"), _user),
    **dict.fromkeys(("version", "called-ae", "many-contexts", "empty", "no-context"), _fields),
}


def associate_case(rng: random.Random) -> Case:
    """A mutation of a valid A-ASSOCIATE-RQ (PS3.8 9.3.2)."""
    kind = rng.choice(sorted(ASSOCIATE_MUTATIONS))
    return ASSOCIATE_MUTATIONS[kind](rng, kind, associate_body())


def _dataset(sop: str) -> bytes:
    return encode_dataset(ct_elements(sop, f"{ROOT_UID}.1", f"{ROOT_UID}.1.1", "FUZZ"))


Pdv = tuple[int, int, bytes]  # presentation context id, message control header, data
#: Mutations of P-DATA that may leave the archive waiting for the rest of a message.
WAITING = frozenset({"declared-longer", "control", "split", "flip", "command-field",
                     "group-length", "command-length", "truncated"})


def _message(rng: random.Random, n: int) -> tuple[str, list[Pdv]]:
    """A valid C-ECHO, C-STORE (command and dataset) or C-FIND request as PDVs."""
    sop = f"{ROOT_UID}.9.{n}"
    message = rng.choice(["echo", "store", "find"])
    if message == "echo":
        return message, [(1, COMMAND | LAST, echo_rq(n))]
    if message == "store":
        return message, [(3, COMMAND | LAST, store_rq(sop, n)), (3, LAST, _dataset(sop))]
    return message, [(5, COMMAND | LAST, find_rq(n)), (5, LAST, b"")]


def _command(rng: random.Random, kind: str, data: bytes) -> bytes:
    """A command set with one element's length or value wrong."""
    command = bytearray(data)
    if kind == "command-length":  # an element's length, past the end or short
        pos = 12 + 8 * rng.randrange(1, 3)
        command[pos - 4 : pos] = struct.pack("<L", rng.randrange(1 << 32))
    elif kind == "command-field":
        at = command.index(struct.pack("<HHL", 0, 0x0100, 2)) + 8
        command[at : at + 2] = struct.pack("<H", rng.randrange(0x10000))
    elif kind == "group-length":
        command[8:12] = struct.pack("<L", rng.randrange(1 << 32))
    else:  # a non-ASCII byte in the affected SOP class UID
        at = command.index(b"1.2.840.")
        command[at + 2] = rng.randrange(0x80, 0x100)
    return bytes(command)


def _pdv_items(rng: random.Random, kind: str, pdvs: list[Pdv]) -> list[bytes]:
    """The PDV items, one of them mutated as ``kind`` says."""
    items = [pdv(cid, control, data) for cid, control, data in pdvs]
    i = rng.randrange(len(items))
    cid, control, data = pdvs[i]
    if kind == "pdv-length":
        items[i] = pdv(cid, control, data, rng.choice([0, 1, 2, len(data) + 3, 0xFFFFFFFF,
                                                       rng.randrange(1 << 32)]))
    elif kind == "context":
        items[i] = pdv(rng.choice([0, 2, 7, 255]), control, data)
    elif kind == "control":
        items[i] = pdv(cid, rng.randrange(256), data)
    elif kind in ("command-length", "command-field", "group-length", "non-ascii-uid"):
        cid, control, data = pdvs[0]
        items[0] = pdv(cid, control, _command(rng, kind, data))
    elif kind == "tiny-pdv":  # a PDV item of length 0 or 1, or its header cut
        header = struct.pack(">LBB", rng.randrange(2), pdvs[0][0], COMMAND)
        items.insert(0, header[: rng.choice([4, 5, 6])])
    return items


def pdata_case(rng: random.Random, n: int) -> Case:
    """A mutation of valid P-DATA-TF PDUs (PS3.8 9.3.5) on an established association."""
    message, pdvs = _message(rng, n)
    kind = rng.choice(["flip", "pdv-length", "context", "control", "command-length",
                       "command-field", "group-length", "truncated", "declared-longer",
                       "pdu-type", "tiny-pdv", "non-ascii-uid", "release-rp", "split"])
    name = f"{message}/{kind}"
    items = _pdv_items(rng, kind, pdvs)
    if kind == "split":  # the PDVs in PDUs of their own, the last never sent
        return Case(name, b"".join(p_data(i) for i in items[:-1]), True)
    if kind == "release-rp":  # A-RELEASE-RP though no release was asked for
        return Case(name, pdu(A_RELEASE_RP, bytes(4)))
    body = b"".join(items)
    if kind == "flip":
        mutated = bytearray(body)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(min(len(mutated), 200))] = rng.randrange(256)
        body = bytes(mutated)
    elif kind == "truncated":
        body = body[: rng.randrange(0, len(body))]
    elif kind == "pdu-type":
        return Case(name, pdu(rng.choice([0x00, 0x01, 0x02, 0x03, 0x08, 0xFF]), body))
    length = len(body) + rng.randrange(1, 3000) if kind == "declared-longer" else None
    return Case(name, pdu(P_DATA_TF, body, length), kind in WAITING)


def _run_case(port: int, case: Case, established: bool) -> tuple[Case, Outcome | str]:
    """Send a case (after an association is established, for P-DATA); how the archive ended
    it, or a string saying what was wrong."""
    timer = IDLE if established else ARTIM
    try:
        if established:
            assoc = associate(port)
            sock = assoc.sock
        else:
            sock = connect(port)
        with sock:
            # The archive may abort before reading everything: its answer is read next.
            with contextlib.suppress(OSError):
                sock.sendall(case.data)
            got = outcome(sock, timer + SLACK + 1)
            if got.kind == A_ASSOCIATE_AC and not established:
                sock.sendall(RELEASE_RQ)  # an accepted association must also work
                after = outcome(sock, 3)
                if after.kind not in (A_RELEASE_RP, A_ABORT):
                    return case, f"A-ASSOCIATE-AC, then A-RELEASE-RQ answered by {after}"
            return case, got
    except (OSError, AssertionError) as exc:
        return case, f"{type(exc).__name__}: {exc}"


def _judge(case: Case, got: Outcome | str, established: bool) -> str | None:
    """What is wrong with how a case ended (None: a proper end)."""
    if isinstance(got, str):
        return got
    timer = IDLE if established else ARTIM
    answers = {P_DATA_TF, A_ABORT} if established else {A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT}
    if got.silent:
        return str(got)
    if got.kind is None:
        if case.waits and got.seconds >= timer - 0.5:
            return None  # timer expired: closing is the state machine's answer (PS3.8 9.1.5)
        return f"silent close: {got}"
    if got.kind not in answers:
        return f"unexpected {got}"
    return abort_source_problem(got, established)


def _fuzz(archive: Archive, cases: list[Case], established: bool) -> None:
    failures: list[str] = []
    deadline = time.monotonic() + 30 + 0.2 * len(cases)  # waits run 8 at a time
    with ThreadPoolExecutor(8) as pool:
        for case, got in pool.map(lambda c: _run_case(archive.port, c, established), cases):
            problem = _judge(case, got, established)
            if problem:
                failures.append(f"{case.name} ({case.data[:40].hex()}...): {problem}")
    assert time.monotonic() < deadline, "fuzzing took too long"
    summary = [f"{len(failures)} of {len(cases)} cases ended wrongly", *failures[:30]]
    archive.check_health(*(summary if failures else []))
    assert pynetdicom_echo(archive.port).ok, "archive no longer serves a pynetdicom C-ECHO"
    assert_legit_served(archive.port)


@pytest.mark.parametrize("count", [150, pytest.param(1500, marks=pytest.mark.slow)])
def test_fuzzed_associate_requests(archive: Archive, count: int) -> None:
    rng = random.Random(12_001)
    _fuzz(archive, [associate_case(rng) for _ in range(count)], established=False)


@pytest.mark.parametrize("count", [150, pytest.param(1500, marks=pytest.mark.slow)])
def test_fuzzed_p_data(archive: Archive, count: int) -> None:
    rng = random.Random(12_002)
    _fuzz(archive, [pdata_case(rng, n) for n in range(count)], established=True)
