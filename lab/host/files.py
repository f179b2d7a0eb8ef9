"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

Every write goes to a fresh temporary file in the target's own directory (so that the final
``rename(2)`` stays on one file system, where POSIX makes it atomic) and replaces the target with
:func:`os.replace` only once the content is complete. If anything fails before that — the
serialization, the disk, the program writing the file — the temporary file is removed and the
target keeps its old content (or stays absent).

``sync=True`` also flushes the data to the disk (``fsync``) before the rename and the directory
entry after it, for records that must survive a power cut, not only a crash of the lab; the
lab's run-time state (under ``/run``, a tmpfs) does not need it and pays nothing by default.

Temporary names start with a dot and end in ``.tmp`` (``.wan.json.<pid>.<random>.tmp``): hidden
from ``ls`` and from globs such as ``*.json``, and unique per writer, so that two processes
writing one target never share a temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, overload

from pydantic import BaseModel

__all__ = ["open_atomic", "replacing", "temp_path", "write_bytes", "write_json", "write_text"]


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (not created)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path, *, sync: bool = False) -> Iterator[Path]:
    """A temporary path for whoever writes the new ``path`` (a compiler, ``shutil.copy2``, a
    table library); when the block ends normally, it replaces ``path``; when it raises, it is
    removed and ``path`` is untouched. The block must create the file."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if sync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        _fsync_dir(path.parent)


@overload
def open_atomic(path: Path, mode: Literal["w"] = "w", *, sync: bool = False,
                encoding: str = "utf-8") -> contextlib.AbstractContextManager[IO[str]]: ...


@overload
def open_atomic(path: Path, mode: Literal["wb"], *, sync: bool = False,
                encoding: str = "utf-8") -> contextlib.AbstractContextManager[IO[bytes]]: ...


def open_atomic(path: Path, mode: Literal["w", "wb"] = "w", *, sync: bool = False,
                encoding: str = "utf-8") -> contextlib.AbstractContextManager[IO[Any]]:
    """A file opened for writing (text ``"w"`` or bytes ``"wb"``) whose content replaces
    ``path`` when the block ends normally, and is thrown away when it raises. The new file gets
    the usual permissions (0666 less the umask), as ``open(path, "w")`` would give it."""
    return _open_atomic(Path(path), mode, sync, encoding)


@contextlib.contextmanager
def _open_atomic(path: Path, mode: Literal["w", "wb"], sync: bool,
                 encoding: str) -> Iterator[IO[Any]]:
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        with (os.fdopen(fd, "wb") if mode == "wb"
              else os.fdopen(fd, "w", encoding=encoding)) as fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
    if sync:
        _fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Replace ``path`` by ``data``, atomically."""
    with open_atomic(path, "wb", sync=sync) as fh:
        fh.write(data)


def write_text(path: Path, text: str, *, sync: bool = False, encoding: str = "utf-8") -> None:
    """Replace ``path`` by ``text``, atomically."""
    with open_atomic(path, "w", sync=sync, encoding=encoding) as fh:
        fh.write(text)


def write_json(path: Path, doc: BaseModel | Mapping[str, Any], *, sync: bool = False,
               indent: int = 2, default: Callable[[Any], Any] | None = None) -> None:
    """Replace ``path`` by ``doc`` as JSON (indented, one final newline), atomically.

    A pydantic model is written by its own serializer (``model_dump_json``: its field aliases
    and types); a mapping by :func:`json.dump`, with ``default`` for what JSON cannot hold
    (e.g. ``str`` for paths and dates). A value that cannot be serialized raises and leaves the
    old file as it was."""
    with open_atomic(path, "w", sync=sync) as fh:
        if isinstance(doc, BaseModel):
            fh.write(doc.model_dump_json(indent=indent))
        else:
            json.dump(doc, fh, indent=indent, default=default)
        fh.write("\n")
