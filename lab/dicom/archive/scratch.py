"""Scratch files for received datasets whose names are already on disk, so that storing an
object durably costs one flush of the disk instead of two.

Making a new file durable under POSIX takes two flushes: ``fsync`` of the file (its data and
size) and ``fsync`` of its directory (its name). :class:`ScratchPool` creates empty files in the
store's ``tmp/`` ahead of need, a batch at a time, and flushes the directory once per batch;
a dataset received into one of them is then durable after a single ``fdatasync``. What is in
such a file is a complete Part-10 object once it has been flushed, and the store's recovery
(:meth:`lab.dicom.archive.store.Store.open`) stores any such file it finds and removes the rest, so
the object survives a power cut whether or not its rename into ``objects/`` reached the disk
(rename is atomic across a crash on a journaling file system: ext4, xfs, btrfs).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

#: Names of pool files (what recovery looks for in tmp/).
PREFIX = "recv-"
SUFFIX = ".dcm"
#: Files created per batch (one directory flush each).
BATCH = 32
#: When fewer spares than this are left, the next batch is made in the background.
LOW_WATER = 16


def is_pool_file(path: Path | str) -> bool:
    """Whether ``path`` (or a file name) names a file of the pool."""
    name = path if isinstance(path, str) else path.name
    return name.startswith(PREFIX) and name.endswith(SUFFIX)


class ScratchPool:
    """Empty, durably named files in ``tmp_dir`` (names flushed only if ``sync``).

    The first batch is made when the first file is taken; after that a helper thread makes
    the next one whenever the spares run low, so that a C-STORE seldom waits for files to be
    created (about 0.2 ms each here: a batch on the way of one object would cost it 6 ms)."""

    def __init__(self, tmp_dir: Path, sync: bool) -> None:
        self.tmp_dir = tmp_dir
        self.sync = sync
        self._free: list[Path] = []
        self._refilling = False
        self._changed = threading.Condition()

    def take(self) -> tuple[int, Path]:
        """A pool file, opened for writing (the caller closes the descriptor).

        Pool files are made empty and each is taken once, so it is not opened with O_TRUNC:
        ext4 (auto_da_alloc) treats a file truncated to nothing, written and closed as a file
        being replaced and starts writing it out at close, about 0.3 ms per object here."""
        with self._changed:
            while not self._free:
                if self._refilling:
                    self._changed.wait()
                else:
                    self._free += self._make()
            path = self._free.pop()
            if len(self._free) < LOW_WATER and not self._refilling:
                self._refilling = True
                threading.Thread(target=self._refill, name="scratch-refill", daemon=True).start()
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC), path

    def close(self) -> None:
        """Wait for a batch being made (so nothing is created after the store is closed)."""
        with self._changed:
            while self._refilling:
                self._changed.wait()

    def _refill(self) -> None:
        made: list[Path] = []
        try:
            made = self._make()
        except OSError as exc:  # a full disk, say: take() tries again itself when it must
            log.warning("could not make scratch files in %s: %s", self.tmp_dir, exc)
        finally:
            with self._changed:
                self._free += made
                self._refilling = False
                self._changed.notify_all()

    def _make(self) -> list[Path]:
        """A batch of new empty files, their names flushed if ``sync``."""
        made = []
        for _ in range(BATCH):
            path = self.tmp_dir / f"{PREFIX}{uuid.uuid4().hex}{SUFFIX}"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            made.append(path)
        if self.sync:
            fd = os.open(self.tmp_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return made
