"""``teleradlab lesson``: run the guided lesson on this machine and write its handout
(:mod:`lab.study.lesson` runs it, :mod:`lab.report.lesson` writes the HTML), registered on the
main group by :mod:`lab.cli.main`."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.markup import escape

from lab.cli.output import err, out, progress_of
from lab.host import programs
from lab.model.names import check_lab_name
from lab.report.lesson import write_handout
from lab.study.lesson import Settings, run_lesson


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the handout, its captures and runs (default: lesson-<time>).")
@click.option("--name", "prefix", default="lesson", show_default=True,
              help="Labs are named PREFIX-clear, PREFIX-ipsec and PREFIX-tls (taken down at "
              "the end).")
@click.option("--objects", type=click.IntRange(1, 50), default=3, show_default=True,
              help="CT objects per study in the capture steps.")
@click.option("--wan-objects", type=click.IntRange(2, 200), default=20, show_default=True,
              help="CT objects per study in the WAN steps.")
@click.option("--delay", "delay_ms", type=click.FloatRange(2, 1000), default=80.0,
              show_default=True, help="Round trip (ms) the WAN step adds, half each way.")
def lesson(out_dir: Path | None, prefix: str, objects: int, wan_objects: int,
           delay_ms: float) -> None:
    """Run the guided lesson on this machine and write OUT/lesson.html, a handout.

    Eight steps, each with the commands to type, the numbers measured here, the capture to
    open and a question: build a lab, ping across the WAN, store a study in clear and read the
    patient's name on the wire, the same under IPsec (only ESP) and DICOM TLS (only TLS
    records), TLS decrypted with the keys, DELAY ms of round trip on the WAN, and the
    asynchronous window or parallel associations bringing the throughput back. About a minute;
    needs root (it builds three labs, one after the other).
    """
    check_lab_name(f"{prefix}-ipsec")
    programs.require({"capture": "teleradlab lesson"})
    if out_dir is None:
        out_dir = Path(f"lesson-{time.strftime('%Y%m%d-%H%M%S')}")
    settings = Settings(out_dir, prefix, objects, wan_objects, delay_ms)
    with progress_of() as progress:
        done = run_lesson(settings, progress)
    path = write_handout(out_dir)
    for no, step in enumerate(done.steps, start=1):
        err.print(f"step {no}: {escape(step.title)}")
    out.print(f"handout: {path} ({done.seconds:.0f} s of lab work)")
