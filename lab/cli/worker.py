"""``teleradlab worker ADDRESS``: this host as a Dask worker of a sweep's cluster.

A thin wrapper around ``distributed.Worker``: it refuses to start without root (the sweep's tasks
build labs), offers the resource ``lab`` (one lab at a time unless ``--labs N``; every sweep task
asks for ``lab=1``), and runs until the scheduler goes away or the process is stopped. Any host
with the installation of ``scripts/demo`` (the same teleradlab, Python and lock) can serve."""

from __future__ import annotations

import asyncio
import socket

import click

from lab.cli.output import err
from lab.errors import LabError
from lab.runtime import lifecycle


async def _serve(address: str, labs: int, name: str, death_timeout: float) -> None:
    from distributed import Worker  # only here: the command line does not load Dask otherwise

    try:
        worker = await Worker(address, nthreads=labs, resources={"lab": labs}, name=name,
                              death_timeout=death_timeout)
    except (OSError, TimeoutError) as exc:
        raise LabError(f"cannot join the scheduler at {address}: {exc}") from None
    err.print(f"worker {worker.address} ({name}) joined {address}; {labs} lab(s) at a time")
    await worker.finished()


@click.command()
@click.argument("address")
@click.option("--labs", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Labs this host builds at once (each sweep task takes one).")
@click.option("--name", default=None, help="Worker name (default: this host's name).")
@click.option("--death-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for the scheduler before giving up.")
def worker(address: str, labs: int, name: str | None, death_timeout: float) -> None:
    """Serve the Dask scheduler at ADDRESS (tcp://host:8786) as a lab host of sweeps run with
    'teleradlab sweep FILE --scheduler ADDRESS'. Needs root (tasks build labs)."""
    lifecycle.require_root()
    asyncio.run(_serve(address, labs, name or socket.gethostname(), death_timeout))
