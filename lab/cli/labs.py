"""The commands on labs: ``up``, ``status``, ``exec``, ``down``, ``clean``, ``doctor`` and
``run`` (one timed, verified experiment), registered on the root group by
:mod:`lab.cli.main`."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lab import backends
from lab import topology as topology_file
from lab.cli.output import (
    out,
    print_notes,
    print_results,
    print_services,
    print_status,
    progress_of,
    topology_table,
)
from lab.cli.wan import link_probe, wan_option
from lab.dicom import scu
from lab.dicom.data.generate import MODALITIES
from lab.errors import LabError, LabExistsError
from lab.host import shell
from lab.model.names import check_lab_name
from lab.model.topology import Wan
from lab.runtime import cleanup, lifecycle
from lab.runtime import doctor as doc
from lab.runtime.status import status_document
from lab.study.faults import Scheduled
from lab.study.faults import parse as parse_fault
from lab.study.objects import MODES as OBJECT_SECURITY
from lab.study.run import RunOptions, execute


def _backend_option(**kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--backend", type=click.Choice(sorted(backends.REGISTRY)), **kw)


@click.command()
@click.argument("topology")
@click.option(
    "--name",
    help="Lab name (default: the topology's name). Several labs with "
    "different names can run at once.",
)
@click.option("--security", "security", metavar="MODE[,KEY=VALUE...]",
              help="Replace the topology's security: none, ipsec or tls, with settings, e.g. "
              "'ipsec,esp=aes128gcm16,auth=cert' or 'ipsec,scope=host-to-host' or "
              "'tls,profile=extended'. Unsupported algorithms are refused before anything starts "
              "('teleradlab doctor' lists them).")
@click.option("--no-check", is_flag=True, help="Skip the reachability pings.")
@click.option("--no-services", is_flag=True,
              help="Do not start the PACS (AE PACS, port 11112) on pacs and the receiver of "
              "C-MOVE results (AE MODALITY, port 11113) on modality.")
@wan_option()
@_backend_option(default="netns", show_default=True,
                 help="netns: network namespaces (no daemon); docker: containers on internal "
                 "docker networks (images built on first use).")
def up(topology: str, name: str | None, security: str | None, no_check: bool,
       no_services: bool, wan: Wan | None, backend: str) -> None:
    """Build a lab from TOPOLOGY and prove reachability with real pings.

    TOPOLOGY is a YAML file, or the name of a shipped one: ipv4, ipv6, mixed-4over6,
    mixed-6over4, dualstack. If any step fails, nothing is left behind.
    """
    lifecycle.require_root()  # reported before anything about the file
    path = topology_file.resolve_path(topology)
    with progress_of() as progress:
        built = lifecycle.build(path, name, backend=backend, check=not no_check,
                                start_services=not no_services, progress=progress,
                                overrides=_overrides(security), wan=wan)
    lab = built.lab
    out.print(topology_table(lab.topology))
    if built.probes:
        by_family = Counter(r.probe.family.label for r in built.probes)
        detail = ", ".join(f"{fam} {n}" for fam, n in sorted(by_family.items()))
        out.print(f"reachability: {len(built.probes)} pings answered ({detail})")
    if not no_services:
        print_services(lab)
    print_notes(lab.topology)
    out.print(
        f"[green]lab {lab.name!r} is up[/green] ({built.seconds:.2f} s). Try: "
        f"teleradlab exec --lab {lab.name} {lab.topology.nodes[0].name} -- ip addr"
    )


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of tables.")
def status(name: str | None, as_json: bool) -> None:
    """Show running labs: nodes, namespaces, interfaces, addresses and processes.

    With no NAME, every running lab.
    """
    labs = [name] if name else lifecycle.running()
    handles = [lifecycle.attach(n) for n in labs]
    docs = [status_document(lab, lifecycle.record(lab)) for lab in handles]
    if as_json:
        out.print_json(json.dumps({"labs": docs}))
        return
    if not docs:
        out.print("no lab is running")
    for n in labs:
        print_status(lifecycle.attach(n))


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--lab", "lab_name", help="Lab name (needed only when several labs run).")
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec(lab_name: str | None, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE; its exit code is passed on.

    \b
    Example: teleradlab exec modality -- ping -c 3 pacs
    """
    lab = lifecycle.attach(lab_name)
    argv = list(command[1:] if command and command[0] == "--" else command)
    shell.replace_process(lab.backend.node_argv(lab.name, node, argv))


