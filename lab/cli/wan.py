"""``teleradlab wan show|set|reset`` and the ``--wan`` option of ``up`` and ``run``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from rich.console import Console
from rich.table import Table

from lab.backends.base import Lab
from lab.errors import LabError
from lab.model.topology import Wan
from lab.model.wan import (
    PRESETS,
    ProfileError,
    as_dict,
    describe,
    parse_measured,
    parse_option,
)
from lab.report import probe as probe_page
from lab.runtime import lifecycle
from lab.wan import apply, measure

FC = TypeVar("FC", bound=Callable[..., Any])
WAN_HELP = ("WAN impairment: a preset (" + ", ".join(PRESETS) + "), 'none', key=value,... "
            "with keys delay, jitter, loss, loss_correlation, rate, reorder, duplicate, corrupt, "
            "limit, preset (e.g. delay=40ms,rate=10mbit,loss=0.5%), or @FILE: the WAN a "
            "'teleradlab probe --json FILE' measured. Replaces the topology's.")


#: Where ``--wan @FILE`` leaves FILE in the click context, for :func:`link_probe`.
PROBE_JSON = "teleradlab.probe_json"


def link_probe(ctx: click.Context, results: Path) -> None:
    """After a run or sweep over ``--wan @FILE``: record ``results`` as the prediction over
    the probed link in FILE (and its HTML page beside it)."""
    probe_json = ctx.meta.get(PROBE_JSON)
    if probe_json is not None:
        probe_page.link_prediction(probe_json, results)


def read_wan(value: str) -> Wan:
    """``--wan``'s value as a profile: ``@FILE`` reads the WAN measured by ``teleradlab probe``
    (:func:`lab.model.wan.parse_measured`), anything else is :func:`parse_option`'s.
    ProfileError naming the file when it cannot be read or holds no profile."""
    if not value.startswith("@"):
        return parse_option(value)
    path = Path(value[1:])
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError([f"--wan {value}: cannot read a probe's JSON from {path}: {exc}"]) \
            from None
    return parse_measured(doc, str(path))


def parse_wan(ctx: click.Context, param: click.Parameter, value: str | None) -> Wan | None:
    """click callback for ``--wan``."""
    if value is None:
        return None
    if value.startswith("@"):  # the command links the probe's page to what it predicts
        ctx.meta[PROBE_JSON] = Path(value[1:])
    try:
        return read_wan(value)
    except ProfileError as exc:
        raise click.BadParameter("; ".join(exc.problems)) from None


def wan_option() -> Callable[[FC], FC]:
    """The ``--wan PROFILE`` option (parsed to a :class:`~lab.model.topology.Wan`, or None)."""
    return click.option("--wan", "wan", callback=parse_wan, metavar="PROFILE", help=WAN_HELP)


def _console() -> Console:
    return Console(highlight=False)


def print_state(lab: Lab, state: apply.WanState, console: Console) -> None:
    """The applied profile per direction, the path, the last fidelity figures, the counters."""
    table = Table(title=f"WAN of lab {lab.name}: {state.wan.name or 'unimpaired'}"
                  + (f" ({state.path} path)" if state.path else ""), title_justify="left")
    table.add_column("direction")
    table.add_column("configured")
    first = "first site -> second"
    table.add_row(first, describe(state.wan.forward))
    table.add_row("second site -> first", describe(state.wan.reverse))
    console.print(table)
    if state.why:
        console.print(f"path: {state.path} ({state.why})")
    f = state.fidelity
    if f:
        line = (f"fidelity ({f['between']}): RTT {f['rtt_measured_ms']:.2f} ms measured "
                f"(min {f['rtt_min_ms']:.2f}) vs {f['rtt_configured_ms']:g} ms configured; "
                f"ping loss {f['ping_loss_pct']:g}% of {f['pings']}")
        if "rate_measured_mbit" in f:
            conf = f["rate_configured_mbit"]
            line += (f"; rate {f['rate_measured_mbit']:.1f} Mbit/s measured vs "
                     f"{f'{conf:g} Mbit/s' if conf else 'unlimited'} configured "
                     f"({f['rate_note']})")
        console.print(line)
    counters = apply.counters(lab.paths)
    for i, d in enumerate(counters.get("directions", []) if state.path == "userspace" else []):
        name = "forward" if i == 0 else "reverse"
        console.print(f"emulator {name}: {d['tx']} sent, {d['lost']} lost, "
                      f"{d['overlimit']} over the queue limit, {d['duplicated']} duplicated, "
                      f"{d['corrupted']} corrupted, {d['reordered']} reordered, "
                      f"backlog {d['backlog']} (max {d['max_backlog']})")


@click.group("wan")
def wan_group() -> None:
    """Show or change the WAN impairments of a running lab.

    \b
    teleradlab wan show [--measure]        configured profile, path, fidelity, counters
    teleradlab wan set dsl-20m-30ms        apply a preset (or key=value,...), then measure
    teleradlab wan reset                   back to an unimpaired WAN
    """


@wan_group.command("show")
@click.option("--lab", "lab_name", help="Lab name (needed only when several labs run).")
@click.option("--measure", "measure_now", is_flag=True,
              help="Measure RTT and rate now (takes a few seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def show(lab_name: str | None, measure_now: bool, as_json: bool) -> None:
    """What impairs the WAN now, by which path, and how faithfully (last measurement)."""
    lab = lifecycle.attach(lab_name)
    state = apply.check(lab)
    if measure_now:
        apply.record_fidelity(lab.paths, measure.fidelity(lab, state.wan))
        state = apply.read_state(lab.paths)
    if as_json:
        doc = {"lab": lab.name, "path": state.path, "why": state.why,
               "profile": as_dict(state.wan), "fidelity": state.fidelity,
               "counters": apply.counters(lab.paths)}
        click.echo(json.dumps(doc, indent=2))
        return
    print_state(lab, state, _console())


@wan_group.command("set")
@click.argument("profile")
@click.option("--lab", "lab_name", help="Lab name (needed only when several labs run).")
@click.option("--path", "path", type=click.Choice(["auto", "netem", "userspace"]),
              default="auto", show_default=True,
              help="netem where the kernel has it, else the userspace emulator.")
@click.option("--no-measure", is_flag=True, help="Do not measure RTT and rate afterwards.")
def set_(profile: str, lab_name: str | None, path: str, no_measure: bool) -> None:
    """Apply PROFILE (a preset, or key=value,...) to the running lab's WAN.

    Replaces what was applied before (the emulator is restarted); then measures fidelity."""
    lifecycle.require_root()
    try:
        wan = read_wan(profile)
    except ProfileError as exc:
        raise LabError(str(exc)) from None
    lab = lifecycle.attach(lab_name)
    state = apply.apply(lab, wan, prefer=cast(apply.PathChoice, path))
    if wan.impaired and not no_measure:
        apply.record_fidelity(lab.paths, measure.fidelity(lab, wan))
        state = apply.read_state(lab.paths)
    print_state(lab, state, _console())


@wan_group.command("reset")
@click.option("--lab", "lab_name", help="Lab name (needed only when several labs run).")
def reset(lab_name: str | None) -> None:
    """Remove every impairment: the WAN forwards unimpaired again."""
    lifecycle.require_root()
    lab = lifecycle.attach(lab_name)
    apply.reset(lab)
    _console().print(f"the WAN of lab {lab.name!r} is unimpaired")
