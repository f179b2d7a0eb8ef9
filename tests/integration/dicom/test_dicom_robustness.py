"""The PACS under bad input, in a real lab with the real programs.

Malformed, truncated and cut-off C-STOREs are refused with a failure status (PS3.4 B.2.3) and
leave nothing behind; a C-MOVE to an unknown AE gets 0xA801 (PS3.4 C.4.2.1.5); a corrupt file in
a user's ``--input`` folder is skipped and reported; a tampered object or a manifest signed by a
stranger is caught by the receiver-side verifier. After each of them the PACS keeps serving and
what it stored before is intact, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from lab.dicom.archive.scratch import is_pool_file
from lab.dicom.data.generate import generate_study
from lab.dicom.data.integrity import build_manifest, dataset_offset, sign_manifest, write_signed
from lab.model.names import LabPaths
from lab.model.topology import Family
from lab.security.pki.authority import create_ca
from lab.security.pki.lab_pki import ensure_lab_pki
from lab.study.results import read_csv
from lab.topology import load

from ..conftest import TOPOLOGIES, leftovers, teleradlab

LAB = "rb-dicom"
TOPOLOGY = load(TOPOLOGIES / "ipv4.yaml")
PACS_HOST = str(TOPOLOGY.node("pacs").addresses(Family.IPV4)[0].ip)
PATHS = LabPaths(LAB)
STORE = PATHS.node_data("pacs") / "store"
PACS_LOG = PATHS.node_data("pacs") / "pacs.log"

#: Sends Part-10 files by C-STORE exactly as they are: pynetdicom's chunked send streams the bytes
#: after the File Meta Information without decoding them, so a broken dataset reaches the PACS.
SEND_RAW = """\
import json, sys
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config, build_context
_config.STORE_SEND_CHUNKED_DATASET = True
host, port, *files = sys.argv[1:]
ae = AE(ae_title="MODALITY")
pairs = {(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID))
         for m in map(read_file_meta_info, files)}
ae.requested_contexts = [build_context(c, [t]) for c, t in sorted(pairs)]
assoc = ae.associate(host, int(port), ae_title="PACS")
if not assoc.is_established:
    sys.exit("association failed")
statuses = []
for f in files:
    status = assoc.send_c_store(f)
    statuses.append(int(status.Status) if status and "Status" in status else None)
assoc.release()
print(json.dumps({"statuses": statuses}))
"""

#: Starts a C-STORE, sends the command and half the dataset (not its last fragment), then aborts
#: the association (A-ABORT PDU, PS3.8 9.3.8): a transfer cut off by the network or the sender.
SEND_HALF_THEN_ABORT = """\
import json, struct, sys, time
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, build_context
from pynetdicom.dsutils import encode
from lab.dicom.archive.scratch import is_pool_file
from lab.dicom.data.integrity import dataset_offset
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
meta = read_file_meta_info(path)
ae = AE(ae_title="MODALITY")
ae.requested_contexts = [build_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])]
assoc = ae.associate(host, port, ae_title="PACS")
if not assoc.is_established:
    sys.exit("association failed")
cx = assoc.accepted_contexts[0].context_id
cmd = Dataset()
cmd.CommandGroupLength = 0
cmd.AffectedSOPClassUID = meta.MediaStorageSOPClassUID
cmd.CommandField = 0x0001  # C-STORE-RQ
cmd.MessageID = 1
cmd.Priority = 0
cmd.CommandDataSetType = 0x0000  # a dataset follows
cmd.AffectedSOPInstanceUID = meta.MediaStorageSOPInstanceUID
cmd.CommandGroupLength = len(encode(cmd, True, True)) - 12
command = encode(cmd, True, True)
def p_data(control, data):  # one PDV per P-DATA-TF PDU (PS3.8 9.3.5, E.2)
    pdv = struct.pack(">LBB", len(data) + 2, cx, control) + data
    return struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv
with open(path, "rb") as f:
    start = dataset_offset(f)
    f.seek(start)
    dataset = f.read()
