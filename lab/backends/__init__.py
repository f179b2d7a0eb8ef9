"""Backends that make a topology real. An explicit registry: name -> class."""

from __future__ import annotations

from lab.backends.base import Backend
from lab.backends.docker.backend import DockerBackend
from lab.backends.netns import NetnsBackend
from lab.errors import LabError

REGISTRY: dict[str, type[Backend]] = {
    NetnsBackend.name: NetnsBackend,
    DockerBackend.name: DockerBackend,
}
DEFAULT = NetnsBackend.name


def get(name: str | Backend = DEFAULT) -> Backend:
    """The backend called ``name`` (a Backend given is returned as it is: tests pass a fake)."""
    if isinstance(name, Backend):
        return name
    try:
        return REGISTRY[name]()
    except KeyError:
        raise LabError(f"unknown backend {name!r} (available: {', '.join(REGISTRY)})") from None