@click.command()
@click.argument("name", required=False)
@_backend_option(help="The lab's backend, when its record is gone (default: from the record).")
def down(name: str | None, backend: str | None) -> None:
    """Stop and remove lab NAME (the only running lab if NAME is omitted)."""
    lab_name = name or lifecycle.resolve(None)
    removed = lifecycle.down(lab_name, backend=backend)
    out.print(f"lab {lab_name!r} removed ({len(removed)} items)")


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only a summary line.")
@_backend_option(help="Only the labs of this backend (default: every backend).")
@click.option("--lab", "lab_name", metavar="NAME",
              help="Only this lab (default: every lab on this machine).")
def clean(quiet: bool, backend: str | None, lab_name: str | None) -> None:
    """Remove everything any teleradlab lab (or only lab NAME) left on this machine.

    Finds namespaces, mounts, processes, docker containers and networks (by their label
    teleradlab.lab) and records by name alone, so it also works after a crash or a SIGKILL;
    a host interface that a lab moved into its gateway (uplink mode move) goes back from the
    lab's record; safe to run twice.
    """
    if lab_name is not None:
        check_lab_name(lab_name)
    removed = cleanup.clean(backends=(backend,) if backend else None, only=lab_name)
    if not quiet:
        for line in removed:
            out.print(f"removed {line}")
    out.print("nothing to clean" if not removed else f"cleaned ({len(removed)} items)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of a table.")
def doctor(as_json: bool) -> None:
    """Check what this machine has for teleradlab, and how to install what is missing.

    Kernel features (IPsec ESP, netem, tbf, htb) are probed in a throwaway network namespace,
    never on the host. Exits 1 when a lab cannot be built at all (no root, or a program every
    lab needs is missing).
    """
    report = doc.run_checks()
    if as_json:
        out.print_json(json.dumps(doc.as_document(report)))
    else:
        doc.print_report(report, out)
    if doc.cannot_build(report):  # say so in the exit status too
        sys.exit(1)


def _parse_fault(ctx: click.Context, param: click.Parameter,
                 value: str | None) -> Scheduled | None:
    """click callback for ``--fault``."""
    try:
        return None if value is None else parse_fault(value)
    except LabError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("topology", required=False)
@click.option("--lab", "lab_name", help="Use this running lab instead of building one.")
@click.option("--modality", "modalities", default="CT", show_default=True,
              help="Comma-separated modalities of the generated studies: CT,MR,CR,DX,MG,US,NM.")
@click.option("--objects", type=click.IntRange(min=1), default=None,
              help="Objects per generated study (default: a realistic count per modality).")
@click.option("--input", "input_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), help="Send the DICOM files of this folder instead of generated "
              "studies (corrupt files are reported and skipped).")
@click.option("--pdu", type=int, default=0, show_default=True,
              help="Maximum PDU length, 16384 and up, or 0 for unlimited.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repetitions of the whole echo/store/find/move sequence.")
@click.option("--window", type=click.IntRange(min=0), default=scu.WINDOW, show_default=True,
              help="C-STORE requests outstanding proposed per association (Asynchronous "
              "Operations Window, PS3.7 D.3.3.3; 1 = one at a time, 0 = the peer's limit).")
@click.option("--associations", type=click.IntRange(min=1, max=64), default=1,
              show_default=True, help="Associations each study's C-STORE is spread over.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default: results/<topology>-<time>).")
