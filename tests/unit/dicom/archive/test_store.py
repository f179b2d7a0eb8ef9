"""The archive's store: Part-10 files written without decoding, an index that survives crashes.

Every test uses a real store in tmp_path; crashes are simulated by leaving behind what a crash
leaves (scratch files, files without rows, rows without files) or by killing a real process.
The dataset helpers (make_dataset, encoded, put) are in conftest.py, shared with test_query.
"""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
)
from pynetdicom.dsutils import create_file_meta

from lab.dicom.archive.store import (
    Recovery,
    Store,
    StoredObject,
    StoreError,
)
from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

from ..conftest import SERIES, SOP, STUDY, encoded, make_dataset, put

UNCOMPRESSED = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                DeflatedExplicitVRLittleEndian]


def dataset_offset(data: bytes) -> int:
    """Where the dataset starts in a Part-10 file: after preamble, prefix and group 0002."""
    assert data[:128] == b"\0" * 128 and data[128:132] == b"DICM"
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    return 144 + int(struct.unpack_from("<L", data, 140)[0])


def files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


def assert_nothing_left(store: Store, count: int = 0) -> None:
    assert list(store.tmp_dir.iterdir()) == []
    assert len(files(store.root)) == store.count() == count


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "pacs") as opened:
        yield opened


# --- storing --------------------------------------------------------------------------------


