"""The store's deferred index rows (``store_encoded(..., defer_index=True)``, then ``settle``)
and its fan-out directories: what lets the archive answer a C-STORE before the index is
written, without a reader or a crash ever seeing the difference."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from lab.dicom.archive.store import SETTLE_BATCH, Recovery, Store
from lab.dicom.data.encoded import file_meta

from ..conftest import SOP, STUDY, encoded, make_dataset


def _received(store: Store, sop: str) -> Path:
    """A dataset written into a pool file, as the acceptor receives it."""
    fd, path = store.scratch.take()
    meta = file_meta(ExplicitVRLittleEndian, CTImageStorage, sop)
    os.write(fd, meta + encoded(make_dataset(sop)))
    os.close(fd)
    return path


def _rows(root: Path) -> list[str]:
    """The SOP Instance UIDs in the index, read by a connection of its own."""
    with sqlite3.connect(root / "index.sqlite") as db:
        return sorted(r[0] for r in db.execute("SELECT SOPInstanceUID FROM instances"))


def test_a_deferred_row_is_written_by_settle(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        obj = store.store_encoded(_received(store, SOP), ExplicitVRLittleEndian, CTImageStorage,
                                  SOP, defer_index=True)
        assert obj.path.is_file() and obj.sop_instance_uid == SOP  # in place already
        assert _rows(store.root) == []
        store.settle(final=False)  # fewer than a batch: they wait
        assert _rows(store.root) == []
        store.settle()
        assert _rows(store.root) == [SOP]
        store.settle()  # nothing pending: nothing happens
        assert _rows(store.root) == [SOP]


def test_deferred_rows_are_written_a_batch_at_a_time(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        for n in range(SETTLE_BATCH):
            assert _rows(store.root) == []
            sop = f"1.2.3.{n}"
            store.store_encoded(_received(store, sop), ExplicitVRLittleEndian, CTImageStorage,
                                sop, defer_index=True)
            store.settle(final=False)
        assert len(_rows(store.root)) == SETTLE_BATCH


def test_every_reader_sees_deferred_rows(tmp_path: Path) -> None:
    readers = [
        lambda s: s.count() == 1,
        lambda s: s.get(SOP) is not None,
        lambda s: len(s.files_for("STUDY", {"StudyInstanceUID": STUDY})) == 1,
        lambda s: [r["SOPInstanceUID"] for r in s.records("IMAGE")] == [SOP],
    ]
    for i, reader in enumerate(readers):
        with Store.open(tmp_path / str(i)) as store:
            store.store_encoded(_received(store, SOP), ExplicitVRLittleEndian, CTImageStorage,
                                SOP, defer_index=True)
            assert reader(store), f"reader {i} missed the deferred row"


def test_closing_writes_deferred_rows(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with Store.open(root) as store:
        for n in range(3):
            sop = f"1.2.3.{n}"
            store.store_encoded(_received(store, sop), ExplicitVRLittleEndian, CTImageStorage,
                                sop, defer_index=True)
    assert _rows(root) == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    with Store.open(root) as store:  # nothing to index again; the pool's spares are removed
        assert store.recovery == Recovery(removed_temp=store.recovery.removed_temp)


_CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from lab.dicom.data.encoded import file_meta
    from lab.dicom.archive.store import Store
    store = Store.open(Path(sys.argv[1]))
    fd, path = store.scratch.take()
    os.write(fd, file_meta(*sys.argv[3:6]) + Path(sys.argv[2]).read_bytes())
    os.close(fd)
    store.store_encoded(path, *sys.argv[3:6], defer_index=True)
    os.kill(os.getpid(), signal.SIGKILL)  # answered, row not yet written
""")


def test_a_crash_before_settle_leaves_the_object_to_recovery(tmp_path: Path) -> None:
    root, data = tmp_path / "s", tmp_path / "dataset.raw"
    data.write_bytes(encoded(make_dataset(SOP)))
    killed = subprocess.run([sys.executable, "-c", _CRASH, str(root), str(data),
                             ExplicitVRLittleEndian, CTImageStorage, SOP], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert _rows(root) == []
    with Store.open(root) as store:
        assert store.recovery == Recovery(removed_temp=store.recovery.removed_temp, indexed=1)
        stored = store.get(SOP)
        assert stored is not None and stored.path.read_bytes().endswith(data.read_bytes())


def test_open_makes_every_fan_out_directory(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        made = sorted(p.name for p in store.objects_dir.iterdir() if p.is_dir())
    assert made == [f"{i:02x}" for i in range(256)]


def test_a_fan_out_directory_removed_after_open_is_made_again(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        for fan in store.objects_dir.iterdir():
            fan.rmdir()
        obj = store.store_encoded(_received(store, SOP), ExplicitVRLittleEndian, CTImageStorage,
                                  SOP)
        assert obj.path.is_file() and store.get(SOP) == obj
