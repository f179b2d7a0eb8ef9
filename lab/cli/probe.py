"""``teleradlab probe HOST PORT``: validate a real DICOM peer before a link goes live
(:mod:`lab.probe`), print the verdicts, write them as JSON and HTML."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from lab.cli.output import out
from lab.dicom.ul.tlsopts import PROFILE_NAMES
from lab.errors import LabError
from lab.host import files
from lab.probe.findings import ProbeReport
from lab.report import probe as probe_page

_COLOURS = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _ae(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not (0 < len(value.strip()) <= 16 and value.isascii()
                                  and "\\" not in value):
        raise click.BadParameter(f"{value!r}: an AE title has 1 to 16 ASCII characters, no "
                                 "backslash (PS3.5 6.2)")
    return value


@click.command("probe")
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--called", required=True, callback=_ae, metavar="AE",
              help="The peer's AE title (called AE).")
@click.option("--calling", default="TELERADLAB", show_default=True, callback=_ae, metavar="AE",
              help="Our AE title, as the peer knows it.")
@click.option("--tls-profile", type=click.Choice(PROFILE_NAMES), default=None,
              help="Speak DICOM TLS with this PS3.15 Annex B profile, and scan the peer's TLS "
              "(versions, suites, profiles, certificate). Default: clear DICOM.")
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Our client certificate (PEM), for a peer that demands one.")
@click.option("--tls-key", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Its private key (PEM).")
@click.option("--tls-ca", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="The CA certificate the peer's must be issued by (needed with --tls-profile).")
@click.option("--move-to", default=None, callback=_ae, metavar="AE",
              help="Also ask for a C-MOVE (of a study that matches nothing) to this destination "
              "AE, to learn whether the peer knows it. Off by default.")
@click.option("--allow-store", "store_objects", type=click.IntRange(0, 100), default=0,
              metavar="N", help="Also C-STORE a synthetic CT study of N objects (patient "
              "TELERAD^PROBE) and time it; the output names the study to delete from the peer. "
              "Off by default (0): the probe is read-only.")
@click.option("--timeout", type=click.FloatRange(0.5, 60), default=5.0, show_default=True,
              help="Seconds any one wait for the peer may take.")
@click.option("--connects", type=click.IntRange(2, 50), default=5, show_default=True,
              help="TCP connects timed for the RTT and jitter.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE", help="Write the findings and verdicts as JSON "
              "(the input of --wan @FILE).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE", help="Write them as an HTML page.")
def probe(host: str, port: int, called: str, calling: str, tls_profile: str | None,
          tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
          move_to: str | None, store_objects: int, timeout: float, connects: int,
          json_out: Path | None, html_out: Path | None) -> None:
    """Validate a DICOM peer (HOST PORT) before a link goes live, read-only by default.

    Times TCP connects (RTT, jitter) and reads the path MTU; with --tls-profile scans the
    port's TLS (sslyze: versions, cipher suites, client-certificate demand, the PS3.15 Annex B
    profiles they satisfy) and judges its certificate (expiry, key size, signature, names
    against HOST, trust by --tls-ca); associates (accepted, or the reject's result, source and
    reason; the peer's maximum PDU and implementation), times C-ECHOs, asks a study-level
    C-FIND that matches nothing, lists the storage presentation contexts it accepts (the
    lab's seven modalities x common transfer syntaxes, in batches of up to 128), and C-MOVEs
    nothing to --move-to if given. Nothing is stored unless --allow-store N. Prints a verdict
    per requirement; exits 1 if any failed.
    """
    for flag, path in (("--json", json_out), ("--html", html_out)):
        if path is not None and not path.resolve().parent.is_dir():
            raise LabError(f"{flag} {path}: no such directory {path.resolve().parent}")
    if (tls_cert is None) != (tls_key is None):
        raise LabError("--tls-cert and --tls-key go together")
    if tls_profile is None and any(p is not None for p in (tls_cert, tls_key, tls_ca)):
        raise LabError("--tls-cert, --tls-key and --tls-ca need --tls-profile")
    # Lazy on purpose (tests/unit/test_layers.py LAZY_IMPORTS): sslyze, nassl and pydicom load
    # only when a probe runs, not at every start of the command line.
    from lab.probe.probe import Request, run

    report = run(Request(host=host, port=port, called=called, calling=calling,
                         tls_profile=tls_profile, tls_cert=tls_cert, tls_key=tls_key,
                         tls_ca=tls_ca, move_to=move_to, store_objects=store_objects,
                         timeout=timeout, connects=connects))
    if json_out is not None:
        files.write_text(json_out, report.model_dump_json(indent=2))
    if html_out is not None:
        probe_page.write(report, html_out, json_out.name if json_out else "probe.json")
    _print(report, json_out)
    if report.worst() == "fail":
        sys.exit(1)


def _print(report: ProbeReport, json_out: Path | None) -> None:
    """The verdicts as a table, and the WAN measured."""
    title = f"probe of {report.host}:{report.port} ({report.called}), {report.seconds:.1f} s"
    table = Table(title=escape(title), title_justify="left")
    for col in ("requirement", "verdict", "reason"):
        table.add_column(col)
    for v in report.verdicts:
        table.add_row(escape(v.requirement), f"[{_COLOURS[v.status]}]{v.status}[/]",
                      escape(v.reason))
    out.print(table)
    if report.wan:
        wan = ",".join(f"{k}={v}" for k, v in report.wan.items())
        out.print(f"WAN measured: {wan}" + (f" (use --wan @{json_out})" if json_out else ""))
