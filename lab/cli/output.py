"""What the ``teleradlab`` command line prints: the consoles and the tables of a topology, a
lab's status and services, and a run's results."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.backends.base import Lab, Progress
from lab.model.topology import Topology
from lab.runtime import lifecycle
from lab.runtime.services import dicom_services
from lab.runtime.status import live_nodes, security_summary

# On a terminal rich uses its width; piped output (logs, CI) gets room for addresses on one line.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False)


@contextmanager
def progress_of(quiet: bool = False) -> Iterator[Progress]:
    """A spinner on stderr showing the current step (only on a terminal)."""
    if quiet or not err.is_terminal:

        def plain(msg: str) -> None:
            if not quiet:
                err.print(f"[dim]… {msg}[/dim]")

        yield plain
        return
    with err.status("starting") as status:

        def show(msg: str) -> None:
            status.update(msg)

        yield show


def topology_table(topology: Topology) -> Table:
    table = Table(
        title=escape(
            f"{topology.name}: {topology.description}" if topology.description else topology.name
        ),
        title_justify="left",
        expand=False,
    )
    for col in ("node", "role", "site", "interface", "addresses"):
        table.add_column(col)
    for node in topology.nodes:
        for i, iface in enumerate(node.interfaces):
            first = i == 0
            table.add_row(
                node.name if first else "",
                node.role.value if first else "",
                (node.site or "-") if first else "",
                iface.name,
                ", ".join(str(a) for a in iface.addresses) or "-",
                end_section=i == len(node.interfaces) - 1,
            )
    return table


def print_services(lab: Lab) -> None:
    for svc in dicom_services(lab):
        addrs = ", ".join(f"[{a.ip}]" if a.version == 6 else str(a.ip)
                          for a in lab.topology.node(svc.node).addresses())
        out.print(f"{svc.name}: AE {svc.ae} on {svc.node} ({addrs}) port {svc.port}; "
                  f"store {svc.store}, log {svc.log}")


def print_notes(topology: Topology) -> None:
    for note in topology.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}")


def print_status(lab: Lab) -> None:
    nodes = live_nodes(lab)
    record = lifecycle.record(lab)
    table = Table(
        title=f"lab {lab.name} ({record.backend}, {lab.topology.name}, "
        f"up since {record.created_text})",
        title_justify="left",
        caption=f"namespaces: {lab.backend.netns_path(lab.name, '<node>')}; "
        "link-local addresses in --json",
        caption_justify="left",
    )
    for col in ("node", "role", "interface", "state", "addresses", "processes"):
        table.add_column(col, overflow="fold")
    for node in nodes:
        procs = "\n".join(f"{pid} {cmd[:50]}" for pid, cmd in node.processes) or "-"
        if not node.present:
            table.add_row(node.name, node.role, "[red]missing[/red]", "", "", "", end_section=True)
            continue
        for i, iface in enumerate(node.interfaces):
            first = i == 0
            addrs = [a for a in iface.addresses if not a.startswith("fe80:")]
            table.add_row(
                node.name if first else "",
                node.role if first else "",
                iface.name + (f" (port of {iface.master})" if iface.master else ""),
                iface.state,
                "\n".join(addrs) or "-",
                procs if first else "",
                end_section=i == len(node.interfaces) - 1,
            )
    out.print(table)
    out.print(f"security: {escape(security_summary(lab))}")
    print_notes(lab.topology)


def print_results(result: Any) -> None:
    table = Table(title=f"results: {result.out}/results.csv", title_justify="left")
    for col in ("family", "operation", "modality", "objects", "MB", "seconds", "MB/s",
                "setup s", "verified", "ok"):
        table.add_column(col, justify="right" if col not in ("family", "operation") else "left")
    for r in result.rows:
        table.add_row(r.family, r.operation, r.modality, str(r.objects), f"{r.bytes / 1e6:.1f}",
                      f"{r.seconds:.3f}", f"{r.mbytes_per_s:.1f}", f"{r.setup_seconds:.3f}",
                      r.verified or "-", "yes" if r.ok else "[red]NO[/red]")
    out.print(table)
    for path, why in result.skipped:
        out.print(f"[yellow]skipped[/yellow] {escape(str(path))}: {escape(why)}")
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}")
    out.print(f"provenance: {result.out}/run.json")
