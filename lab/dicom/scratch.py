"""Scratch files for received datasets whose names are already on disk, so that storing an
object durably costs one flush of the disk instead of two.

Making a new file durable under POSIX takes two flushes: ``fsync`` of the file (its data and
size) and ``fsync`` of its directory (its name). :class:`ScratchPool` creates empty files in the
store's ``tmp/`` ahead of need, a batch at a time, and flushes the directory once per batch;
a dataset received into one of them is then durable after a single ``fdatasync``. What is in
such a file is a complete Part-10 object once it has been flushed, and the store's recovery
(:meth:`lab.dicom.store.Store.open`) stores any such file it finds and removes the rest, so the
object survives a power cut whether or not its rename into ``objects/`` reached the disk
(rename is atomic across a crash on a journaling file system: ext4, xfs, btrfs).
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

#: Names of pool files (what recovery looks for in tmp/).
PREFIX = "recv-"
SUFFIX = ".dcm"
#: Files created per batch (one directory flush each).
BATCH = 32


def is_pool_file(path: Path) -> bool:
    return path.name.startswith(PREFIX) and path.name.endswith(SUFFIX)


class ScratchPool:
    """Empty, durably named files in ``tmp_dir`` (names flushed only if ``sync``)."""

    def __init__(self, tmp_dir: Path, sync: bool) -> None:
        self.tmp_dir = tmp_dir
        self.sync = sync
        self._free: list[Path] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[int, Path]:
        """A pool file, opened for writing (the caller closes the descriptor)."""
        with self._lock:
            if not self._free:
                self._refill()
            path = self._free.pop()
        return os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC), path

    def _refill(self) -> None:
        for _ in range(BATCH):
            path = self.tmp_dir / f"{PREFIX}{uuid.uuid4().hex}{SUFFIX}"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            self._free.append(path)
        if self.sync:
            fd = os.open(self.tmp_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
