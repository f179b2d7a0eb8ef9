"""Object security of a run, done inside the nodes (PS3.15 Annexes C, D and E):
``python -m lab.dicom.objsec protect | check | export | import ...``.

- ``protect`` (at the sending site, before C-STORE): de-identify every object of a study for the
  receiving site's certificate (Basic Application Level Confidentiality Profile, the originals
  in Encrypted Attributes Sequence, :mod:`lab.dicom.data.deid`) and/or sign it with the sending
  site's key (Digital Signatures Sequence, Base RSA profile over every signable attribute,
  :mod:`lab.dicom.data.dsig`). With both, de-identification comes first and the signature covers
  the de-identified object with its Encrypted Attributes Sequence, so that any holder (an archive
  included) can check it without being able to read the identities, and a changed ciphertext is
  detected like a changed pixel.
- ``check`` (at a receiving site, after C-STORE or C-MOVE): verify every signature (signature,
  chain to the lab CA, every signed element) and, where this site holds the key, re-identify
  every object and compare the result with the sender's signed manifest of the originals: equal
  SHA-256 digests of the datasets mean the identities came back exactly.
- ``export`` / ``import``: the courier, a study carried on secure media (a DICOMDIR file-set of
  secure files, :mod:`lab.dicom.data.media`) instead of the network; the import verifies and
  decrypts every file, then checks the objects against the sender's manifest.

Each prints one JSON document, its report of :mod:`lab.dicom.reports` (the times of each step,
summed over the study's objects and including reading and writing the files, and every problem
naming the object and the element or the reason); exit status 1 unless everything passed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom.dataset import Dataset

from lab.dicom.archive.schema import study_paths
from lab.dicom.data import dsig
from lab.dicom.data.deid import Deidentifier, deidentify, read, reidentify, write_atomic
from lab.dicom.data.integrity import Status, check_objects, read_signed, verify_manifest
from lab.dicom.data.media import MediaError, export_study, import_fileset
from lab.dicom.reports import OBJSEC_REPORTS
from lab.errors import LabError
from lab.security.pki.authority import load_certificate, load_key_pair

#: The choices of ``object_security`` (run --object-security, sweep matrix.object_security).
MODES = ("none", "sign", "deid", "sign+deid")


def steps(mode: str) -> tuple[bool, bool]:
    """(sign, de-identify) for an ``object_security`` value."""
    if mode not in MODES:
        raise LabError(f"object security {mode!r}: one of {', '.join(MODES)}")
    return "sign" in mode, "deid" in mode


def protect(files: Sequence[Path], out: Path, mode: str, key: Path, cert: Path,
            recipient: Path | None, profile: str = "base-rsa") -> dict[str, Any]:
    """Write the protected copy of each of ``files`` into ``out`` (same names)."""
    sign, deid = steps(mode)
    private, certificate = _rsa_pair(key, cert)
    session = None
    if deid:
        if recipient is None:
            raise LabError("de-identification needs the receiving site's certificate")
        session = Deidentifier((load_certificate(recipient),))
    times = {"sign_seconds": 0.0, "deid_seconds": 0.0}
    written, study_uid = [], ""
    for path in files:
        ds = read(path)
        if session is not None:
            started = time.perf_counter()
            ds = deidentify(ds, session)
            times["deid_seconds"] += time.perf_counter() - started
        if sign:
            started = time.perf_counter()
            dsig.sign(ds, private, certificate, profile)
            times["sign_seconds"] += time.perf_counter() - started
        target = out / path.name
        write_atomic(ds, target)
        written.append(str(target))
        study_uid = str(ds.get("StudyInstanceUID", ""))
    return {"ok": True, "objects": len(written), "files": written, "study_uid": study_uid,
            **_rounded(times)}


def check(store: Path, study: str, mode: str, ca: Path, key: Path | None = None,
          cert: Path | None = None, originals: Path | None = None,
          reid_out: Path | None = None) -> dict[str, Any]:
    """Verify the signatures of the study's objects in ``store`` and, with ``key``, re-identify
    them into ``reid_out`` and compare them with the signed manifest ``originals``."""
    sign, deid = steps(mode)
    files = study_paths(store, study)
    problems: list[dict[str, Any]] = []
    if not files:
        problems.append({"status": "missing", "detail": f"no object of study {study} in {store}"})
    times = {"verify_seconds": 0.0, "reid_seconds": 0.0}
    datasets = [(path, read(path)) for path in files]
    if sign:
        started = time.perf_counter()
        for path, ds in datasets:
            problems += _signature_problems(path, ds, ca)
        times["verify_seconds"] = time.perf_counter() - started
    reidentified = 0
    if deid and key is not None and cert is not None and reid_out is not None:
        private, certificate = _rsa_pair(key, cert)
        started = time.perf_counter()
        restored = []
        for path, ds in datasets:
            try:
                original = reidentify(_unsigned(ds) if sign else ds, private, certificate)
            except LabError as exc:
                problems.append({"sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
                                 "path": str(path), "status": "reid", "detail": str(exc)})
                continue
            target = reid_out / f"{original.SOPInstanceUID}.dcm"
            write_atomic(original, target)
            restored.append(target)
        times["reid_seconds"] = time.perf_counter() - started
        reidentified = len(restored)
        if originals is not None:
            problems += _manifest_problems(originals, ca, restored, "re-identified")
    return {"ok": not problems, "objects": len(files), "reidentified": reidentified,
            "problems": problems, **_rounded(times)}


def export(files: Sequence[Path], root: Path, key: Path, cert: Path,
           recipient: Path) -> dict[str, Any]:
    """The courier's first half: the study as a secure file-set in ``root``."""
    private, certificate = _rsa_pair(key, cert)
    started = time.perf_counter()
    made = export_study(files, root, key=private, certificate=certificate,
                        recipients=[load_certificate(recipient)])
    return {"ok": True, "objects": len(made.files), "bytes": made.total_bytes,
            "export_seconds": round(time.perf_counter() - started, 6)}