half = dataset[: len(dataset) // 2]
sock = assoc.dul.socket.socket
sock.sendall(p_data(0x03, command) + p_data(0x00, half))  # last command fragment, dataset part
time.sleep(1.0)
sock.sendall(struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0, 0))  # A-ABORT, service user
time.sleep(0.5)
assoc.abort()
print(json.dumps({"sent": len(half)}))
"""


# --- the lab and what runs in it -------------------------------------------------------------


@pytest.fixture
def lab() -> Iterator[str]:
    """A fresh ipv4 lab with its PACS for each test, so that one test's damage cannot show up
    in another (only our own ``rb-`` lab is ever touched)."""
    if Path("/run/teleradlab/labs", LAB).exists() or (Path("/var/lib/teleradlab") / LAB).exists():
        teleradlab("down", LAB, check=False)  # left by an interrupted earlier run of this module
    teleradlab("up", "ipv4", "--name", LAB)
    try:
        yield LAB
    finally:
        teleradlab("down", LAB)
        assert not any(leftovers(LAB).values()), leftovers(LAB)


def _json(proc: Any) -> dict[str, Any]:
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output (exit {proc.returncode}):\n{proc.stderr}"
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


def in_node(node: str, *argv: str) -> Any:
    return teleradlab("exec", "--lab", LAB, node, "--", *argv, check=False, timeout=300)


def scu(operation: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the lab's SCU program on the modality against the PACS: (exit status, its JSON)."""
    proc = in_node("modality", sys.executable, "-m", "lab.dicom.scu", operation,
                   f"--host={PACS_HOST}", *args)
    return proc.returncode, _json(proc)


def script(tmp_path: Path, name: str, text: str, *args: str) -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(text)
    proc = in_node("modality", sys.executable, str(path), PACS_HOST, "11112", *args)
    assert proc.returncode == 0, proc.stderr
    return _json(proc)


@dataclass(frozen=True)
class Sent:
    """A study generated, signed by site a, stored at the PACS and verified there."""

    uid: str
    files: tuple[Path, ...]
    manifest: Path


def store_good_study(tmp_path: Path, name: str, seed: int, modality: str = "CT",
                     objects: int = 3) -> Sent:
    study = generate_study(modality, tmp_path / name, seed=seed, objects=objects)
    signer = ensure_lab_pki(PATHS, TOPOLOGY).signer("a")
    manifest = tmp_path / f"{name}.manifest.json"
    signed = sign_manifest(build_manifest(study.files, sender="a",
                                          study_uid=study.study_instance_uid),
                           signer.key_path, signer.cert_path)
    write_signed(signed, manifest)
    code, doc = scu("store", *map(str, study.files))
    assert code == 0 and doc["ok"], doc
    assert doc["statuses"] == {"0x0000": objects}, doc
    sent = Sent(study.study_instance_uid, study.files, manifest)
    code, check = verify_at_pacs(sent)
    assert code == 0 and check["ok"], check
    return sent


def verify_at_pacs(sent: Sent, manifest: Path | None = None) -> tuple[int, dict[str, Any]]:
    ca = PATHS.data_dir / "pki" / "ca.crt"
    proc = in_node("pacs", sys.executable, "-m", "lab.dicom.verify",
                   f"--manifest={manifest or sent.manifest}", f"--ca={ca}", f"--store={STORE}",
                   f"--study={sent.uid}")
    return proc.returncode, _json(proc)


@dataclass(frozen=True)
class StoreState:
    indexed: int  # rows in the index
    files: dict[str, str]  # object file (relative to the store) -> SHA-256 of the whole file
    scratch: list[str]  # whatever is in the store's tmp/ but the empty spares of its pool


def store_state() -> StoreState:
    with closing(sqlite3.connect(f"file:{STORE / 'index.sqlite'}?mode=ro", uri=True)) as db:
        indexed = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
    files = {p.relative_to(STORE).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((STORE / "objects").glob("*/*.dcm"))}
    return StoreState(indexed, files, sorted(p.name for p in (STORE / "tmp").iterdir()
                                             if not _spare(p)))


def _spare(path: Path) -> bool:
    """An unused scratch file of the PACS's pool (lab.dicom.archive.scratch): made empty in
    advance."""
    try:
        return is_pool_file(path) and path.stat().st_size == 0
    except FileNotFoundError:  # taken and stored meanwhile
        return True


def wait_for_empty_scratch(seconds: float = 10.0) -> StoreState:
    """The store state once tmp/ is empty (the PACS cleans up asynchronously after an abort),
    or as it is when time runs out."""
    deadline = time.monotonic() + seconds
    state = store_state()
    while state.scratch and time.monotonic() < deadline:
        time.sleep(0.1)
        state = store_state()
    return state


