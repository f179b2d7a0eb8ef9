"""Helpers for the topology and routing unit tests: a valid baseline document to mutate, and a
check that parsing creates nothing (no files, processes, sockets or namespaces)."""

from __future__ import annotations

import copy
import itertools
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml

from lab.errors import TopologyError
from lab.model.topology import Topology
from lab.topology import parse

#: The name parse() is given; it is never read, only quoted in messages.
SOURCE = "tests/unit/example-topology.yaml"
#: Marks a key to delete in :func:`edit`.
DELETE = object()

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def baseline() -> dict[str, Any]:
    """A small valid dual-stack topology using every default (names, prefixes, addresses)."""
    return {
        "description": "unit-test baseline",
        "sites": {
            "a": {
                "lan": {"family": "dual"},
                "hosts": [{"name": "modality", "role": "modality"}],
            },
            "b": {
                "lan": {"family": "dual"},
                "hosts": [{"name": "pacs", "role": "pacs"}],
            },
        },
        "wan": {"family": "dual"},
        "security": {"mode": "none"},
    }


def edit(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``changes`` applied. Keys are field paths as the error
    messages spell them (``sites.a.hosts[0].name``); missing mappings are created, an index one
    past the end of a list appends, and the value :data:`DELETE` removes the key."""
    doc = copy.deepcopy(doc)
    for path, value in changes.items():
        steps: list[str | int] = [
            name if name else int(index) for name, index in _STEP.findall(path)
        ]
        here: Any = doc
        for step, following in itertools.pairwise(steps):
            if isinstance(here, list) and step == len(here):
                here.append({})
            elif isinstance(here, dict) and step not in here:
                here[step] = [] if isinstance(following, int) else {}
            here = here[step]
        last = steps[-1]
        if value is DELETE:
            del here[last]
        elif isinstance(here, list) and last == len(here):
            here.append(value)
        else:
            here[last] = value
    return doc


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def topology(changes: dict[str, Any] | None = None) -> Topology:
    """Parse the baseline with ``changes`` applied (it must be valid)."""
    return parse(dump(edit(baseline(), changes or {})), SOURCE)


# --- "parse is pure": record what would create something while it runs --------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CREATING_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.mkdir",
        "os.rename",
        "os.remove",
        "os.rmdir",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.chmod",
        "socket.__new__",
    }
)
_recording: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _recording:
        return
    if event == "open":
        path, _mode, flags = args
        if isinstance(flags, int) and flags & _WRITE_FLAGS and "__pycache__" not in str(path):
            _recording[-1].append(f"open for writing: {path}")
    elif event in _CREATING_EVENTS:
        _recording[-1].append(f"{event}: {args!r:.200}")


sys.addaudithook(_audit)  # hooks cannot be removed; it does nothing outside side_effects()


@contextmanager
def side_effects() -> Iterator[list[str]]:
    """Collect every write, process, socket or directory made inside the block."""
    seen: list[str] = []
    _recording.append(seen)
    try:
        yield seen
    finally:
        _recording.remove(seen)


def invalid(changes: dict[str, Any] | None = None, *, text: str | None = None) -> TopologyError:
    """Parse the baseline with ``changes`` (or raw ``text``), which must be refused without any
    side effect; return the error after checking that it names the file."""
    if text is None:
        text = dump(edit(baseline(), changes or {}))
    with side_effects() as seen, pytest.raises(TopologyError) as info:
        parse(text, SOURCE)
    assert seen == [], f"parse() of an invalid file created something: {seen}"
    err = info.value
    assert err.source == SOURCE
    assert str(err).startswith(f"invalid topology {SOURCE}:")
    assert err.problems, "a TopologyError must list at least one problem"
    for line in err.problems:
        assert line in str(err)
    return err


def problem(err: TopologyError, path: str, *fragments: str) -> str:
    """The one problem line about ``path`` (``path: message``), checked to contain every
    fragment (the bad value, the key words of the message)."""
    lines = [p for p in err.problems if p.startswith(f"{path}: ")]
    assert len(lines) == 1, f"expected one problem about {path!r}, got {err.problems}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]