@click.option("--security", "security", metavar="MODE[,KEY=VALUE...]",
              help="Replace the topology's security: none, ipsec or tls, with settings, e.g. "
              "'ipsec,esp=aes128gcm16,auth=cert' or 'ipsec,scope=host-to-host' or "
              "'tls,profile=extended'. Unsupported algorithms are refused before anything starts "
              "('teleradlab doctor' lists them).")
@click.option("--object-security", type=click.Choice(OBJECT_SECURITY), default="none",
              show_default=True, help="Protect the objects themselves (PS3.15), beside the "
              "channel: sign (Digital Signatures, Base RSA, verified after C-STORE and C-MOVE), "
              "deid (de-identified for the PACS's site, re-identified there and compared with "
              "the originals), or sign+deid. Keys: each site's RSA credential from the lab CA.")
@click.option("--courier", is_flag=True, help="Also carry each study on secure media (a DICOMDIR "
              "of CMS-protected files, PS3.15 Annex D) from the modality's site to the PACS's: "
              "export, import, verify, timed as a 'courier' row.")
@click.option("--fault", "fault", metavar="KIND@WHEN[,KEY=VALUE...]", callback=_parse_fault,
              help="Inject a fault during each C-STORE: archive-restart, ike-restart, rekey, "
              "link-down or loss-burst, at WHEN seconds into it (2.5s) or after WHEN objects "
              "(20obj); keys node=, seconds=, loss= (see 'teleradlab fault'). Store rows name "
              "it (fault, fault_at_s, fault_seconds).")
@wan_option()
@_backend_option(default="netns", show_default=True, help="Backend of the lab built from "
                 "TOPOLOGY (a lab given with --lab keeps its own).")
def run(topology: str | None, lab_name: str | None, modalities: str, objects: int | None,
        input_dir: Path | None, pdu: int, repeat: int, window: int, associations: int,
        seed: int, out: Path | None, security: str | None, object_security: str,
        courier: bool, fault: Scheduled | None, wan: Wan | None,
        backend: str) -> None:
    """Run echo -> store -> find -> move between the sites, timed and verified.

    Builds the lab from TOPOLOGY (or uses --lab), generates a study per modality, C-STOREs each
    to the PACS (one association per study), C-FINDs it, C-MOVEs it back to the modality, and
    checks every object's SHA-256 digest and the sender's signature at each receiver. Writes
    OUT/results.csv (one row per operation and repetition) and OUT/run.json (provenance).
    """
    lifecycle.require_root()
    wanted = tuple(m.strip().upper() for m in modalities.split(",") if m.strip())
    unknown = [m for m in wanted if m not in MODALITIES]
    if unknown:
        raise LabError(f"--modality: unknown {', '.join(unknown)} (known: {', '.join(MODALITIES)})")
    if pdu and pdu < 16384:
        raise LabError(f"--pdu: {pdu} is below 16384 (use 0 for unlimited)")
    path = topology_file.resolve_path(topology) if topology else None
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("results") / f"{path.stem if path else lab_name}-{stamp}"
    opts = RunOptions(topology=path, lab=lab_name, modalities=wanted, pdu=pdu,
                                 repeat=repeat, out=out, input_dir=input_dir, objects=objects,
                                 seed=seed, overrides=_overrides(security), wan=wan,
                                 backend=backend, object_security=object_security,
                                 courier=courier, window=window,
                                 associations=associations, fault=fault)
    with progress_of() as progress:
        try:
            result = execute(opts, progress)
        except LabExistsError:
            name = path.stem if path else lab_name
            raise LabError(f"a lab named {name!r} already exists: run on it with --lab {name}, "
                           f"or remove it first with 'teleradlab down {name}'") from None
    print_results(result)
    link_probe(click.get_current_context(), out)
    if not result.ok:
        sys.exit(1)


def _overrides(security: str | None) -> dict[str, Any]:
    return {"security": topology_file.security_override(security)} if security else {}
