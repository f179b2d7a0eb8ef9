"""``teleradlab run``: echo -> store -> find -> move between the sites, every transfer timed and
verified, written to tidy results.

The DICOM programs run inside the nodes (``python -m lab.dicom.scu`` on the modality, the
verifier on the receiving node); the orchestrator only starts them and collects their JSON.
Integrity and authenticity follow the paper's first measure: the sending site signs a manifest of
SHA-256 digests with its key from the lab CA; the receiving site recomputes the digests and checks
the signature, after C-STORE at the PACS and after C-MOVE back at the modality. With
``--object-security`` the objects themselves are signed and/or de-identified at the sending site
and verified and re-identified at the receiving sites (PS3.15 Annexes C and E), and with
``--courier`` carried on secure media too (Annex D): :mod:`lab.study.objects`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab import topology as topology_file
from lab.backends.base import Backend, Lab, Progress, no_progress
from lab.dicom import MODALITY_AE, scu
from lab.dicom.data.generate import generate_study, load_folder
from lab.dicom.data.integrity import build_manifest, sign_manifest, write_signed
from lab.dicom.reports import ReportError, parse_output
from lab.errors import LabError
from lab.host import programs
from lab.model.names import DATA_ROOT, RUN_ROOT
from lab.model.routing import probes
from lab.model.topology import Family, Role, Topology, Wan
from lab.model.wan import as_dict
from lab.runtime import lifecycle
from lab.runtime.services import tls_arguments
from lab.security.ipsec.tunnel import IpsecState, read_state, sa_bytes, tunnel_probes
from lab.security.pki.lab_pki import LabPki, ensure_lab_pki
from lab.security.plan import Machine
from lab.study import faults, objects
from lab.study.record import write_record
from lab.study.results import Row, wan_columns
from lab.wan import apply as wan_apply
from lab.wan import measure, userspace


@dataclass(frozen=True)
class RunOptions:
    topology: Path | None
    lab: str | None
    modalities: tuple[str, ...] = ("CT",)
    pdu: int = 0
    repeat: int = 1
    out: Path = Path("results")
    input_dir: Path | None = None
    objects: int | None = None  # objects per generated study (None: the realistic default)
    seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)  # topology sections (--security)
    wan: Wan | None = None  # --wan: replaces the topology's (or the running lab's) WAN profile
    backend: str | Backend = "netns"  # for a lab this run builds (lab.backends.REGISTRY)
    root: Path = RUN_ROOT  # where lab records live (tests use their own)
    data_root: Path = DATA_ROOT
    machine: Machine | None = None  # what the security plan may use (default: this machine)
    window: int = scu.WINDOW  # C-STORE requests outstanding proposed (lab.dicom.scu --window)
    associations: int = 1  # associations a C-STORE spreads the study over
    #: Storage Commitment after each C-STORE (PS3.4 Annex J): on by default, since both ends
    #: are lab programs; and the retries of a broken association (lab.dicom.sender).
    commit: bool = True
    retries: int = 3
    retry_backoff: float = 0.5
    object_security: str = "none"  # none | sign | deid | sign+deid (lab.study.objects)
    courier: bool = False  # also carry each study on secure media (a 'courier' row)
    fault: faults.Scheduled | None = None  # injected during each C-STORE (lab.study.faults)


@dataclass(frozen=True)
class StudyData:
    modality: str
    study_uid: str
    files: tuple[Path, ...]
    manifest: Path  # the sender's signed manifest of these files, as they travel
    originals: Path | None = None  # of the originals, when object security changed them


@dataclass
class RunResult:
    out: Path
    rows: list[Row] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    wan: dict[str, Any] = field(default_factory=dict)  # profile, path, fidelity (run.json)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)


def routed_families(lab: Lab, src: str, dst: str) -> list[Family]:
    """Families in which ``src`` reaches ``dst``: without a tunnel, or through the IPsec tunnel
    of the lab's plan (the mixed topologies' site family crosses the WAN only that way)."""
    fams = {p.family for p in probes(lab.topology.nodes)
            if {p.source, p.destination} == {src, dst}}
    if lab.plan.ipsec is not None:
        fams |= {p.family for p in tunnel_probes(lab.topology, lab.plan.ipsec)
                 if {p.source, p.destination} == {src, dst}}
    return [f for f in Family if f in fams]


def _node(topology: Topology, role: Role) -> str:
    for node in topology.nodes:
        if node.role is role:
            return node.name
    raise LabError(f"topology {topology.name} has no {role.value} node")


def prepare_studies(opts: RunOptions, pki: LabPki, sender: str) -> tuple[list[StudyData],
                                                                         list[tuple[Path, str]]]:
    """Generate (or collect) the studies and write each one's signed manifest."""
    data_dir = opts.out / "data"
    studies: list[tuple[str, str, tuple[Path, ...]]] = []
    skipped: list[tuple[Path, str]] = []
    if opts.input_dir is not None:
        found, skipped = load_folder(opts.input_dir)
        if not found:
            raise LabError(f"no usable DICOM file in {opts.input_dir}")
        studies += _group_by_study(found)
    else:
        for modality in opts.modalities:
            st = generate_study(modality, data_dir / modality, seed=opts.seed,
                                objects=opts.objects)
            studies.append((modality, st.study_instance_uid, st.files))
    out = []
    for modality, uid, files in studies:
        manifest = build_manifest(files, sender=sender, study_uid=uid)
        signed = sign_manifest(manifest, pki.signer(sender).key_path,
                               pki.signer(sender).cert_path)
        path = opts.out / "manifests" / f"{modality}-{uid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_signed(signed, path)
        out.append(StudyData(modality, uid, tuple(files), path))
    return out, skipped


