"""Host mount plumbing for persistent namespaces, and the lock that serialises it.

Persistent mount namespaces are bind mounts of ``/proc/PID/ns/mnt`` onto files; the kernel only
allows that on a mount whose propagation is not shared, so the lab keeps those files in a
directory bind-mounted onto itself with private propagation (util-linux unshare(1), --mount).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from lab.host import shell

MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def is_mountpoint(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == target for line in f)


def bind_private_dir(path: Path) -> None:
    """Make ``path`` a private bind mount of itself (idempotent)."""
    path.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(path):
        shell.run(["mount", "--bind", str(path), str(path)])
        shell.run(["mount", "--make-private", str(path)])


def umount_detach(path: Path) -> bool:
    """Lazily unmount ``path``; False if it was not mounted (or no longer exists)."""
    if _libc.umount2(os.fsencode(str(path)), MNT_DETACH) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    raise OSError(err, f"umount {path}: {os.strerror(err)}")


def lock_path(root: Path) -> Path:
    run_lock = Path("/run/lock")
    return (run_lock if run_lock.is_dir() else root.parent) / f"{root.name}.lock"


@contextlib.contextmanager
def global_lock(root: Path) -> Iterator[None]:
    """Serialise creation and removal of the shared namespace directory between processes."""
    path = lock_path(root)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
