"""``teleradlab watch``: a live view of a running lab for a classroom (:mod:`lab.runtime.watch`
samples it), registered on the main group by :mod:`lab.cli.main`."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lab.cli.output import out
from lab.runtime import lifecycle
from lab.runtime import watch as sampler


@click.command()
@click.argument("name", metavar="LAB", required=False)
@click.option("--once", is_flag=True, help="Print one snapshot and exit (rates over one "
              "--interval).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --once: one document; "
              "without: one document per line, for scripts).")
@click.option("--interval", type=click.FloatRange(min=0.2, max=60), default=1.0,
              show_default=True, help="Seconds between samples.")
@click.option("--all-links", is_flag=True, help="Show every interface, also those that "
              "carried nothing since the lab came up.")
def watch(name: str | None, once: bool, as_json: bool, interval: float, all_links: bool) -> None:
    """Watch LAB live (the only running lab if omitted): per link the throughput and queue,
    per IPsec SA its byte counters, the DICOM associations open and objects stored by the
    PACS and receivers, the DICOM programs running, the WAN profile. Refreshed every
    --interval seconds until Ctrl-C. Needs root (it reads the nodes' namespaces)."""
    lifecycle.require_root()
    lab = lifecycle.attach(name)
    docs = sampler.documents(lab, interval)
    if once:
        doc = next(docs)
        if as_json:
            click.echo(json.dumps(doc, indent=2))
        else:
            out.print(view(doc, all_links))
        return
    with contextlib.suppress(KeyboardInterrupt):
        if as_json:
            for doc in docs:
                click.echo(json.dumps(doc))
            return
        with Live(Text("sampling…"), console=out, screen=False, auto_refresh=False) as live:
            for doc in docs:
                live.update(view(doc, all_links), refresh=True)


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _wan_line(doc: dict[str, Any]) -> str:
    wan = doc["wan"]
    if wan["path"] == "unimpaired":
        return "WAN: unimpaired"
    return (f"WAN {wan['name'] or '(custom)'} via {wan['path']}: forward {wan['forward_text']}; "
            f"reverse {wan['reverse_text']}")


def view(doc: dict[str, Any], all_links: bool = False) -> RenderableType:
    """The snapshot ``doc`` (:func:`lab.runtime.watch.document`) as tables in large, plain
    units: Mbit/s, packets, MB."""
    head = Text.assemble((f"lab {doc['lab']}", "bold"), f"   security: {doc['security']}   ",
                         (_wan_line(doc), "bold"))
    links = Table(title="links", title_justify="left", expand=False)
    for col in ("node:interface", "in Mbit/s", "out Mbit/s", "in total", "out total",
                "queue pkts", "queue drops", "drops"):
        links.add_column(col, justify="left" if col.startswith("node") else "right")
    for ln in doc["links"]:
        if not all_links and not (ln["rx_bytes"] or ln["tx_bytes"]):
            continue
        busy = "bold green" if ln["rx_mbit_s"] or ln["tx_mbit_s"] else ""
        links.add_row(f"{ln['node']}:{ln['interface']}", f"{ln['rx_mbit_s']:.1f}",
                      f"{ln['tx_mbit_s']:.1f}", _bytes(ln["rx_bytes"]), _bytes(ln["tx_bytes"]),
                      str(ln["queue_packets"]), str(ln["queue_drops"]), str(ln["dropped"]),
                      style=busy)
    parts: list[RenderableType] = [head, links]
    if doc["sas"]:
        sas = Table(title="IPsec SAs (strongSwan)", title_justify="left")
        for col in ("node", "SA", "SPI in/out", "ESP", "in Mbit/s", "out Mbit/s", "bytes in",
                    "bytes out"):
            sas.add_column(col, justify="right" if "Mbit" in col or "bytes" in col else "left")
        for sa in doc["sas"]:
            sas.add_row(sa["node"], f"{sa['name']} {sa['state']}",
                        f"{sa['spi_in']}/{sa['spi_out']}", sa["algorithms"],
                        f"{sa['in_mbit_s']:.1f}", f"{sa['out_mbit_s']:.1f}",
                        _bytes(sa["bytes_in"]), _bytes(sa["bytes_out"]))
        parts.append(sas)
    dicom = Table(title="DICOM", title_justify="left")
    for col in ("service", "AE", "port", "associations open", "their objects", "associations",
                "objects stored", "stored"):
        dicom.add_column(col, justify="left" if col in ("service", "AE") else "right")
    for svc in doc["services"]:
        dicom.add_row(f"{svc['service']} on {svc['node']}", svc["ae"], str(svc["port"]),
                      str(svc["associations_open"]),
                      str(svc["objects_in_open"]) if svc["associations_open"] else "-",
                      str(svc["associations_total"]),
                      str(svc["objects_stored"]), _bytes(svc["bytes_stored"]),
                      style="bold green" if svc["associations_open"] else "")
    parts.append(dicom)
    running = ", ".join(f"{c['program']} {c['operation']} on {c['node']} (pid {c['pid']})"
                        for c in doc["clients"])
    parts.append(Text(f"running: {running or 'no DICOM client'}"))
    parts += [Text(f"could not read: {p}", style="red") for p in doc["problems"]]
    return Group(*parts)
