"""``teleradlab lesson``: a guided lesson run for real on this machine, written as the data of
a handout (``lesson.json``; :mod:`lab.report.lesson` makes the HTML).

Eight steps on three small labs of the shipped ``ipv4`` topology (in clear, IPsec, DICOM TLS):
build, ping, store in clear and read the patient's name on the WAN, the same under IPsec (only
ESP) and under TLS (only TLS records), TLS decrypted with the key log the capture embedded, 80 ms
of round trip on the WAN with one C-STORE outstanding at a time, and the Asynchronous
Operations Window (PS3.7 D.3.3.3) or parallel associations bringing the throughput back. Every
number of the handout is measured in its step; a step that fails stops the lesson (its labs
are taken down) rather than leave a number out.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import topology as topology_file
from lab.backends.base import Lab, Progress, no_progress
from lab.errors import LabError
from lab.host import files
from lab.model.topology import Role, Wan, WanProfile
from lab.runtime import capture, lifecycle
from lab.study.results import Row
from lab.study.run import RunOptions, RunResult, execute
from lab.wan import measure

TOPOLOGY = "ipv4"
LESSON_FILE = "lesson.json"


@dataclass
class Step:
    """One step of the handout: what to type, what this machine measured, the captures to
    open (paths relative to the lesson folder) and one question for the class."""

    title: str
    goal: str
    commands: list[str]
    measured: list[tuple[str, str]]
    captures: list[str]
    question: str


@dataclass
class Lesson:
    prefix: str
    objects: int
    wan_objects: int
    delay_ms: float  # round trip added in step 7
    started: str
    seconds: float = 0.0
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    out: Path
    prefix: str = "lesson"
    objects: int = 3  # per study in the capture steps (small: captures stay small)
    wan_objects: int = 20  # per study in the WAN steps (enough for the window to matter)
    delay_ms: float = 80.0  # round trip added to the WAN


def _store(result: RunResult) -> Row:
    row = next((r for r in result.rows if r.operation == "store"), None)
    if row is None or not row.ok:
        raise LabError(f"the lesson's C-STORE failed: {row.detail if row else 'no store row'}")
    return row


def _rate(row: Row) -> str:
    return f"{row.mbytes_per_s:.1f} MB/s ({row.objects} objects, {row.bytes / 1e6:.1f} MB in " \
           f"{row.seconds:.3f} s)"


@contextmanager
def _lab(s: Settings, kind: str, security: str | None, progress: Progress
         ) -> Iterator[tuple[Lab, float]]:
    """Lab ``PREFIX-KIND`` built from the shipped topology (with ``security``), and how long
    ``up`` took; down when the body ends, whatever happens."""
    overrides = {"security": topology_file.security_override(security)} if security else {}
    name = f"{s.prefix}-{kind}"
    progress(f"building lab {name}")
    start = time.monotonic()
    built = lifecycle.build(topology_file.resolve_path(TOPOLOGY), name, overrides=overrides,
                            measured=True, progress=progress)
    try:
        yield built.lab, time.monotonic() - start
    finally:
        progress(f"taking lab {name} down")
        lifecycle.down(name)


def _captured_run(s: Settings, lab: Lab, folder: str, progress: Progress
                  ) -> tuple[RunResult, capture.CaptureResult]:
    out = s.out / folder
    with capture.capturing(lab, capture.default_targets(lab), out) as cap:
        result = execute(RunOptions(topology=None, lab=lab.name, objects=s.objects,
                                    out=out / "run"), progress)
    return result, cap


def _rel(s: Settings, path: Path) -> str:
    return str(path.relative_to(s.out.absolute()))


def _seen(summary: capture.Summary) -> list[tuple[str, str]]:
    return [("frames on the WAN", str(summary.frames)),
            ("ESP frames", str(summary.esp)), ("TLS frames", str(summary.tls)),
            ("DICOM frames dissected", str(summary.dicom)),
            ("P-DATA PDUs seen", str(summary.p_data)),
            ("patient names readable", ", ".join(summary.patient_names) or "none")]


def _open(s: Settings, path: Path, cap: capture.CaptureResult, *view: str) -> str:
    """The tshark command that shows ``path`` (by default its DICOM frames), with the paths
    relative to the lesson's folder, as the handout's reader finds them."""
    options = [o.replace(f"{s.out.absolute()}/", "") for o in cap.tshark]
    return shlex.join(["tshark", "-r", _rel(s, path), *options, *(view or ("-Y", "dicom"))])


def _capture_cmd(s: Settings, lab: Lab, folder: str) -> str:
    return f"teleradlab capture --lab {lab.name} --run --objects {s.objects} --out {folder}"


def clear_steps(s: Settings, progress: Progress) -> list[Step]:
    """Steps 1-3 and 7-8, on the lab in clear."""
    with _lab(s, "clear", None, progress) as (lab, up_seconds):
        name = lab.name
        nodes = {n.role: n for n in lab.topology.nodes}
        pacs_ip = str(nodes[Role.PACS].addresses()[0].ip)
        steps = [Step("Build the lab", "Two hospital sites and a WAN router, each a Linux "
                      "network namespace, joined by virtual Ethernet links.",
                      [f"teleradlab up {TOPOLOGY} --name {name}", f"teleradlab status {name}"],
                      [("lab up in", f"{up_seconds:.2f} s"),
                       ("nodes", ", ".join(n.name for n in lab.topology.nodes))], [],
                      "Which nodes forward packets, and which only send and receive them?")]
        ping = measure.ping(lab, nodes[Role.MODALITY].name, pacs_ip, count=5, interval=0.2)
        steps.append(Step("Ping across the WAN", "The modality reaches the PACS through both "
                          "gateways and the WAN router.",
                          [f"teleradlab exec --lab {name} modality -- ping -c 5 {pacs_ip}"],
                          [("replies", f"{ping.received} of {ping.sent}"),
                           ("round trip", f"{ping.rtt_avg_ms:.3f} ms average, "
                            f"{ping.rtt_min_ms:.3f} min, {ping.rtt_max_ms:.3f} max")], [],
                          "Why is this round trip so much shorter than between two real "
                          "hospitals?"))
        progress("step 3: a study in clear, captured on the WAN")
        result, cap = _captured_run(s, lab, "3-clear", progress)
        pcap = cap.files["wan"]
        steps.append(Step("Store a study in clear and read it on the wire",
                          "Wireshark's DICOM dissector shows every PDU and every attribute, "
                          "the patient's name included.",
                          [_capture_cmd(s, lab, "3-clear"), _open(s, pcap, cap)],
                          [("C-STORE", _rate(_store(result))),
                           *_seen(capture.summarize(pcap, cap.tshark))], [_rel(s, pcap)],
                          "Who between the two sites can read this study, and what would "
                          "they need?"))
        steps += wan_steps(s, lab, progress)
    return steps


def _wan_run(s: Settings, lab: Lab, wan: Wan, folder: str, window: int, associations: int,
             progress: Progress) -> tuple[Row, RunResult]:
    result = execute(RunOptions(topology=None, lab=lab.name, objects=s.wan_objects,
                                out=s.out / folder, wan=wan, window=window,
                                associations=associations), progress)
    return _store(result), result


def wan_steps(s: Settings, lab: Lab, progress: Progress) -> list[Step]:
    """Steps 7 and 8: the same study with and without the delay, one request at a time, then
    with a window of 16 and with 4 associations."""
    name, half = lab.name, s.delay_ms / 2
    delay = Wan(f"delay={half:g}ms", WanProfile(delay_ms=half), WanProfile(delay_ms=half))
    progress("step 7: the WAN without and with delay, one C-STORE at a time")
    base, _ = _wan_run(s, lab, Wan(), "7-wan/none", 1, 1, progress)
    slow, result = _wan_run(s, lab, delay, "7-wan/delay", 1, 1, progress)
    rtt = float(result.wan.get("fidelity", {}).get("rtt_measured_ms", 0.0))
    run = f"teleradlab run --lab {name} --objects {s.wan_objects}"
    step7 = Step(f"Add {s.delay_ms:g} ms of round trip", "With one C-STORE outstanding, every "
                 "object waits for its response: the study crawls, whatever the bandwidth.",
                 [f"{run} --wan none --window 1", f"{run} --wan delay={half:g}ms --window 1",
                  f"teleradlab watch {name}   (in another terminal, during the run)"],
                 [("C-STORE without delay", _rate(base)),
                  (f"C-STORE with {s.delay_ms:g} ms", _rate(slow)),
                  ("round trip measured", f"{rtt:.1f} ms ({result.wan.get('path') or 'none'} "
                   "emulator)"),
                  ("throughput kept", f"{100 * slow.mbytes_per_s / base.mbytes_per_s:.0f} %")],
                 [], "How many objects per second can one association store when each "
                 "waits a round trip for its response?")
    progress("step 8: the window, then parallel associations")
    windowed, _ = _wan_run(s, lab, delay, "8-window/window", 16, 1, progress)
    parallel, _ = _wan_run(s, lab, delay, "8-window/associations", 1, 4, progress)
    step8 = Step("Bring the throughput back", "The Asynchronous Operations Window (PS3.7 "
                 "D.3.3.3) keeps several C-STOREs in flight on one association; parallel "
                 "associations do it with several connections.",
                 [f"{run} --wan delay={half:g}ms --window 16",
                  f"{run} --wan delay={half:g}ms --window 1 --associations 4",
                  f"teleradlab down {name}"],
                 [("one at a time", _rate(slow)), ("window of 16", _rate(windowed)),
                  ("4 associations", _rate(parallel))], [],
                 "Why does the PACS have to agree to the window, and what does it risk by "
                 "granting a large one?")
    return [step7, step8]


def ipsec_step(s: Settings, progress: Progress) -> Step:
    """Step 4: the same study through the IPsec tunnel."""
    with _lab(s, "ipsec", "ipsec", progress) as (lab, _):
        progress("step 4: a study through IPsec, captured on the WAN")
        result, cap = _captured_run(s, lab, "4-ipsec", progress)
        pcap, row = cap.files["wan"], _store(result)
        summary = capture.summarize(pcap, cap.tshark)
        return Step("Protect the WAN with IPsec", "The gateways wrap every packet between the "
                    "sites in ESP: on the WAN only the gateways' addresses and ESP remain.",
                    [f"teleradlab up {TOPOLOGY} --name {lab.name} --security ipsec",
                     _capture_cmd(s, lab, "4-ipsec"), _open(s, pcap, cap, "-q", "-z", "io,phs"),
                     _open(s, pcap, cap), f"teleradlab down {lab.name}"],
                    [("C-STORE", _rate(row)), ("ESP", f"{row.cipher} ({row.esp_path})"),
                     *_seen(summary),
                     ("IP frames outside IPsec (neither ESP nor IKE)", str(summary.outside_ipsec)),
                     ("IPv6 link-local control frames (never routed)", str(summary.link_local))],
                    [_rel(s, pcap)],
                    "What can someone on the WAN still learn about the two hospitals from "
                    "this capture?")


def tls_steps(s: Settings, progress: Progress) -> list[Step]:
    """Steps 5 and 6: the same study over DICOM TLS, as the wire saw it and decrypted."""
    with _lab(s, "tls", "tls", progress) as (lab, _):
        progress("step 5: a study over DICOM TLS, captured on the WAN")
        result, cap = _captured_run(s, lab, "5-tls", progress)
    row = _store(result)
    if not cap.secrets_embedded:
        raise LabError("the TLS run logged no TLS secrets: the decryption step cannot be shown")
    pcap, wire = cap.files["wan"], cap.wire["wan"]
    capture_cmd = _capture_cmd(s, lab, "5-tls")
    step5 = Step("Protect the association with DICOM TLS", "The DICOM programs speak TLS "
                 "end to end (PS3.15 Annex B, port 2762): the WAN sees TCP and TLS records, "
                 "the addresses of the modality and the PACS, and nothing of the DICOM.",
                 [f"teleradlab up {TOPOLOGY} --name {lab.name} --security tls", capture_cmd,
                  _open(s, wire, cap, "-Y", "tls"), _open(s, wire, cap)],
                 [("C-STORE", _rate(row)), ("TLS", f"{row.tls_version} {row.cipher}"),
                  *_seen(capture.summarize(wire, cap.tshark))], [_rel(s, wire)],
                 "IPsec or TLS: which one hides more from the WAN, and which one protects "
                 "the study inside each hospital's LAN too?")
    step6 = Step("Decrypt with the keys", "The SCU wrote its TLS secrets (NSS key log) while "
                 "the capture ran, and the capture embedded them in the file: whoever holds "
                 "the keys reads everything again.",
                 [_open(s, pcap, cap), f"teleradlab down {lab.name}"],
                 _seen(capture.summarize(pcap, cap.tshark)), [_rel(s, pcap)],
                 "Who holds these keys in a real deployment, and what must never leave "
                 "them?")
    return [step5, step6]


def run_lesson(s: Settings, progress: Progress = no_progress) -> Lesson:
    """Run every step (about a minute here) and write ``OUT/lesson.json``."""
    lifecycle.require_root()
    s = Settings(s.out.absolute(), s.prefix, s.objects, s.wan_objects, s.delay_ms)
    for kind in ("clear", "ipsec", "tls"):
        name = f"{s.prefix}-{kind}"
        if name in lifecycle.running():
            raise LabError(f"a lab named {name!r} is running; the lesson builds its own "
                           f"(take it down, or choose another --name)")
    s.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lesson = Lesson(s.prefix, s.objects, s.wan_objects, s.delay_ms,
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    clear = clear_steps(s, progress)
    lesson.steps = [*clear[:3], ipsec_step(s, progress), *tls_steps(s, progress), *clear[3:]]
    lesson.seconds = round(time.monotonic() - start, 1)
    files.write_text(s.out / LESSON_FILE, json.dumps(asdict(lesson), indent=2))
    return lesson


def read_lesson(folder: Path) -> Lesson:
    """The lesson ``run_lesson`` wrote in ``folder``; LabError naming the file if absent or
    not a lesson."""
    path = folder / LESSON_FILE
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        steps = [Step(**{**st, "measured": [tuple(m) for m in st["measured"]]})
                 for st in doc.pop("steps")]
        return Lesson(**doc, steps=steps)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise LabError(f"{path}: not a lesson written by teleradlab lesson ({exc})") from None
