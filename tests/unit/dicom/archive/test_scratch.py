"""lab.dicom.archive.scratch and the store's recovery of what a crash leaves in its pool files: a
complete received object is stored, a partial one and the empty spares are removed."""

from __future__ import annotations

import os
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

from lab.dicom.archive.scratch import BATCH, LOW_WATER, is_pool_file
from lab.dicom.archive.store import Store
from lab.dicom.data.encoded import file_meta

from ..conftest import SOP, encoded, make_dataset


def _receive(store: Store, sop: str, cut: int = 0) -> Path:
    """Write a dataset into a pool file as the acceptor does (cut short by ``cut`` bytes)."""
    ds = make_dataset(sop)
    data = file_meta(ExplicitVRLittleEndian, ds.SOPClassUID, sop) + encoded(ds)
    fd, path = store.scratch.take()
    os.write(fd, data[: len(data) - cut])
    os.close(fd)
    return path


def test_pool_files_are_made_in_batches(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        fd, path = store.scratch.take()
        os.close(fd)
        spares = [p for p in store.tmp_dir.iterdir() if is_pool_file(p)]
        assert len(spares) == BATCH and path in spares
        assert all(p.stat().st_size == 0 for p in spares)


def test_recovery_stores_complete_pool_files_and_removes_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with Store.open(root) as store:
        complete = _receive(store, SOP)
        partial = _receive(store, SOP + ".2", cut=100)
        before = store.count()
    assert before == 0 and complete.exists() and partial.exists()  # the "crash"
    with Store.open(root) as store:
        assert store.count() == 1
        obj = store.get(SOP)
        assert obj is not None and obj.path.exists() and not complete.exists()
        assert not list(store.tmp_dir.iterdir())  # the partial file and the spares are gone
        assert store.recovery.indexed == 1 and store.recovery.removed_temp == BATCH - 1


def test_the_next_batch_is_made_before_the_spares_run_out(tmp_path: Path) -> None:
    """Taking files down to the low-water mark has a helper make the next batch: taking many
    more than a batch never finds the pool empty, and every file taken is a new empty one."""
    with Store.open(tmp_path / "s") as store:
        taken = []
        for _ in range(3 * BATCH):
            fd, path = store.scratch.take()
            os.close(fd)
            assert path.stat().st_size == 0
            taken.append(path)
        assert len(set(taken)) == 3 * BATCH
        store.scratch.close()  # waits for a batch on its way
        spares = {p for p in store.tmp_dir.iterdir() if is_pool_file(p)} - set(taken)
        assert LOW_WATER <= len(spares) <= LOW_WATER + BATCH
