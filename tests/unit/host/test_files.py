"""lab.host.files: an atomic write either replaces the file whole or leaves it as it was, and
never leaves a temporary file behind. Failures are real: a serializer that raises halfway
through the document, a model that cannot be dumped, a writer program that fails."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from lab.host import files


class Doc(BaseModel):
    name: str
    size: int


class Unserializable(BaseModel):
    value: Any


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_text_bytes_and_json_replace_the_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    files.write_text(target, "old\n")
    assert target.read_text() == "old\n"
    files.write_bytes(target, b"\x00\xffbytes")
    assert target.read_bytes() == b"\x00\xffbytes"
    files.write_json(target, {"a": 1, "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 1, "b": [1, 2]}
    assert target.read_text().endswith("]\n}\n")  # indented, one final newline
    files.write_json(target, Doc(name="x", size=3), sync=True)
    assert Doc.model_validate_json(target.read_text()) == Doc(name="x", size=3)
    assert _listing(tmp_path) == ["state.json"]


def test_json_default_serializes_what_json_cannot(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    files.write_json(target, {"out": tmp_path}, default=str)
    assert json.loads(target.read_text()) == {"out": str(tmp_path)}


def test_a_serializer_failing_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    """json.dump writes the document piece by piece: the failure comes after part of it is in
    the temporary file (checked while it happens), which must then be gone."""
    target = tmp_path / "wan.json"
    target.write_text('{"old": true}\n')
    seen_during: list[list[str]] = []
    written: list[str] = []

    def failing(value: object) -> object:
        seen_during.append(_listing(tmp_path))
        tmp = [n for n in seen_during[-1] if n != "wan.json"]
        written.extend((tmp_path / n).read_text() for n in tmp)
        raise TypeError(f"cannot serialize {value!r}")

    doc = {"first": "x" * 20000, "second": object()}
    with pytest.raises(TypeError, match="cannot serialize"):
        files.write_json(target, doc, default=failing)
    assert len(seen_during[0]) == 2, "the temporary file should exist beside the target"
    assert any(n.startswith(".wan.json.") and n.endswith(".tmp") for n in seen_during[0])
    assert written and written[0].startswith('{\n  "first"'), "part of the document was written"
    assert target.read_text() == '{"old": true}\n'
    assert _listing(tmp_path) == ["wan.json"]


def test_a_model_that_cannot_be_dumped_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(PydanticSerializationError):
        files.write_json(target, Unserializable(value=object()))
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["state.json"]


def test_a_failure_in_the_block_keeps_an_absent_file_absent(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with pytest.raises(RuntimeError), files.open_atomic(target) as fh:
        fh.write("partial")
        raise RuntimeError("disk full, say")
    assert _listing(tmp_path) == []


def test_replacing_for_a_writer_program(tmp_path: Path) -> None:
    source = tmp_path / "helper"
    source.write_bytes(b"#!/bin/sh\n")
    source.chmod(0o755)
    target = tmp_path / "staged"
    with files.replacing(target) as tmp:
        assert tmp.parent == tmp_path and not tmp.exists()
        shutil.copy2(source, tmp)
    assert target.read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # copy2 kept the mode
    with pytest.raises(OSError), files.replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("the compiler failed")
    assert target.read_bytes() == b"#!/bin/sh\n"
    assert _listing(tmp_path) == ["helper", "staged"]


def test_a_block_that_writes_nothing_fails_and_keeps_the_file(tmp_path: Path) -> None:
    target = tmp_path / "x"
    target.write_text("old")
    with pytest.raises(FileNotFoundError), files.replacing(target):
        pass
    assert target.read_text() == "old"


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "a", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644


def test_temporary_names_are_hidden_and_unique(tmp_path: Path) -> None:
    names = {files.temp_path(tmp_path / "wan.json").name for _ in range(100)}
    assert len(names) == 100
    assert all(n.startswith(f".wan.json.{os.getpid()}.") and n.endswith(".tmp") for n in names)
