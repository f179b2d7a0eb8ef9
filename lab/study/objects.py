"""The object security of a run (``--object-security``, PS3.15 Annexes C and E) and the courier
(secure media, Annex D), as steps the orchestrator starts in the nodes and reads back.

Every step is done by ``python -m lab.dicom.objsec`` inside a node, with the site's RSA object
credential from the lab CA (:meth:`LabPki.objects`):

- before each C-STORE, the modality's site protects a fresh copy of the study (de-identified for
  the PACS's site, and/or signed by its own key) into its node's data directory (``sent/``:
  shared with the host on every backend), and signs a manifest of the protected objects, which
  the transport check of :mod:`lab.study.run` then verifies as usual;
- after C-STORE the PACS's site verifies every signature, re-identifies every object with its key
  and compares the result with the signed manifest of the originals (exact restoration);
- after C-MOVE the modality's site verifies every signature again (it is no recipient of the
  encrypted originals: those were sealed for the reading site);
- the courier carries the protected study on a secure file-set (DICOMDIR of CMS files) from the
  modality's site to the PACS's, exported, imported, verified and timed like a transfer: one row
  of operation ``courier`` per study and repetition (family '': no network is involved).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.dicom.data.integrity import build_manifest, sign_manifest, write_signed
from lab.dicom.objsec import MODES, steps
from lab.errors import LabError
from lab.study.results import Row

if TYPE_CHECKING:
    from lab.study.run import Runner, StudyData

__all__ = ["MODES", "check", "courier", "protect", "steps"]

PROGRAM = "lab.dicom.objsec"


def _sites(r: Runner) -> tuple[str, str]:
    """(sending site, receiving site): the modality's and the PACS's."""
    topo = r.topology
    return str(topo.node(r.modality).site), str(topo.node(r.pacs).site)


def _credential_args(r: Runner, site: str) -> list[str]:
    cred = r.pki.objects(site)
    return [f"--key={cred.key_path}", f"--cert={cred.cert_path}"]


def _signed_manifest(r: Runner, files: tuple[Path, ...], study_uid: str, name: str) -> Path:
    """The sending site's signed manifest of ``files``: what the transport check verifies."""
    sender, _ = _sites(r)
    signer = r.pki.signer(sender)
    manifest = build_manifest(files, sender=sender, study_uid=study_uid)
    path = r.opts.out / "manifests" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_signed(sign_manifest(manifest, signer.key_path, signer.cert_path), path)
    return path


def protect(r: Runner, study: StudyData, label: str) -> tuple[StudyData, dict[str, float]]:
    """The study as it travels under ``r.opts.object_security`` (``study`` itself for none),
    with the sender's costs (sign_seconds, deid_seconds) for the row."""
    mode = r.opts.object_security
    sign, deid = steps(mode)
    if not (sign or deid):
        return study, {}
    sender, receiver = _sites(r)
    # in the lab's data directory, which every node shares with the host on every backend
    out = r.paths.node_data(r.modality) / "sent" / label / study.modality
    args = ["protect", f"--mode={mode}", f"--out={out}", *_credential_args(r, sender),
            f"--recipient={r.pki.objects(receiver).cert_path}", *map(str, study.files)]
    doc = r.program(r.modality, PROGRAM, "objsec-protect", args)
    if not doc.get("ok"):
        raise LabError(f"{mode} of the {study.modality} study at site {sender} failed: "
                       f"{doc.get('error')}")
    files = tuple(Path(f) for f in doc["files"])
    uid = str(doc["study_uid"])
    manifest = _signed_manifest(r, files, uid, f"{study.modality}-{uid}-{label}")
    sent = replace(study, study_uid=uid, files=files, manifest=manifest,
                   originals=study.manifest)
    return sent, {k: float(doc.get(k, 0.0)) for k in ("sign_seconds", "deid_seconds")}


def check(r: Runner, node: str, store: Path, study: StudyData) -> dict[str, Any]:
    """Verify (and, at the PACS's site, re-identify) the study as ``node`` received it; {} when
    the run has no object security."""
    mode = r.opts.object_security
    if mode == "none":
        return {}
    args = ["check", f"--mode={mode}", f"--store={store}", f"--study={study.study_uid}",
            f"--ca={r.pki.ca_cert}"]
    if node == r.pacs and "deid" in mode and study.originals is not None:
        _, receiver = _sites(r)
        args += [*_credential_args(r, receiver), f"--originals={study.originals}",
                 f"--reid-out={r.paths.node_data(node) / 'reidentified' / study.study_uid}"]
    return r.program(node, PROGRAM, "objsec-check", args)


def courier(r: Runner, rep: int, study: StudyData) -> Row:
    """Carry the (protected) study on secure media from the modality's site to the PACS's:
    export there, import here, verified against the sender's manifest; one timed row."""
    sent, costs = protect(r, study, f"{rep}-courier")
    sender, receiver = _sites(r)
    medium = r.paths.node_data(r.modality) / "courier" / str(rep) / sent.study_uid  # the disc
    shutil.rmtree(medium, ignore_errors=True)  # a blank one: an earlier run on this lab wrote it
    made = r.program(r.modality, PROGRAM, "objsec-export", [
        "export", f"--out={medium}", *_credential_args(r, sender),
        f"--recipient={r.pki.objects(receiver).cert_path}", *map(str, sent.files)])
    if not made.get("ok"):
        return r.row(None, rep, "courier", sent, made, "no", len(sent.files), costs=costs)
    dest = r.paths.node_data(r.pacs) / "courier" / str(rep) / sent.study_uid
    got = r.program(r.pacs, PROGRAM, "objsec-import", [
        "import", f"--fileset={medium}", f"--out={dest}", *_credential_args(r, receiver),
        f"--ca={r.pki.ca_cert}", f"--manifest={sent.manifest}"])
    costs |= {"export_seconds": float(made.get("export_seconds", 0.0)),
              "import_seconds": float(got.get("import_seconds", 0.0))}
    doc = {**got, "seconds": costs["export_seconds"] + costs["import_seconds"]}
    return r.row(None, rep, "courier", sent, doc, "yes" if got.get("ok") else "no",
                 int(got.get("objects", 0)), int(made.get("bytes", 0)), costs=costs)
