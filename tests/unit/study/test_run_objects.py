"""A run's object security and courier on the fake backend, without root: which site's program
protects, checks, exports and imports, with which credentials, in which order, and how their
times and problems land in the rows. The node program's own behaviour is tested in
tests/unit/dicom/test_objsec.py and the integration tests; here the test answers for it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pydicom import dcmread

from lab.backends.fake import FakeBackend
from lab.dicom.data.generate import generate_study
from lab.errors import LabError
from lab.host.shell import Result
from lab.model.names import LabPaths
from lab.study import run

from .test_run_flow import options, programs

BAD = {"sop_instance_uid": "1.2.3", "status": "signature",
       "detail": "object 1.2.3 signature 9: FAILED: signed element (0010,0010) PatientName "
                 "removed", "elements": ["(0010,0010) PatientName"]}


def objsec(pacs_check_ok: bool = True) -> Callable[[str, str, Sequence[str]], Result]:
    """The other programs as test_run_flow answers them; lab.dicom.objsec answered here: protect
    hands back the input files (as if protected) with their study UID."""
    others = programs()

    def answer(lab: str, node: str, argv: Sequence[str]) -> Result:
        argv = tuple(argv)
        if len(argv) < 4 or argv[2] != "lab.dicom.objsec":
            return others(lab, node, argv)
        op, files = argv[3], [a for a in argv[4:] if not a.startswith("--")]
        doc: dict[str, object] = {"ok": True}
        if op == "protect":
            uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
            doc |= {"objects": len(files), "files": files, "study_uid": uid,
                    "sign_seconds": 0.03, "deid_seconds": 0.02}
        elif op == "check":
            ok = pacs_check_ok or node != "pacs"
            reid = any("--reid-out" in a for a in argv)
            doc |= {"ok": ok, "objects": 1, "reidentified": int(reid), "verify_seconds": 0.04,
                    "reid_seconds": 0.05 if reid else 0.0, "problems": [] if ok else [BAD]}
        elif op == "export":  # like the real one: into a new directory only
            medium = Path(next(a for a in argv if a.startswith("--out="))[6:])
            if medium.exists():
                doc = {"ok": False, "error": f"{medium} is not empty"}
            else:
                medium.mkdir(parents=True)
                doc |= {"export_seconds": 0.5, "bytes": 1234, "objects": len(files)}
        elif op == "import":
            doc |= {"import_seconds": 0.7, "objects": 1, "signers": ["CN=objects-a"],
                    "problems": []}
        return Result(argv, 0 if doc["ok"] else 1, json.dumps(doc) + "\n", "")

    return answer


def _objsec_calls(backend: FakeBackend) -> list[tuple[str, ...]]:
    return [c for c in backend.calls if c[0] == "exec" and "lab.dicom.objsec" in c]


def test_sign_deid_and_courier_run_in_the_right_sites_and_fill_the_cost_columns(
        tmp_path: Path) -> None:
    backend = FakeBackend(responder=objsec())
    result = run.execute(options(tmp_path, backend, object_security="sign+deid", courier=True))
    assert result.ok
    ops = [r.operation for r in result.rows if r.repetition == 1]
    assert ops == ["echo", "store", "find", "move", "courier"]
    store, move, courier = (next(r for r in result.rows if r.operation == op)
                            for op in ("store", "move", "courier"))
    assert store.object_security == "sign+deid"
    assert (store.sign_seconds, store.deid_seconds, store.verify_seconds,
            store.reid_seconds) == (0.03, 0.02, 0.04, 0.05)
    assert move.verify_seconds == 0.04 and move.reid_seconds == 0.0 and move.sign_seconds == 0
    assert courier.family == "" and courier.verified == "yes" and courier.bytes == 1234
    assert (courier.export_seconds, courier.import_seconds, courier.seconds) == (0.5, 0.7, 1.2)
    # where each step runs, and with whose key: the modality's site signs and exports with its
    # credential, encrypting to the PACS's site; the PACS's site re-identifies with its own
    calls = [(c[2], c[6]) for c in _objsec_calls(backend)]
    assert calls[:3] == [("modality", "protect"), ("pacs", "check"), ("modality", "check")]
    assert calls[3:6] == [("modality", "protect"), ("modality", "export"), ("pacs", "import")]
    protect = _objsec_calls(backend)[0]
    assert any(a.endswith("objects-a.key") for a in protect)
    assert any(a.startswith("--recipient=") and a.endswith("objects-b.crt") for a in protect)
    pacs_check, modality_check = _objsec_calls(backend)[1:3]
    assert any(a.endswith("objects-b.key") for a in pacs_check)
    assert any(a.startswith("--originals=") for a in pacs_check)
    assert not any(a.startswith("--key") for a in modality_check)


def test_the_courier_gets_a_blank_medium_on_every_run_of_a_lab(tmp_path: Path) -> None:
    """An earlier run on the same lab left its file-set where this run's goes."""
    uid = generate_study("CT", tmp_path / "same", seed=0, objects=1).study_instance_uid
    paths = LabPaths("ipv6", root=tmp_path / "run", data_root=tmp_path / "data")
    for rep in (1, 2):
        old = paths.node_data("modality") / "courier" / str(rep) / uid
        old.mkdir(parents=True)
        (old / "DICOMDIR").write_bytes(b"an earlier run's")
    backend = FakeBackend(responder=objsec())
    result = run.execute(options(tmp_path, backend, object_security="sign", courier=True))
    assert [r.ok for r in result.rows if r.operation == "courier"] == [True, True]


def test_a_failed_object_check_fails_the_store_row_naming_object_and_element(
        tmp_path: Path) -> None:
    backend = FakeBackend(responder=objsec(pacs_check_ok=False))
    result = run.execute(options(tmp_path, backend, object_security="sign"))
    stores = [r for r in result.rows if r.operation == "store"]
    assert stores and all(not r.ok and r.verified == "no" for r in stores)
    assert all("1.2.3" in r.detail and "(0010,0010) PatientName" in r.detail for r in stores)
    assert all(r.ok for r in result.rows if r.operation == "move")


def test_no_object_security_runs_no_object_program(tmp_path: Path) -> None:
    backend = FakeBackend(responder=objsec())
    result = run.execute(options(tmp_path, backend))
    assert result.ok and not _objsec_calls(backend)
    assert all(r.object_security == "none" and r.sign_seconds == 0 for r in result.rows)


def test_an_unknown_object_security_fails_before_any_lab(tmp_path: Path) -> None:
    backend = FakeBackend(responder=objsec())
    with pytest.raises(LabError, match="object security 'encrypt'"):
        run.execute(options(tmp_path, backend, object_security="encrypt"))
    assert not backend.calls