def import_(root: Path, dest: Path, key: Path, cert: Path, ca: Path,
            manifest: Path) -> dict[str, Any]:
    """The courier's second half: verify, decrypt and import the file-set, then check the
    objects against the sender's signed manifest of what it exported."""
    private, certificate = _rsa_pair(key, cert)
    started = time.perf_counter()
    try:
        imported = import_fileset(root, dest, key=private, certificate=certificate,
                                  trusted=[load_certificate(ca)])
    except MediaError as exc:
        return {"ok": False, "objects": 0, "import_seconds": 0.0, "error": str(exc),
                "problems": [{"status": "refused", "detail": line} for line in exc.refused]}
    seconds = time.perf_counter() - started
    problems = _manifest_problems(manifest, ca, list(imported.files), "imported")
    return {"ok": not problems, "objects": len(imported.files),
            "signers": list(imported.signers),
            "import_seconds": round(seconds, 6), "problems": problems}


def _unsigned(ds: Dataset) -> Dataset:
    """``ds`` (changed in place: it is the receiver's working copy, read for this check) without
    the signatures made over its de-identified form, checked just before: they belong to the
    object on the road, not to the original, whose own signatures (if it had any) come back from
    its Encrypted Attributes Sequence (Table E.1-1 removes them)."""
    for keyword in ("DigitalSignaturesSequence", "MACParametersSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def _signature_problems(path: Path, ds: Dataset, ca: Path) -> list[dict[str, Any]]:
    uid = str(ds.get("SOPInstanceUID", ""))
    results = dsig.verify(ds, [ca])
    if not results:
        return [{"sop_instance_uid": uid, "path": str(path), "status": "signature",
                 "detail": f"object {uid} carries no digital signature (FFFA,FFFA)"}]
    return [{"sop_instance_uid": uid, "path": str(path), "status": "signature",
             "detail": str(result), "elements": list(result.elements)}
            for result in results if not result.ok]


def _manifest_problems(manifest: Path, ca: Path, files: list[Path],
                       what: str) -> list[dict[str, Any]]:
    signed = read_signed(manifest)
    problems: list[dict[str, Any]] = []
    signature = verify_manifest(signed, ca)
    if not signature.ok:
        problems.append({"status": "signature", "detail": f"manifest: {signature.reason}"})
    for c in check_objects(signed.manifest, files):
        if c.status is not Status.OK:
            problems.append({"sop_instance_uid": c.sop_instance_uid, "status": str(c.status),
                             "path": str(c.path) if c.path else None,
                             "detail": f"{what}: {c.detail}"})
    return problems


def _rsa_pair(key: Path, cert: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    private, certificate = load_key_pair(key, cert)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise LabError(f"{key}: the PS3.15 profiles need an RSA key")
    return private, certificate


def _rounded(times: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in times.items()}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.dicom.objsec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("protect", help="de-identify and/or sign at the sending site")
    pr.add_argument("files", nargs="+", type=Path)
    pr.add_argument("--recipient", type=Path, help="the receiving site's certificate (deid)")
    ch = sub.add_parser("check", help="verify and/or re-identify at a receiving site")
    ch.add_argument("--store", type=Path, required=True)
    ch.add_argument("--study", required=True)
    ch.add_argument("--originals", type=Path, help="the sender's signed manifest of originals")
    ch.add_argument("--reid-out", type=Path, help="where re-identified objects go")
    ex = sub.add_parser("export", help="write the study as a secure file-set (courier)")
    ex.add_argument("files", nargs="+", type=Path)
    ex.add_argument("--recipient", type=Path, required=True)
    im = sub.add_parser("import", help="import a secure file-set (courier)")
    im.add_argument("--fileset", type=Path, required=True)
    im.add_argument("--manifest", type=Path, required=True)
    for s in (pr, ch):
        s.add_argument("--mode", choices=MODES, required=True)
    for s in (pr, ex, im):
        s.add_argument("--out", type=Path, required=True, help="output directory")
    for s in (pr, ch, ex, im):
        s.add_argument("--key", type=Path, required=s is not ch, help="this site's RSA key")
        s.add_argument("--cert", type=Path, required=s is not ch, help="its certificate")
    for s in (ch, im):
        s.add_argument("--ca", type=Path, required=True, help="the lab CA certificate")
    return p


def _dispatch(a: argparse.Namespace) -> dict[str, Any]:
    if a.command == "protect":
        return protect(a.files, a.out, a.mode, a.key, a.cert, a.recipient)
    if a.command == "check":
        return check(a.store, a.study, a.mode, a.ca, a.key, a.cert, a.originals, a.reid_out)
    if a.command == "export":
        return export(a.files, a.out, a.key, a.cert, a.recipient)
    return import_(a.fileset, a.out, a.key, a.cert, a.ca, a.manifest)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = _dispatch(args)
    except (LabError, OSError, ValueError) as exc:
        result = {"ok": False, "error": str(exc),
                  "problems": [{"status": "error", "detail": str(exc)}]}
    report = OBJSEC_REPORTS[args.command].build(result)  # lab.dicom.reports: one model each
    sys.stdout.write(report.line() + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
