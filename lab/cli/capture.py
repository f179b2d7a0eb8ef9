"""``teleradlab capture``: packet captures of a running lab that open decrypted in Wireshark
(:mod:`lab.runtime.capture`), registered on the main group by :mod:`lab.cli.main`."""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path

import click
from rich.markup import escape

from lab.cli.output import err, out, print_results, progress_of
from lab.dicom import scu
from lab.dicom.data.generate import MODALITIES
from lab.errors import LabError
from lab.host import programs
from lab.runtime import capture as cap
from lab.runtime import lifecycle
from lab.study.run import RunOptions, execute


@click.command()
@click.option("--lab", "lab_name", help="The running lab (needed only when several labs run).")
@click.option("--node", "nodes", multiple=True, metavar="NODE[:IFACE,...]",
              help="Capture in this node: all its interfaces of the topology, or those named "
              "(any it has, e.g. gw-a:ipsec0, the tunnel's inside). Repeatable; one pcapng per "
              "node. Default: the WAN router's interface towards the first site.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the captures (default: captures/<lab>-<time>).")
@click.option("--seconds", type=click.IntRange(min=1, max=cap.MAX_SECONDS), default=None,
              help="Stop after this long (default: at Ctrl-C, or when --run ends).")
@click.option("--run", "run_study", is_flag=True,
              help="Run echo/store/find/move on the lab while capturing (results in OUT/run).")
@click.option("--modality", default="CT", show_default=True,
              help="With --run: the modality of the generated study.")
@click.option("--objects", type=click.IntRange(min=1), default=3, show_default=True,
              help="With --run: objects in the study (small: captures grow fast).")
@click.option("--window", type=click.IntRange(min=0), default=scu.WINDOW, show_default=True,
              help="With --run: C-STORE requests outstanding (PS3.7 D.3.3.3).")
@click.option("--associations", type=click.IntRange(min=1, max=64), default=1,
              show_default=True, help="With --run: associations the C-STORE is spread over.")
def capture(lab_name: str | None, nodes: tuple[str, ...], out_dir: Path | None,
            seconds: int | None, run_study: bool, modality: str, objects: int, window: int,
            associations: int) -> None:
    """Capture a running lab's traffic into one pcapng file per node, decryptable as far as
    the lab allows.

    DICOM TLS: the TLS secrets of the DICOM programs started meanwhile (--run, or programs run
    with the variable TELERADLAB_TLS_KEYLOG=OUT/tls-keys.log) are embedded in the files
    (editcap --inject-secrets), so Wireshark and tshark show the DICOM with no setting.
    IPsec: ESP runs in userspace here and its keys cannot be exported; a lab built with
    --security ipsec,esp=null-sha256 (integrity only) shows the DICOM inside ESP.
    """
    lifecycle.require_root()
    programs.require({"capture": "teleradlab capture"})
    if modality.upper() not in MODALITIES:
        raise LabError(f"--modality: unknown {modality} (known: {', '.join(MODALITIES)})")
    lab = lifecycle.attach(lab_name)
    targets = [cap.parse_target(lab, n) for n in nodes] or cap.default_targets(lab)
    if len({t.node for t in targets}) != len(targets):
        raise LabError("--node: name each node once (list its interfaces as NODE:IF1,IF2)")
    if out_dir is None:
        out_dir = Path("captures") / f"{lab.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with cap.capturing(lab, targets, out_dir, seconds or cap.MAX_SECONDS) as result:
        err.print(f"capturing on {', '.join(t.label for t in targets)} "
                  f"(TLS key log: {result.keylog})")
        if run_study:
            opts = RunOptions(topology=None, lab=lab.name, modalities=(modality.upper(),),
                              objects=objects, out=out_dir / "run", window=window,
                              associations=associations)
            with progress_of() as progress:
                print_results(execute(opts, progress))
        else:
            _wait(seconds)
    _print(result)


def _wait(seconds: int | None) -> None:
    """Until Ctrl-C or ``seconds``."""
    err.print("press Ctrl-C to stop" + (f" (stops by itself after {seconds} s)"
                                          if seconds else ""))
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(seconds or cap.MAX_SECONDS)


def _print(result: cap.CaptureResult) -> None:
    options = shlex.join(result.tshark)
    for node, path in result.files.items():
        size = path.stat().st_size if path.is_file() else 0
        out.print(f"{node}: {escape(str(path))} ({size / 1e6:.1f} MB)")
    out.print("TLS secrets: " + ("embedded (Wireshark decrypts with no setting)"
                                 if result.secrets_embedded else "none were logged"))
    for note in result.notes:
        out.print(f"note: {escape(note)}", soft_wrap=True)
    first = next(iter(result.files.values()), None)
    if first is not None:
        out.print(f"open: wireshark {escape(options)} {escape(str(first))}", soft_wrap=True)
        out.print(f"  or: tshark -r {escape(str(first))} {escape(options)} -Y dicom",
                  soft_wrap=True)
