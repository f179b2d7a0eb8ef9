"""``teleradlab fault LAB KIND``: inject one fault into a running lab (:mod:`lab.runtime.faults`)
and say what happened until it recovered."""

from __future__ import annotations

import json

import click
from rich.console import Console

from lab.runtime import faults, lifecycle


@click.command("fault")
@click.argument("lab_name", metavar="LAB")
@click.argument("kind", type=click.Choice([str(k) for k in faults.FaultKind]))
@click.option("--node", help="The node to hit (default: the PACS for archive-restart, the "
              "initiator for ike-restart and rekey, the first site's gateway for link-down).")
@click.option("--seconds", type=click.FloatRange(0, 600), default=None,
              help="How long the fault lasts: the archive or charon stays down, the link stays "
              "down, the loss lasts (default: 0 for the daemons and rekey, 5 for link-down and "
              "loss-burst).")
@click.option("--loss", "loss_pct", type=click.FloatRange(0, 100, min_open=True), default=30.0,
              show_default=True, help="Loss of a loss-burst, percent.")
@click.option("--json", "as_json", is_flag=True, help="Print the fault's record as JSON.")
def fault(lab_name: str, kind: str, node: str | None, seconds: float | None, loss_pct: float,
          as_json: bool) -> None:
    """Inject fault KIND into the running lab LAB, and return once the lab has recovered.

    \b
    archive-restart  kill the PACS (SIGKILL), start it again; recovered on C-ECHO
    ike-restart      stop a gateway's charon, start one, SAs re-established (IPsec labs)
    rekey            rekey the IKE SA and the CHILD_SA through VICI (IPsec labs)
    link-down        a gateway's WAN link down for --seconds, then up
    loss-burst       --loss percent loss on the WAN for --seconds, then as before
    """
    lifecycle.require_root()
    lab = lifecycle.attach(lab_name)
    record = faults.inject(lab, faults.FaultSpec(faults.FaultKind(kind), node, seconds,
                                                 loss_pct))
    if as_json:
        click.echo(json.dumps({"lab": lab.name, **record.document()}, indent=2))
        return
    Console(highlight=False).print(
        f"{record.fault} on {record.node} of lab {lab.name}: recovered after "
        f"{record.seconds:.3f} s; {record.observed}")
