"""lab.dicom.ul.records: records that behave as typing.NamedTuple ones, and the SCU's start
without typing, pathlib or the idna codec (each measured at 3 to 5 ms of it)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from lab.dicom.ul import pdu
from lab.dicom.ul.records import Record
from lab.dicom.ul.requestor import Part10


class _Point(Record):
    """A point."""

    x: int
    y: int = 2
    label: str = ""

    @property
    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

    def moved(self, dx: int) -> _Point:
        return self._replace(x=self.x + dx)


def test_a_record_is_a_named_tuple_with_its_fields_defaults_and_methods() -> None:
    p = _Point(1)
    assert isinstance(p, tuple)
    assert tuple(p) == (1, 2, "")
    assert p == _Point(x=1, y=2, label="")
    assert p._fields == ("x", "y", "label")
    assert p.norm1 == 3
    assert p.moved(4) == _Point(5, 2)
    assert _Point.__doc__ == "A point."
    assert _Point.__qualname__ == "_Point"
    assert repr(p) == "_Point(x=1, y=2, label='')"
    x, y, label = p
    assert (x, y, label) == (1, 2, "")
    with pytest.raises(AttributeError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Point()  # type: ignore[call-arg]


def test_records_of_the_upper_layer_pickle_and_compare() -> None:
    rq = pdu.Associate("PACS", "MODALITY", contexts=(pdu.Proposed(1, "1.2", ("1.2.840",)),))
    assert pickle.loads(pickle.dumps(rq)) == rq
    assert rq.max_length == 0 and rq.protocol_version == 1
    part = Part10("/f.dcm", "1.2", "1.3", "1.2.840.10008.1.2.1", 300, 1000)
    assert part.path == "/f.dcm" and part.size == 1000


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default"):
        class _Bad(Record):
            a: int = 0
            b: int


def test_a_method_using_super_is_refused_rather_than_broken() -> None:
    with pytest.raises(TypeError, match="super"):
        class _Bad(Record):
            a: int

            def __repr__(self) -> str:
                return super().__repr__()


def test_the_scu_starts_without_typing_pathlib_idna_or_ssl() -> None:
    """What the SCU loads for a plain C-STORE (its start is part of every run's time)."""
    probe = ("import socket, sys, lab.dicom.scu\n"
             "from lab.dicom.ul.requestor import open_association\n"
             "peer = socket.socket()\n"  # this process's own listener: it never answers
             "peer.bind(('127.0.0.1', 0))\n"
             "peer.listen()\n"
             "try:\n"
             "    open_association('127.0.0.1', peer.getsockname()[1], called='A',\n"
             "                     calling='B', max_pdu=0, timeout=0.2,\n"
             "                     contexts=[('1.2.840.10008.1.1', ('1.2.840.10008.1.2',))])\n"
             "except Exception as exc:\n"
             "    assert isinstance(exc, TimeoutError), exc\n"
             "print(' '.join(m for m in ('typing', 'pathlib', 'encodings.idna', 'ssl',\n"
             "                           'dataclasses') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""
