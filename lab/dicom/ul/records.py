"""Typed, immutable records for the node programs, without importing :mod:`typing` at run time.

A node program (the SCU above all) starts for every operation a lab runs, and importing typing
costs it about 5 ms of a start of about 40 (measured with ``python -X importtime``; the module
itself, its classes and its imports). :class:`Record` is declared like ``typing.NamedTuple``
(annotated fields, defaults after the fields without one, a docstring, methods and properties)
and makes a :func:`collections.namedtuple` class at run time; type checkers see
``typing.NamedTuple`` itself.

The modules of the SCU's start say ``TYPE_CHECKING = False`` rather than import it from typing,
for the same reason (mypy takes that name as true).
"""

from __future__ import annotations

__all__ = ["TYPE_CHECKING", "Record"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    import collections

    #: What a class body holds besides its fields that the record must not take over.
    _CLASS_KEYS = frozenset({"__annotations__", "__module__", "__qualname__", "__dict__",
                             "__weakref__"})

    class _RecordType(type):
        """Turns the body of a :class:`Record` subclass into a namedtuple class."""

        def __new__(mcs, name, bases, namespace):
            if not bases:  # Record itself
                return super().__new__(mcs, name, bases, namespace)
            if "__classcell__" in namespace:  # the cell would never be filled in
                raise TypeError(f"{name}: a record's methods cannot use super() or __class__")
            fields = tuple(namespace.get("__annotations__", {}))
            defaults = []
            for field in fields:
                if field in namespace:
                    defaults.append(namespace[field])
                elif defaults:
                    raise TypeError(f"{name}: field {field} without a default follows one "
                                    "with a default")
            record = collections.namedtuple(name, fields, defaults=defaults,
                                            module=namespace["__module__"])
            record.__qualname__ = namespace["__qualname__"]
            for key, value in namespace.items():
                if key not in fields and key not in _CLASS_KEYS:
                    setattr(record, key, value)
            return record

    class Record(metaclass=_RecordType):
        """Base of the records (see the module's doc)."""