def _group_by_study(files: Sequence[Path]) -> list[tuple[str, str, tuple[Path, ...]]]:
    from pydicom import dcmread

    groups: dict[tuple[str, str], list[Path]] = {}
    for f in files:
        ds = dcmread(f, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "Modality"])
        key = (str(ds.get("Modality", "OT")), str(ds.get("StudyInstanceUID", "unknown")))
        groups.setdefault(key, []).append(f)
    return [(m, uid, tuple(fs)) for (m, uid), fs in sorted(groups.items())]


class Runner:
    """Runs the DICOM programs of one lab and turns their JSON into rows."""

    def __init__(self, lab: Lab, opts: RunOptions, pki: LabPki) -> None:
        self.lab = lab
        self.opts = opts
        self.pki = pki
        self.topology = lab.topology
        self.modality = _node(self.topology, Role.MODALITY)
        self.pacs = _node(self.topology, Role.PACS)
        self.paths = lab.paths
        self.ipsec: IpsecState | None = None
        self.tls = tls_arguments(lab, self.modality, client=True)
        if lab.plan.ipsec is not None:
            self.ipsec = read_state(lab.paths)
            if self.ipsec is None:
                raise LabError(f"lab {lab.name} asks for IPsec but has no record of its SAs "
                               "(was it built by this version?)")
        self.wan: dict[str, Any] = {}  # the Row's wan_* columns

    def program(self, node: str, module: str, kind: str, args: Sequence[str]) -> dict[str, Any]:
        """Run a node program and read its report (lab.dicom.reports: every field checked), as
        the document it printed."""
        argv = [sys.executable, "-m", module, *args]
        res = self.lab.exec(node, argv, check=False, timeout=3600)
        try:
            return parse_output(kind, res.stdout).document()
        except ReportError as exc:
            raise LabError(f"{module} in {node} failed (status {res.returncode}):\n"
                           f"{res.stderr.strip()[-2000:]}\n({exc})") from None

    def scu(self, family: Family, operation: str, *args: str) -> dict[str, Any]:
        """Run the SCU in the modality; with IPsec, the ESP bytes the SA counted meanwhile."""
        host = self.topology.node(self.pacs).addresses(family)[0].ip
        before = sa_bytes(self.lab) if self.ipsec else 0
        doc = self.program(self.modality, "lab.dicom.scu", operation,
                            [operation, f"--host={host}", f"--port={self.lab.plan.pacs_port}",
                             f"--pdu={self.opts.pdu}", *self.tls, *args])
        if self.ipsec:
            doc["sa_bytes"] = sa_bytes(self.lab) - before
        return doc

    def protection(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The Row fields that say what protected the path."""
        plan = self.lab.plan
        out: dict[str, Any] = {"security_profile": plan.profile}
        if plan.ipsec is not None and self.ipsec is not None:
            out |= {"esp_path": plan.ipsec.esp_path.value,
                    "handshake_seconds": self.ipsec.setup_seconds,
                    "cipher": self.ipsec.esp_algorithms, "sa_bytes": int(doc.get("sa_bytes", 0))}
        if plan.tls is not None:
            out |= {"handshake_seconds": round(float(doc.get("handshake_seconds") or 0.0), 6),
                    "tls_version": str(doc.get("tls_version") or ""),
                    "cipher": str(doc.get("cipher") or "")}
        return out

    def verify(self, node: str, store: Path, study: StudyData) -> dict[str, Any]:
        return self.program(node, "lab.dicom.verify", "verify",
                             [f"--manifest={study.manifest}", f"--ca={self.pki.ca_cert}",
                              f"--store={store}", f"--study={study.study_uid}"])

    def row(self, family: Family | None, rep: int, op: str, study: StudyData | None,
            doc: dict[str, Any], verified: str = "", objects: int = 0, size: int = 0,
            costs: Mapping[str, float] | None = None) -> Row:
        """One row; ``family`` None for the courier; ``costs`` the object-security columns."""
        seconds = float(doc.get("seconds", 0.0))
        detail = doc.get("error") or json.dumps(
            {k: v for k, v in doc.items() if k in ("status", "statuses", "failed", "completed",
                                                   "warning", "matches_found", "problems",
                                                   "commit_error", "breaks")})
        return Row(
            topology=self.topology.name, family=family.value if family else "",
            backend=self.lab.backend.name, object_security=self.opts.object_security,
            security=self.lab.plan.mode.value, operation=op,
            modality=study.modality if study else "", pdu=self.opts.pdu, repetition=rep,
            objects=objects, bytes=size, seconds=round(seconds, 6),
            mbytes_per_s=round(size / seconds / 1e6, 3) if seconds > 0 and size else 0.0,
            setup_seconds=round(float(doc.get("setup_seconds", 0.0)), 6), verified=verified,
            ok=bool(doc.get("ok")) and verified != "no", detail=str(detail),
            window=int(doc.get("window", 1)), associations=int(doc.get("associations", 1)),
            retries=int(doc.get("retries", 0)),
            recover_seconds=round(float(doc.get("recover_seconds") or 0.0), 6),
            committed=int(doc.get("committed", 0)), complete=bool(doc.get("complete")),
            **self.wan, **self.protection(doc),
            **{k: round(v, 6) for k, v in (costs or {}).items()},  # type: ignore[arg-type]
        )


def _checked(r: Runner, node: str, store: Path, study: StudyData,
             doc: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, float]]:
    """The transport check (signed manifest) and the object-security check of what ``node``
    received: the row's document with every problem, its verdict, and the receiver's costs."""
    check = r.verify(node, store, study)
    objsec = objects.check(r, node, store, study)
    problems = [*check.get("problems", []), *objsec.get("problems", [])]
    ok = bool(check.get("ok")) and bool(objsec.get("ok", True))
    costs: dict[str, float] = {k: float(objsec[k]) for k in ("verify_seconds", "reid_seconds")
                               if k in objsec}
    return {**doc, "problems": problems}, "yes" if ok else "no", costs


def run_study(r: Runner, family: Family, rep: int, original: StudyData) -> list[Row]:
    """Protect the study (object security), C-STORE it, verify at the PACS, C-FIND it, C-MOVE
    it back, verify at the modality."""
    study, costs = objects.protect(r, original, f"{rep}-{family.value}")
    size = sum(f.stat().st_size for f in study.files)
    rows = []
    store = r.paths.node_data(r.pacs) / "store"
    with faults.during(r.lab, r.opts.fault, store) as fault:
        doc = r.scu(family, "store", f"--window={r.opts.window}",
                    f"--associations={r.opts.associations}", f"--retries={r.opts.retries}",
                    f"--retry-backoff={r.opts.retry_backoff}",
                    *(["--commit"] if r.opts.commit else []), *map(str, study.files))
    doc, verified, received = _checked(r, r.pacs, store, study, doc)
    rows.append(fault.apply(r.row(family, rep, "store", study, doc, verified, len(study.files),
                                  size, costs | received)))
    doc = r.scu(family, "find", "--level=STUDY", f"--key=StudyInstanceUID={study.study_uid}",
                "--key=PatientName=", "--key=NumberOfStudyRelatedInstances=")
    found = len(doc.get("matches", []))
    doc = {**doc, "matches_found": found, "ok": bool(doc.get("ok")) and found == 1}
    rows.append(r.row(family, rep, "find", study, doc, objects=found))
    dest = f"{MODALITY_AE}-V{family.version}"
    doc = r.scu(family, "move", "--level=STUDY", f"--key=StudyInstanceUID={study.study_uid}",
                f"--dest={dest}")
    doc, verified, received = _checked(r, r.modality, r.paths.node_data(r.modality) / "received",
                                       study, doc)
    doc["complete"] = doc.get("completed") == len(study.files) and doc.get("failed") == 0
    rows.append(r.row(family, rep, "move", study, doc, verified, int(doc.get("completed", 0)),
                      size, received))
    return rows


def execute(opts: RunOptions, progress: Progress = no_progress,
            on_row: Callable[[Row], None] | None = None) -> RunResult:
    """Bring the lab up (or use ``opts.lab``), run, verify, write results, stop what we started."""
    if opts.topology is None and opts.lab is None:
        raise LabError("name a topology, or a running lab with --lab")
    objects.steps(opts.object_security)  # a bad value fails before any lab comes up
    opts = replace(opts, out=opts.out.absolute())  # nodes get absolute paths
    own = opts.lab is None
    started = time.time()
    lab = (lifecycle.up(opts.topology, backend=opts.backend, progress=progress,
                        overrides=opts.overrides, wan=opts.wan, measured=True, root=opts.root,
                        data_root=opts.data_root, machine=opts.machine)
           if own and opts.topology else _attach(opts))
    if not own and opts.overrides:
        _same_security(lab, opts)
    result = RunResult(opts.out)
    error = ""
    try:
        faults.check(lab, opts.fault)  # a fault this lab cannot take fails before any transfer
        opts.out.mkdir(parents=True, exist_ok=True)
        families = routed_families(lab, _node(lab.topology, Role.MODALITY),
                                   _node(lab.topology, Role.PACS))
        if not families:
            raise LabError("the modality cannot reach the PACS in any family: "
                           + " ".join(lab.topology.notes))
        pki = ensure_lab_pki(lab.paths, lab.topology)
        progress("preparing studies and signed manifests")
        studies, result.skipped = prepare_studies(opts, pki, _site_of(lab.topology, Role.MODALITY))
        runner = Runner(lab, opts, pki)
        runner.wan = _wan_fidelity(lab, opts, result, progress, own)
        for rep in range(1, opts.repeat + 1):
            for family in families:
                progress(f"repetition {rep}/{opts.repeat}, {family.label}: C-ECHO")
                new = [runner.row(family, rep, "echo", None, runner.scu(family, "echo"))]
                for study in studies:
                    progress(f"repetition {rep}/{opts.repeat}, {family.label}: {study.modality} "
                             f"({len(study.files)} objects)")
                    new += run_study(runner, family, rep, study)
                    _wan_alive(lab, runner)
                if opts.courier and family is families[-1]:
                    progress(f"repetition {rep}/{opts.repeat}: the courier (secure media)")
                    new += [objects.courier(runner, rep, study) for study in studies]
                for row in new:
                    if on_row:
                        on_row(row)
                result.rows += new
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if opts.out.is_dir():
            write_record(opts, lab, result, started, error)
        if own:
            progress("taking the lab down")
            lifecycle.down(lab.name, lab.paths.root, lab.backend, lab.paths.data_root)
    return result


def _attach(opts: RunOptions) -> Lab:
    """The running lab of ``--lab``, once every program this run needs on it is installed
    (the WAN it will have: ``--wan``, else the one applied)."""
    lab = lifecycle.attach(opts.lab, opts.root, opts.data_root,
                           opts.backend if isinstance(opts.backend, Backend) else None)
    wan = opts.wan if opts.wan is not None else wan_apply.read_state(lab.paths).wan
    programs.require(lifecycle.lab_needs(lab.topology, lab.backend, wan, measured=True))
    return lab


def _site_of(topology: Topology, role: Role) -> str:
    return str(topology.node(_node(topology, role)).site)


def _same_security(lab: Lab, opts: RunOptions) -> None:
    """--security with --lab: the running lab must already be protected that way (security is
    set up when a lab comes up, not per run)."""
    text = lab.paths.topology_copy.read_text(encoding="utf-8")
    wanted = topology_file.parse(text, lab.topology.source, opts.overrides).security
    if wanted != lab.topology.security:
        raise LabError(f"lab {lab.name} runs with security {lab.plan.label!r}, not "
                       f"{wanted.label!r}; security is chosen when a lab comes up")


def _wan_fidelity(lab: Lab, opts: RunOptions, result: RunResult, progress: Progress,
                  own: bool) -> dict[str, Any]:
    """Apply ``--wan`` to a running lab, check the emulator lives, measure fidelity; return the
    WAN columns every row records (profile, path and its numbers)."""
    if opts.wan is not None and not own:
        progress(f"impairing the WAN ({opts.wan.name or 'none'})")
        wan_apply.apply(lab, opts.wan)
    state = wan_apply.check(lab)
    progress("measuring the WAN's fidelity (ping" + (", iperf3)" if state.path else ")"))
    # unimpaired: the RTT of the bare path is enough (and takes half a second)
    fidelity = measure.fidelity(lab, state.wan, pings=20 if state.path else 10,
                                rate=bool(state.path))
    wan_apply.record_fidelity(lab.paths, fidelity)
    result.wan = {"profile": as_dict(state.wan), "path": state.path, "why": state.why,
                  "fidelity": fidelity}
    if not state.wan.impaired:
        return {}
    rates = (state.wan.forward.rate_mbit, state.wan.reverse.rate_mbit)
    if state.path == "userspace" and any(r == 0 or r > userspace.CAPACITY_MBIT for r in rates):
        result.notes.append(
            f"the WAN profile {state.wan.name!r} asks more than the userspace emulator is known "
            f"to carry ({userspace.CAPACITY_MBIT:g} Mbit/s on a busy 2-core VM; scripts/bench "
            "--only wan measures this machine): its rate may be limited by the emulator")
    return wan_columns(state.wan, state.path)


def _wan_alive(lab: Lab, runner: Runner) -> None:
    """A dead emulator fails the run (its WAN is cut, never silently unimpaired)."""
    if runner.wan.get("wan_path"):
        wan_apply.check(lab)
