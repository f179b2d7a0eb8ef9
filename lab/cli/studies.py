"""``teleradlab sweep``, ``report``, ``graph`` and ``compose``: the commands that turn many runs
into a study, and topologies into drawings and compose files (registered on the main group by
:mod:`lab.cli.main`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from lab import backends
from lab import topology as topology_file
from lab.backends.docker import compose as compose_file
from lab.backends.docker.backend import build_images
from lab.cli.wan import link_probe, wan_option
from lab.errors import LabError
from lab.model.names import check_lab_name
from lab.model.topology import Wan
from lab.report import render
from lab.report.drawings import draw
from lab.runtime import lifecycle
from lab.study.sweep import runner, spec
from lab.study.sweep.runner import failed_cases

out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False)


@click.command()
@click.argument("sweep_file", metavar="FILE")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default: results/<sweep>-<time>).")
@click.option("--resume", is_flag=True, help="Continue the sweep in --out: finished cases are "
              "skipped, the one interrupted is run again.")
@click.option("--retry-failed", is_flag=True,
              help="With --resume, run failed cases again too (done ones are still skipped).")
@click.option("--name", "prefix", default="sweep", show_default=True,
              help="Labs are named PREFIX-1, PREFIX-2, ... (one per topology/security/WAN).")
@click.option("--objects", type=click.IntRange(min=1), default=None,
              help="Override the file's objects per study.")
@click.option("--repetitions", type=click.IntRange(min=1), default=None,
              help="Override the file's repetitions.")
@click.option("--backend", type=click.Choice(sorted(backends.REGISTRY)), default="netns",
              show_default=True, help="Backend of the labs the sweep builds.")
@click.option("--list", "list_only", is_flag=True,
              help="Only list the cases and the lab each one runs on (no root needed).")
@click.option("--cluster", metavar="local:N", default=None,
              help="Run the labs as tasks of a local Dask cluster of N worker processes (one "
              "lab at a time each).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run the labs as tasks of the Dask cluster at ADDRESS (tcp://host:8786), "
              "whose workers were started by 'teleradlab worker' (see README).")
@wan_option()
def sweep(sweep_file: str, out_dir: Path | None, resume: bool, retry_failed: bool, prefix: str,
          objects: int | None, repetitions: int | None, backend: str, list_only: bool,
          cluster: str | None, scheduler: str | None, wan: Wan | None) -> None:
    """Run every case of the sweep FILE (a YAML matrix, or a shipped name such as quick).

    One lab is built per topology, security and WAN profile and reused by every case that
    differs only in PDU size, modality or object security. Writes OUT/results.csv and
    OUT/results.parquet (one table, with provenance columns) after every case, and
    OUT/state.json for --resume. A failing case is recorded with its error and the sweep goes
    on; the exit status is 0 once every case has been tried. Shipped: ipv6-vs-ipv4,
    ipv6-ipsec-algorithms, ipv4-tls-profiles, ipsec-vs-tls-wan, quick, demo (what scripts/demo
    runs), object-security. With --cluster or --scheduler each lab is a Dask task on a
    worker (its host, kernel and data paths in every row), with one progress bar.
    """
    if cluster and scheduler:
        raise LabError("--cluster and --scheduler: give one (a local cluster, or an existing one)")
    if not list_only:
        if not scheduler:  # the workers of a remote cluster are root, this client need not be
            lifecycle.require_root()  # before the file, as for up
        check_lab_name(f"{prefix}-99")
    loaded = spec.load(spec.resolve_path(sweep_file))
    if wan is not None:  # every case over this WAN (e.g. --wan @probe.json: the probed link)
        loaded = spec.over_wan(loaded, wan.name or "none")
    if list_only:
        for no, cases in enumerate(runner.groups(loaded.cases), start=1):
            for case in cases:
                out.print(f"{case.index + 1:4d}  {prefix}-{no:<3d} {case.case_id}")
        out.print(f"{len(loaded.cases)} cases on {no} labs")
        return
    update = {k: v for k, v in (("objects", objects), ("repetitions", repetitions)) if v}
    if update:
        loaded = spec.Sweep(loaded.name, loaded.source, loaded.spec.model_copy(update=update),
                            loaded.cases)
    if out_dir is None:
        out_dir = Path("results") / f"{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if retry_failed and not resume:
        raise LabError("--retry-failed goes with --resume")
    if cluster or scheduler:
        from lab.cli import cluster as on_cluster  # loads distributed: only when asked for

        result = on_cluster.run(loaded, out_dir, err, cluster=cluster, scheduler=scheduler,
                                resume=resume, retry_failed=retry_failed, prefix=prefix,
                                backend=backend)
    else:
        result = runner.run_sweep(loaded, out_dir, resume=resume, retry_failed=retry_failed,
                                  prefix=prefix, backend=backend,
                                  say=lambda msg: err.print(escape(msg), soft_wrap=True))
    for case_id, error in result.errors.items():
        out.print(f"[yellow]failed[/yellow] {case_id}: {escape(' '.join(error.split()))}")
    out.print(
        f"sweep {loaded.name}: {result.done} cases done, {result.failed} failed, "
        f"{result.skipped} already finished; {sum(b['ok'] for b in result.builds)} labs built. "
        f"Table: {result.csv} (and .parquet). Report: teleradlab report {result.out}")
    link_probe(click.get_current_context(), result.out)


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="FOLDER holds a sweep: after writing the report, "
              "name every case that failed or had an operation not ok, and exit 1 if any did.")
def report(folder: Path, check: bool) -> None:
    """Write FOLDER/report.html (self-contained) and FOLDER/figures/*.png from the results of
    a sweep or a run in FOLDER: throughput by configuration and family with 95% intervals, the
    PDU size effect, handshake and setup times, throughput against RTT and loss with the TCP
    bounds, the paper's tables, and generated findings."""
    path = render.write_report(folder)
    out.print(f"report: {path}")
    if check:
        failed = failed_cases(folder)
        for case_id, why in failed.items():
            err.print(f"[red]case failed[/red] {escape(case_id)}: {escape(' '.join(why.split()))}",
                      soft_wrap=True)
        if failed:
            raise SystemExit(1)


@click.command()
@click.argument("topology")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."),
              show_default=True, help="Folder for TOPOLOGY.svg and TOPOLOGY.png.")
@click.option("--wan", "wan_profile", default=None, help="WAN profile to show on the WAN links.")
def graph(topology: str, out_dir: Path, wan_profile: str | None) -> None:
    """Draw TOPOLOGY (a file or shipped name): nodes, links, addresses, security and WAN
    profile, as SVG and PNG for teaching material. Needs no root."""
    path = topology_file.resolve_path(topology)
    svg, png = draw(topology_file.load(path), out_dir, wan=wan_profile)
    out.print(f"drawn: {svg} and {png}")


@click.command()
@click.argument("topology")
@click.option("--name", help="Lab name its containers and networks are labelled with "
              "(default: the topology's name).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the file here (default: standard output).")
@click.option("--build", is_flag=True, help="Also build the images it runs (needs root and a "
              "Docker engine; cached: redone only when their inputs change).")
def compose(topology: str, name: str | None, out: Path | None, build: bool) -> None:
    """Write a compose file that brings TOPOLOGY up by hand, as the docker backend would.

    The same internal networks, addresses and node setup as 'up --backend docker'; no DICOM
    service is started. The files of the shipped topologies are in compose/.
    """
    topo = topology_file.load(topology_file.resolve_path(topology))
    text = compose_file.text(topo, check_lab_name(name) if name else None)
    if build:
        lifecycle.require_root()
        build_images(lambda msg: err.print(f"[dim]… {escape(msg)}[/dim]"))
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}")
