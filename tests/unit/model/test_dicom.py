"""lab.model.dicom: the lab's DICOM constants are valid for their VRs, used by every part of
the lab that sends them, and defined nowhere else (an AST scan of lab/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID

from lab.dicom.data.generate import generate_study
from lab.model import dicom
from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, TLS_PORT

LAB = Path(__file__).resolve().parents[3] / "lab"
HOME = LAB / "model" / "dicom.py"
NAMES = {"TLS_PORT", "DICOM_TLS_PORT", "IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION",
         "IMPLEMENTATION_VERSION_NAME", "PACS_PORT", "RECEIVER_PORT", "MODALITY_STORE_PORT"}


def test_values_fit_their_value_representations() -> None:
    assert TLS_PORT == 2762  # IANA "dicom-tls", PS3.15 B.1
    assert UID(IMPLEMENTATION_CLASS_UID).is_valid  # UI: digits and dots, <= 64 characters
    assert IMPLEMENTATION_CLASS_UID.startswith("2.25.")  # PS3.5 B.2, no registered root
    assert re.fullmatch(r"[ -~]{1,16}", IMPLEMENTATION_VERSION_NAME)  # SH (PS3.7 D.3.3.2.3)


def test_the_implementation_uid_is_the_lab_s_name_uid() -> None:
    assert dicom.name_uid("implementation") == IMPLEMENTATION_CLASS_UID


def test_name_uids_are_repeatable_and_distinct() -> None:
    assert dicom.name_uid("study", 1) == dicom.name_uid("study", 1)
    assert dicom.name_uid("study", 1) != dicom.name_uid("study", 2)
    assert UID(dicom.name_uid("x" * 1000)).is_valid


def test_generated_files_carry_the_one_identity(tmp_path: Path) -> None:
    study = generate_study("CR", tmp_path, objects=1)
    meta = dcmread(study.files[0]).file_meta
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME


def _definitions(path: Path) -> list[str]:
    """Assignments to one of NAMES from a literal, and the literal 2762, in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and node.value == 2762:
            found.append(f"{path}:{node.lineno}: the literal 2762")
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant | ast.JoinedStr):
            found += [f"{path}:{node.lineno}: {t.id} defined" for t in node.targets
                      if isinstance(t, ast.Name) and t.id in NAMES]
    return found


def test_each_constant_is_defined_once() -> None:
    found = [d for p in sorted(LAB.rglob("*.py")) if p != HOME for d in _definitions(p)]
    assert not found, "define it in lab/model/dicom.py and import it:\n" + "\n".join(found)
    # TLS_PORT, its literal, PACS_PORT, RECEIVER_PORT, IMPLEMENTATION_CLASS_UID and _VERSION_NAME
    assert len(_definitions(HOME)) == 6
