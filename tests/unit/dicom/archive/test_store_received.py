"""Store.store_encoded with head= and stat=: a dataset received into a file of the scratch pool is
checked and indexed from the first bytes its receiver kept in memory, the file itself read
only when they are not enough; what is refused is refused as from the whole file."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from lab.dicom.archive import store as store_module
from lab.dicom.archive.store import Store, StoreError
from lab.dicom.data.encoded import file_meta

from ..conftest import SOP, encoded, make_dataset

PIXELS = bytes(range(256)) * 512  # 128 KiB


def _received(store: Store, cut: int = 0) -> tuple[Path, bytes, os.stat_result, str]:
    """A pool file written as the acceptor writes one (``cut`` bytes short), the bytes it kept
    (up to and with the Pixel Data's element header) and the file's status."""
    ds = make_dataset(SOP, pixels=PIXELS)
    data = file_meta(ExplicitVRLittleEndian, ds.SOPClassUID, SOP) + encoded(ds)
    data = data[: len(data) - cut]
    fd, path = store.scratch.take()
    os.write(fd, data)
    stat = os.fstat(fd)
    os.close(fd)
    return path, data[: data.index(PIXELS[:256])], stat, ds.SOPClassUID


def _no_map(*_: object, **__: object) -> mmap.mmap:
    raise AssertionError("the file was mapped")


@pytest.mark.parametrize("sync", [True, False])
def test_a_received_file_is_stored_from_its_first_bytes_without_reading_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool) -> None:
    with Store.open(tmp_path / "s", sync=sync) as store:
        path, head, stat, sop_class = _received(store)
        written = path.read_bytes()
        monkeypatch.setattr(store_module.mmap, "mmap", _no_map)
        obj = store.store_encoded(path, ExplicitVRLittleEndian, sop_class, SOP, head=head,
                                  stat=stat)
        assert not path.exists() and obj.path.read_bytes() == written
        assert obj.size == len(written) and store.get(SOP) == obj
        assert [r["PatientName"] for r in store.records("PATIENT", None, ["PatientName"])] \
            == ["Doe^John"]


def test_too_few_first_bytes_read_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           ) -> None:
    maps = []
    real = mmap.mmap

    def counted(*args: object, **kwargs: object) -> mmap.mmap:
        maps.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with Store.open(tmp_path / "s", sync=False) as store:
        path, head, stat, sop_class = _received(store)
        monkeypatch.setattr(store_module.mmap, "mmap", counted)
        obj = store.store_encoded(path, ExplicitVRLittleEndian, sop_class, SOP,
                                  head=head[:300], stat=stat)
        assert maps and obj.study_instance_uid and store.count() == 1


def test_a_received_file_cut_short_is_refused_from_its_first_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(tmp_path / "s", sync=False) as store:
        path, head, stat, sop_class = _received(store, cut=10)
        monkeypatch.setattr(store_module.mmap, "mmap", _no_map)
        with pytest.raises(StoreError, match="truncated"):
            store.store_encoded(path, ExplicitVRLittleEndian, sop_class, SOP, head=head,
                                stat=stat)
        assert store.count() == 0 and not list(store.objects_dir.glob("*/*.dcm"))
