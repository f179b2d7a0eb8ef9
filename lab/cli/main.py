"""The ``teleradlab`` command line: the root group (logging, SIGTERM, errors printed once) and
the registration of every command group: labs (:mod:`.labs`), studies (:mod:`.studies`),
the WAN (:mod:`.wan`), faults (:mod:`.faults`), the probe of a real peer (:mod:`.probe`),
objects (:mod:`.objects`) and teaching (:mod:`.capture`, :mod:`.watch`, :mod:`.lesson`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

import click
from rich.markup import escape

from lab import __version__
from lab.cli.capture import capture
from lab.cli.faults import fault
from lab.cli.labs import clean, doctor, down, exec, run, status, up
from lab.cli.lesson import lesson
from lab.cli.objects import OBJECT_COMMANDS
from lab.cli.output import err
from lab.cli.probe import probe
from lab.cli.studies import compose, graph, report, sweep
from lab.cli.wan import wan_group
from lab.cli.watch import watch
from lab.cli.worker import worker
from lab.errors import LabError

_MAIN_PID = os.getpid()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into an exception so that every `finally` (and up's rollback) runs.

    Only in this process: a library's forked helper (pyroute2 forks to open sockets inside a
    namespace, then SIGTERMs the child) inherits the handler, and must simply exit rather than
    unwind a copy of our stack and run our rollback."""
    if os.getpid() != _MAIN_PID:
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="teleradlab")
@click.option("-v", "--verbose", is_flag=True, help="Log every command the lab runs (stderr).")
def main(verbose: bool) -> None:
    """teleradlab: a network lab for secure medical-image (DICOM) transfer.

    Builds two hospital sites joined by an emulated WAN (IPv4-only, IPv6-only or mixed) out of
    Linux network namespaces (or docker containers: --backend docker), with a PACS and a
    modality that speak DICOM (C-ECHO, C-STORE, C-FIND, C-MOVE), so transfers can be run,
    verified and measured on one machine, in clear or protected by IPsec (strongSwan, set up
    through VICI) or by DICOM TLS. Building labs needs root.

    \b
    Typical session:
      teleradlab doctor                   what this machine can do
      teleradlab up ipv6                  build the shipped IPv6 lab, prove reachability
      teleradlab status                   nodes, interfaces, addresses, processes
      teleradlab exec modality -- ping -c1 pacs
      teleradlab run --lab ipv6 --modality CT,MR   timed, verified DICOM transfers
      teleradlab run ipv4 --security ipsec --wan dsl-20m-30ms   IPsec over a slow WAN
      teleradlab run ipv6 --security tls,profile=extended       DICOM TLS (PS3.15 Annex B)
      teleradlab down                     remove it
      teleradlab sweep quick --out r/q    the paper's matrix, small; then: teleradlab report r/q
      teleradlab clean                    remove anything any lab left behind
      teleradlab capture --lab ipv6 --run  a pcapng of the WAN (TLS secrets embedded)
      teleradlab watch ipv6               live counters: links, SAs, DICOM associations
      teleradlab lesson                   a guided lesson run here, as an HTML handout
      teleradlab probe pacs.example.org 11112 --called PACS --json probe.json  check a real peer
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _on_sigterm)


for command in (up, status, exec, down, clean, doctor, run,  # labs
                sweep, report, graph, compose, worker,  # studies (worker: a sweep's host)
                wan_group, fault, probe,  # the WAN, faults; validating a real peer
                *OBJECT_COMMANDS,  # objects: sign, verify, deid, reid, media
                capture, watch, lesson):  # teaching
    main.add_command(command)