def assert_still_serving(tmp_path: Path, before: StoreState, good: Sent, seed: int) -> None:
    """Nothing changed in the store but what was refused; the PACS answers and stores again."""
    after = wait_for_empty_scratch()
    assert not after.scratch, f"left in the store's tmp/: {after.scratch}"
    assert after.indexed == len(after.files), "index and files on disk disagree"
    assert after.indexed == before.indexed, "the number of stored objects changed"
    assert after.files == before.files, "stored objects changed"
    code, check = verify_at_pacs(good)
    assert code == 0 and check["ok"], check
    code, doc = scu("echo")
    assert code == 0 and doc["status"] == 0, doc
    store_good_study(tmp_path, f"after-{seed}", seed, modality="MR", objects=2)
    final = store_state()
    assert final.indexed == len(final.files) == len(before.files) + 2
    assert not final.scratch, final.scratch


# --- bad datasets by C-STORE --------------------------------------------------------------------


def _element(data: bytes, tag: tuple[int, int], vr: bytes) -> int:
    """Where an explicit VR little endian element header starts in ``data``."""
    return data.index(tag[0].to_bytes(2, "little") + tag[1].to_bytes(2, "little") + vr)


def _truncated_in_pixel_data(good: bytes, offset: int) -> bytes:
    return good[:-1000]  # Pixel Data (7FE0,0010) is the last element: cut 1000 bytes short


def _truncated_in_header(good: bytes, offset: int) -> bytes:
    at = _element(good, (0x0010, 0x0010), b"PN")  # Patient's Name: cut 3 bytes into its value
    return good[: at + 8 + 3]


def _garbage_after_meta(good: bytes, offset: int) -> bytes:
    return good[:offset] + random.Random(7).randbytes(4096)


def _garbage_after_dataset(good: bytes, offset: int) -> bytes:
    return good + b"\xde\xad\xbe\xef not DICOM at all"


def _unknown_vr(good: bytes, offset: int) -> bytes:
    at = _element(good, (0x0010, 0x0010), b"PN")  # Patient's Name with VR 'ZZ' (PS3.5 6.2)
    return good[: at + 4] + b"ZZ" + good[at + 6 :]