def test_stored_objects_survive_reopening(tmp_path: Path) -> None:
    root = tmp_path / "pacs"
    with Store.open(root) as store:
        first = put(store, make_dataset())
        put(store, make_dataset("1.2.3.2", InstanceNumber=2))
        put(store, make_dataset("1.2.3.3", series="1.2.3.9", sop_class=MRImageStorage,
                                Modality="MR"))
    with Store.open(root) as store:
        assert store.recovery == Recovery()
        assert store.count() == 3
        assert store.get(SOP) == first
        assert store.get("9.9.9") is None
        assert first == StoredObject(first.path, first.path.stat().st_size, CTImageStorage, SOP,
                                     ExplicitVRLittleEndian, STUDY, SERIES)
        assert first.path.parent.parent == root / "objects"
        assert len(store.files_for("STUDY", {"StudyInstanceUID": STUDY})) == 3
        assert [o.sop_instance_uid for o in store.files_for("SERIES", {
            "StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES})] == [SOP, "1.2.3.2"]
    stored = dcmread(first.path)
    meta = stored.file_meta
    assert (meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID,
            meta.TransferSyntaxUID) == (CTImageStorage, SOP, ExplicitVRLittleEndian)
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert stored.PatientName == "Doe^John"


@pytest.mark.parametrize("ts", UNCOMPRESSED)
def test_dataset_bytes_follow_the_meta_header_unchanged(store: Store, ts: str) -> None:
    ds = make_dataset()
    sent = encoded(ds, ts)
    obj = store.store_encoded(sent, ts, CTImageStorage, SOP)
    data = obj.path.read_bytes()
    assert data[dataset_offset(data):] == sent
    assert obj.size == len(data)
    assert obj.transfer_syntax_uid == ts
    assert dcmread(obj.path).PixelData == ds.PixelData
    assert store.records("IMAGE")[0]["PatientName"] == "Doe^John"


def test_undefined_lengths_and_encapsulated_pixel_data_are_walked(store: Store) -> None:
    """Nested undefined-length sequences and items, and fragments, are closed by delimiters."""
    ds = make_dataset(pixels=b"")
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.7"
    item.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.PixelData = encapsulate([b"\xff\xd8fragment\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    sent = encoded(ds)
    obj = store.store_encoded(sent, JPEGBaseline8Bit, CTImageStorage, SOP)
    data = obj.path.read_bytes()
    assert data[dataset_offset(data):] == sent
    cut = sent.rindex(b"\xfe\xff\xdd\xe0")  # the pixel data's sequence delimiter
    with pytest.raises(StoreError, match="truncated"):
        store.store_encoded(sent[:cut], JPEGBaseline8Bit, CTImageStorage, SOP)
    assert_nothing_left(store, 1)


def test_a_file_is_copied_and_left_in_place(store: Store, tmp_path: Path) -> None:
    sent = encoded(make_dataset())
    source = tmp_path / "received.raw"
    source.write_bytes(sent)
    obj = store.store_encoded(source, ExplicitVRLittleEndian, CTImageStorage, SOP)
    assert source.read_bytes() == sent
    data = obj.path.read_bytes()
    assert data[dataset_offset(data):] == sent


def _chunked_receive(path: Path, sent: bytes, ts: str = ExplicitVRLittleEndian) -> bytes:
    """Write a file as pynetdicom's chunked receive does: preamble, its File Meta, dataset."""
    with path.open("wb") as out:
        out.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(out, create_file_meta(  # type: ignore[arg-type]
            sop_class_uid=UID(CTImageStorage), sop_instance_uid=UID(SOP),
            transfer_syntax=UID(ts)))
        out.write(sent)
    return path.read_bytes()


def test_a_part10_file_in_the_scratch_directory_is_moved(store: Store) -> None:
    sent = encoded(make_dataset())
    source = store.tmp_dir / "tmpabc.dcm"
    original = _chunked_receive(source, sent)
    obj = store.store_encoded(source, ExplicitVRLittleEndian, CTImageStorage, SOP)
    assert not source.exists()
    assert obj.path.read_bytes() == original
    assert_nothing_left(store, 1)


def test_a_part10_file_elsewhere_is_copied_under_our_meta(store: Store, tmp_path: Path) -> None:
    sent = encoded(make_dataset(), ImplicitVRLittleEndian)
    source = tmp_path / "elsewhere.dcm"
    original = _chunked_receive(source, sent, ImplicitVRLittleEndian)
    obj = store.store_encoded(source, ImplicitVRLittleEndian, CTImageStorage, SOP)
    assert source.read_bytes() == original
    data = obj.path.read_bytes()
    assert data[dataset_offset(data):] == sent
    assert dcmread(obj.path).file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    again = store.store_encoded(original, ImplicitVRLittleEndian, CTImageStorage, SOP)
    assert again.path.read_bytes() == data  # Part-10 bytes too (event.encoded_dataset())


def test_a_part10_file_must_agree_with_the_request(store: Store) -> None:
    source = store.tmp_dir / "tmpabc.dcm"
    _chunked_receive(source, encoded(make_dataset()))
    with pytest.raises(StoreError, match="File Meta Information disagrees"):
        store.store_encoded(source, ImplicitVRLittleEndian, CTImageStorage, SOP)
    assert store.count() == 0 and files(store.root) == []


def test_storing_again_replaces_the_instance(store: Store) -> None:
    put(store, make_dataset(PatientName="Old^Name"))
    newer = make_dataset(PatientName="New^Name", pixels=bytes(256))
    obj = put(store, newer)
    assert store.count() == 1
    assert files(store.root) == [obj.path]
    assert obj.size == obj.path.stat().st_size
    assert dcmread(obj.path).PatientName == "New^Name"
    assert [r["PatientName"] for r in store.records("PATIENT")] == ["New^Name"]


def test_concurrent_stores_keep_rows_and_files_in_step(store: Store) -> None:
    """pynetdicom runs each association in a thread; several may store the same instance."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                put(store, make_dataset(f"1.2.3.{n}.{i}", InstanceNumber=i))
                put(store, make_dataset(pixels=bytes(128 * (n + 1))))  # the same SOP Instance
        except BaseException as exc:  # handed to the main thread, which fails the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert_nothing_left(store, 41)
    shared = store.get(SOP)
    assert shared is not None and shared.size == shared.path.stat().st_size


# --- refusals -------------------------------------------------------------------------------

GOOD = encoded(make_dataset())
PIXELS_AT = GOOD.rindex(b"\xe0\x7f\x10\x00")


def _out_of_order() -> bytes:
    first, second = Dataset(), Dataset()
    first.PatientID, second.PatientName = "X", "Y^Z"
    return encoded(first) + encoded(second)


@pytest.mark.parametrize(("data", "ts", "reason"), [
    (GOOD[:-10], ExplicitVRLittleEndian, "truncated"),
    (GOOD[: PIXELS_AT + 6], ExplicitVRLittleEndian, "truncated element header"),
    (GOOD[:100], ExplicitVRLittleEndian, "truncated"),
    (GOOD + b"\0\0", ExplicitVRLittleEndian, "truncated element header"),
    (b"", ExplicitVRLittleEndian, "empty dataset"),
    (b"\x01" * 300, ExplicitVRLittleEndian, "invalid VR"),
    (GOOD, ImplicitVRLittleEndian, "truncated"),
    (encoded(make_dataset(), ImplicitVRLittleEndian), ExplicitVRLittleEndian, "invalid VR"),
    (encoded(make_dataset(), DeflatedExplicitVRLittleEndian)[:-20],
     DeflatedExplicitVRLittleEndian, "deflated dataset is truncated"),
    (_out_of_order(), ExplicitVRLittleEndian, "tags must ascend"),
    (encoded(make_dataset("1.2.3.999")), ExplicitVRLittleEndian, "SOPInstanceUID '1.2.3.999'"),
    (encoded(make_dataset(sop_class=MRImageStorage)), ExplicitVRLittleEndian, "SOPClassUID"),
    (encoded(make_dataset(study="")), ExplicitVRLittleEndian, "StudyInstanceUID"),
], ids=["cut-in-pixel-data", "cut-in-a-header", "cut-short", "trailing-bytes", "empty",
        "garbage", "explicit-sent-as-implicit", "implicit-sent-as-explicit", "deflate-cut",
        "tags-out-of-order", "other-sop-instance", "other-sop-class", "no-study-uid"])
def test_bad_datasets_are_refused_leaving_nothing(store: Store, tmp_path: Path, data: bytes,
                                                  ts: str, reason: str) -> None:
    kept = put(store, make_dataset("1.2.3.1"))
    with pytest.raises(StoreError, match=reason):
        store.store_encoded(data, ts, CTImageStorage, SOP)
    source = tmp_path / "received.raw"
    source.write_bytes(data)
    with pytest.raises(StoreError, match=reason):
        store.store_encoded(source, ts, CTImageStorage, SOP)
    assert_nothing_left(store, 1)
    assert store.get("1.2.3.1") == kept


def test_a_bad_replacement_keeps_the_stored_instance(store: Store) -> None:
    kept = put(store, make_dataset())
    before = kept.path.read_bytes()
    with pytest.raises(StoreError, match="truncated"):
        store.store_encoded(GOOD[:-1], ExplicitVRLittleEndian, CTImageStorage, SOP)
    assert kept.path.read_bytes() == before and store.get(SOP) == kept
    assert_nothing_left(store, 1)


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2.3a", "", "1." + "2" * 70])
def test_invalid_uids_are_refused(store: Store, uid: str) -> None:
    with pytest.raises(StoreError, match="not a valid UID"):
        store.store_encoded(GOOD, ExplicitVRLittleEndian, CTImageStorage, uid)
    assert_nothing_left(store)


def test_files_for_needs_the_unique_key_of_its_level(store: Store) -> None:
    put(store, make_dataset())
    put(store, make_dataset("1.2.3.2", series="1.2.3.9"))
    assert len(store.files_for("SERIES", {"SeriesInstanceUID": [SERIES, "1.2.3.9"]})) == 2
    assert store.files_for("IMAGE", {"SOPInstanceUID": "1.2.3.2"})[0].series_instance_uid == (
        "1.2.3.9")
    assert store.files_for("STUDY", {"StudyInstanceUID": "9.9"}) == []
    with pytest.raises(StoreError, match="needs SeriesInstanceUID"):
        store.files_for("SERIES", {"StudyInstanceUID": STUDY})
    with pytest.raises(StoreError, match="only unique keys of the levels above"):
        store.files_for("STUDY", {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES})


# --- crashes and recovery -------------------------------------------------------------------


def test_open_removes_scratch_files(tmp_path: Path) -> None:
    root = tmp_path / "pacs"
    with Store.open(root) as store:
        put(store, make_dataset())
        (store.tmp_dir / "store-1234.part").write_bytes(GOOD[:1000])
        (store.tmp_dir / "leftover").mkdir()
    with Store.open(root) as store:
        assert store.recovery == Recovery(removed_temp=2)
        assert_nothing_left(store, 1)


def test_open_drops_rows_whose_file_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "pacs"
    with Store.open(root) as store:
        gone = put(store, make_dataset())
        put(store, make_dataset("1.2.3.2"))
    gone.path.unlink()
    with Store.open(root) as store:
        assert store.recovery == Recovery(dropped_rows=1)
        assert store.get(SOP) is None and store.count() == 1
        assert store.files_for("STUDY", {"StudyInstanceUID": STUDY})[0].sop_instance_uid == (
            "1.2.3.2")


def test_open_indexes_files_without_rows(tmp_path: Path) -> None:
    """A crash between the rename and the commit leaves a complete file and no row."""
    root = tmp_path / "pacs"
    with Store.open(root) as store:
        obj = put(store, make_dataset(), ImplicitVRLittleEndian)
        put(store, make_dataset("1.2.3.2"))
    with sqlite3.connect(root / "index.sqlite") as db:
        db.execute("DELETE FROM instances WHERE SOPInstanceUID = ?", (SOP,))
    with Store.open(root) as store:
        assert store.recovery == Recovery(indexed=1)
        assert store.get(SOP) == obj
        assert store.records("STUDY")[0]["NumberOfStudyRelatedInstances"] == 2


def test_open_reindexes_a_file_replaced_behind_a_stale_row(tmp_path: Path) -> None:
    """A crash between the rename and the commit of a replacement leaves the old row."""
    root = tmp_path / "pacs"
    with Store.open(root) as store:
        old = put(store, make_dataset(PatientName="Old^Name"))
    with Store.open(tmp_path / "other") as other:
        new = put(other, make_dataset(PatientName="New^Name", pixels=bytes(256)))
    old.path.write_bytes(new.path.read_bytes())
    with Store.open(root) as store:
        assert store.recovery == Recovery(indexed=1)
        assert store.records("PATIENT")[0]["PatientName"] == "New^Name"
        assert store.get(SOP) == StoredObject(old.path, new.size, CTImageStorage, SOP,
                                              ExplicitVRLittleEndian, STUDY, SERIES)


def test_open_drops_rows_of_damaged_files_and_reports_them(tmp_path: Path) -> None:
    root = tmp_path / "pacs"
    with Store.open(root) as store:
        damaged = put(store, make_dataset())
        put(store, make_dataset("1.2.3.2"))
    damaged.path.write_bytes(damaged.path.read_bytes()[:-7])
    stray = root / "objects" / "00" / "1.2.3.4.dcm"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"not DICOM at all")
    with Store.open(root) as store:
        assert store.recovery == Recovery(unreadable=(stray, damaged.path))  # sorted
        assert store.get(SOP) is None and store.count() == 1


def test_a_second_open_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "pacs"), pytest.raises(StoreError, match="another process"):
        Store.open(tmp_path / "pacs")
    Store.open(tmp_path / "pacs").close()


def test_the_index_is_rebuilt_from_the_files_after_a_schema_change(tmp_path: Path) -> None:
    root = tmp_path / "pacs"
    with Store.open(root) as store:
        put(store, make_dataset())
        put(store, make_dataset("1.2.3.2"))
    with sqlite3.connect(root / "index.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    with Store.open(root) as store:
        assert store.recovery == Recovery(indexed=2)
        assert store.count() == 2


_KILLER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from lab.dicom.archive.store import Store
    real_replace = os.replace
    def replace(src, dst):
        if sys.argv[2] == "after":
            real_replace(src, dst)
        os._exit(9)  # killed: no cleanup, no commit, the lock and WAL left as they are
    os.replace = replace
    store = Store.open(Path(sys.argv[1]))
    store.store_encoded(Path(sys.argv[3]).read_bytes(), *sys.argv[4:])
""")


@pytest.mark.parametrize(("moment", "expected"), [
    ("before", Recovery(removed_temp=1)),
    ("after", Recovery(indexed=1)),
])
def test_a_process_killed_around_the_rename(tmp_path: Path, moment: str,
                                            expected: Recovery) -> None:
    root, sent = tmp_path / "pacs", tmp_path / "sent.raw"
    sent.write_bytes(GOOD)
    with Store.open(root) as store:
        put(store, make_dataset("1.2.3.2"))
    killed = subprocess.run([sys.executable, "-c", _KILLER, str(root), moment, str(sent),
                             ExplicitVRLittleEndian, CTImageStorage, SOP], check=False)
    assert killed.returncode == 9
    with Store.open(root) as store:
        assert store.recovery == expected
        assert_nothing_left(store, 2 if moment == "after" else 1)
        if moment == "after":
            stored = store.get(SOP)
            assert stored is not None
            data = stored.path.read_bytes()
            assert data[dataset_offset(data):] == GOOD
