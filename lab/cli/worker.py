"""``teleradlab worker ADDRESS``: this host as a Dask worker of a sweep's cluster.

A thin wrapper around ``distributed.Worker``: it refuses to start without root (the sweep's tasks
build labs), offers the resource ``lab`` (one lab at a time unless ``--labs N``; every sweep task
asks for ``lab=1``), and runs until the scheduler goes away or the process is stopped. Any host
with the installation of ``scripts/demo`` (the same teleradlab, Python and lock) can serve.

It also takes the options ``dask worker`` is given by ``dask-jobqueue`` (``--nthreads``,
``--memory-limit``, ``--local-directory``, ``--resources``), so that a Slurm job started with
``worker-command: lab worker`` runs it unchanged (examples/slurm/jobqueue.yaml)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import click

from lab.cli.output import err
from lab.errors import LabError
from lab.runtime import lifecycle


def parse_resources(text: str | None, labs: int) -> dict[str, float]:
    """``--resources "lab=2,GPU=1"`` (dask worker's form) with ``lab`` defaulting to
    ``labs``; LabError naming the bad item otherwise."""
    out: dict[str, float] = {}
    for item in (text or "").replace(",", " ").split():
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise LabError(f"--resources {text!r}: {item!r} is not NAME=NUMBER") from None
    out.setdefault("lab", labs)
    if out["lab"] < 1:
        raise LabError(f"--resources {text!r}: lab must be at least 1 (labs at once)")
    return out


async def _serve(address: str, name: str, nthreads: int, resources: dict[str, float],
                 options: dict[str, Any]) -> None:
    from distributed import Worker  # only here: the command line does not load Dask otherwise

    try:
        worker = await Worker(address, nthreads=nthreads, resources=resources, name=name,
                              **options)
    except (OSError, TimeoutError) as exc:
        raise LabError(f"cannot join the scheduler at {address}: {exc}") from None
    err.print(f"worker {worker.address} ({name}) joined {address}; "
              f"{resources['lab']:g} lab(s) at a time")
    await worker.finished()


@click.command()
@click.argument("address")
@click.option("--labs", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Labs this host builds at once (each sweep task takes one).")
@click.option("--name", default=None, help="Worker name (default: this host's name).")
@click.option("--death-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for the scheduler before giving up.")
@click.option("--nthreads", type=click.IntRange(min=1, max=64), default=None,
              help="Task threads (default: --labs; as given by dask-jobqueue).")
@click.option("--memory-limit", default="auto", show_default=True,
              help="Memory limit of the worker (as dask worker; given by dask-jobqueue).")
@click.option("--local-directory", type=click.Path(file_okay=False), default=None,
              help="Worker's scratch folder (as dask worker; given by dask-jobqueue).")
@click.option("--resources", default=None,
              help="Dask resources, e.g. lab=2 (overrides --labs; as given by dask-jobqueue).")
def worker(address: str, labs: int, name: str | None, death_timeout: float,
           nthreads: int | None, memory_limit: str, local_directory: str | None,
           resources: str | None) -> None:
    """Serve the Dask scheduler at ADDRESS (tcp://host:8786) as a lab host of sweeps run with
    'teleradlab sweep FILE --scheduler ADDRESS'. Needs root (tasks build labs)."""
    offered = parse_resources(resources, labs)
    lifecycle.require_root()
    threads = nthreads or max(1, int(offered["lab"]))
    asyncio.run(_serve(address, name or socket.gethostname(), threads, offered,
                       {"memory_limit": memory_limit, "death_timeout": death_timeout,
                        "local_directory": local_directory}))