BAD = {
    "truncated-in-pixel-data": _truncated_in_pixel_data,
    "truncated-in-header": _truncated_in_header,
    "garbage-after-meta": _garbage_after_meta,
    "garbage-after-dataset": _garbage_after_dataset,
    "unknown-vr": _unknown_vr,
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_dataset_is_refused_and_changes_nothing(lab: str, tmp_path: Path, kind: str) -> None:
    seed = 100 + list(BAD).index(kind) * 10
    good = store_good_study(tmp_path, "good", seed)
    # The bad object claims the SOP Instance UID of a stored one: it must not replace it.
    victim = good.files[0]
    with victim.open("rb") as f:
        offset = dataset_offset(f)
    bad = tmp_path / f"{kind}.dcm"
    bad.write_bytes(BAD[kind](victim.read_bytes(), offset))
    before = store_state()

    doc = script(tmp_path, "send_raw.py", SEND_RAW, str(bad))
    (status,) = doc["statuses"]
    assert status is not None and 0xC000 <= status <= 0xCFFF, (
        f"{kind}: status {status} is not a failure 'Cannot understand' (0xCxxx, PS3.4 B.2.3)")
    uid = dcmread(victim, stop_before_pixels=True).SOPInstanceUID
    log = PACS_LOG.read_text(errors="replace")
    assert f"refused {uid}" in log, f"{kind}: the PACS did not refuse it:\n{log[-3000:]}"
    assert_still_serving(tmp_path, before, good, seed + 1)


def test_store_cut_off_mid_dataset_leaves_nothing(lab: str, tmp_path: Path) -> None:
    good = store_good_study(tmp_path, "good", 200)
    before = store_state()
    other = generate_study("CT", tmp_path / "cut", seed=201, objects=1).files[0]
    doc = script(tmp_path, "half_then_abort.py", SEND_HALF_THEN_ABORT, str(other))
    assert doc["sent"] > 0
    assert_still_serving(tmp_path, before, good, 202)


# --- C-MOVE to an unknown destination -------------------------------------------------------


def test_move_to_unknown_destination_gets_a801(lab: str, tmp_path: Path) -> None:
    good = store_good_study(tmp_path, "good", 300)
    before = store_state()
    code, doc = scu("move", "--level=STUDY", f"--key=StudyInstanceUID={good.uid}",
                    "--dest=NOSUCH")
    assert code == 1 and not doc["ok"]
    assert doc["status"] == 0xA801, f"status {doc.get('status')}: expected 0xA801 (Move " \
        "Destination unknown, PS3.4 C.4.2.1.5)"
    # The same study still moves to a destination the PACS knows.
    code, doc = scu("move", "--level=STUDY", f"--key=StudyInstanceUID={good.uid}",
                    "--dest=MODALITY-V4")
    assert code == 0 and doc["status"] == 0 and doc["completed"] == len(good.files), doc
    assert_still_serving(tmp_path, before, good, 301)


# --- a corrupt file in the user's --input folder ---------------------------------------------


def test_run_skips_corrupt_input_files(lab: str, tmp_path: Path) -> None:
    folder = tmp_path / "input"
    study = generate_study("CT", folder, seed=400, objects=2)
    truncated = folder / "CT-0001-truncated.dcm"
    truncated.write_bytes(study.files[0].read_bytes()[:-5000])
    notes = folder / "notes.txt"
    notes.write_text("not an image: the referring physician's notes\n")
    out = tmp_path / "out"

    res = teleradlab("run", "--lab", LAB, "--input", str(folder), "--out", str(out),
                     timeout=600, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    squashed = "".join(res.stdout.split())  # rich may wrap long paths
    for bad in (truncated, notes):
        assert f"skipped{bad}:" in squashed, res.stdout
    run = json.loads((out / "run.json").read_text())
    skipped = {s["file"]: s["reason"] for s in run["skipped_inputs"]}
    assert set(skipped) == {str(truncated), str(notes)}, skipped
    assert "truncated" in skipped[str(truncated)]
    assert "not a DICOM" in skipped[str(notes)]

    rows = read_csv(out / "results.csv")
    assert [r["operation"] for r in rows] == ["echo", "store", "find", "move"]
    assert all(r["ok"] == "True" for r in rows), rows
    for row in rows:
        if row["operation"] in ("store", "move"):
            assert row["verified"] == "yes" and row["objects"] == "2", row
    assert run["all_ok"] is True


# --- tampering and a stranger's signature ----------------------------------------------------


def test_verify_reports_a_tampered_object(lab: str, tmp_path: Path) -> None:
    good = store_good_study(tmp_path, "good", 500)
    with closing(sqlite3.connect(f"file:{STORE / 'index.sqlite'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT SOPInstanceUID, path FROM instances WHERE "
                          "StudyInstanceUID = ? ORDER BY path", (good.uid,)).fetchall()
    assert len(rows) == len(good.files)
    uid, rel = rows[1]
    target = STORE / rel
    data = bytearray(target.read_bytes())
    data[-10] ^= 0x01  # one bit of one pixel
    target.write_bytes(bytes(data))

    code, doc = verify_at_pacs(good)
    assert code == 1 and not doc["ok"]
    assert doc["signature_ok"] is True
    assert [(p["sop_instance_uid"], p["status"]) for p in doc["problems"]] == [
        (uid, "digest-mismatch")
    ], doc["problems"]
    assert doc["objects"] == len(good.files)
    assert f"{len(good.files) - 1} ok" in doc["summary"], doc["summary"]


def test_verify_rejects_a_manifest_signed_by_another_ca(lab: str, tmp_path: Path) -> None:
    good = store_good_study(tmp_path, "good", 600)
    # An impostor with the lab signer's very name, from a CA the lab does not trust.
    stranger = create_ca(tmp_path / "other-ca", "rb stranger CA").issue("site-a",
                                                                       usages={"signing"})
    forged = tmp_path / "forged.manifest.json"
    signed = sign_manifest(build_manifest(good.files, sender="a", study_uid=good.uid),
                           stranger.key_path, stranger.cert_path)
    write_signed(signed, forged)

    code, doc = verify_at_pacs(good, forged)
    assert code == 1 and not doc["ok"]
    assert doc["signature_ok"] is False
    # The objects themselves are intact: the one problem is the signature.
    assert [p["status"] for p in doc["problems"]] == ["signature"], doc["problems"]
    assert "not trusted" in doc["problems"][0]["detail"], doc["problems"][0]
