"""The files ``teleradlab sign | deid | media export`` write (lab.cli.objects), checked by the
independent tools: DCMTK's ``dcmsign --verify``, GDCM's ``gdcmanon -d`` and ``openssl cms``,
with keys and certificates made by ``teleradlab credentials``. No lab, no network."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydicom import dcmread

from lab.cli.main import main
from lab.dicom.data.generate import generate_study

DCMSIGN = "/usr/bin/dcmsign"


def teleradlab(*args: str | Path) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def dcmsign(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run([DCMSIGN, *map(str, args)])


def gdcmanon(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run(["gdcmanon", *map(str, args)])


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run(["openssl", *map(str, args)])


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, list[Path]]:
    teleradlab("credentials", "modality-a", "pacs-b", "--ca-dir", tmp_path / "ca")
    return tmp_path / "ca", list(generate_study("NM", tmp_path / "src", objects=2).files)


def test_dcmsign_verifies_what_teleradlab_sign_wrote(tmp_path: Path,
                                                     setup: tuple[Path, list[Path]]) -> None:
    ca, _ = setup
    teleradlab("sign", tmp_path / "src", "--key", ca / "modality-a.key", "--cert",
               ca / "modality-a.crt", "--out", tmp_path / "signed")
    for signed in sorted((tmp_path / "signed").iterdir()):
        run = dcmsign("--verify", "+rg", "+cf", ca / "ca.crt", signed)
        assert run.returncode == 0 and "Verification : OK" in run.stdout + run.stderr


def test_gdcmanon_reidentifies_what_teleradlab_deid_wrote(
        tmp_path: Path, setup: tuple[Path, list[Path]]) -> None:
    ca, sources = setup
    teleradlab("deid", tmp_path / "src", "--recipient", ca / "pacs-b.crt", "--out",
               tmp_path / "deid")
    for source in sources:
        back = tmp_path / f"back-{source.name}"
        run = gdcmanon("-d", "-k", ca / "pacs-b.key", "-c", ca / "pacs-b.crt", "-i",
                   tmp_path / "deid" / source.name, "-o", back)
        assert run.returncode == 0, run.stderr
        restored, before = dcmread(back), dcmread(source)
        assert restored.PatientName == before.PatientName
        assert restored.PatientID == before.PatientID
        assert restored.SOPInstanceUID == before.SOPInstanceUID


def test_openssl_opens_what_teleradlab_media_export_wrote(
        tmp_path: Path, setup: tuple[Path, list[Path]]) -> None:
    ca, sources = setup
    teleradlab("media", "export", tmp_path / "src", "--key", ca / "modality-a.key", "--cert",
               ca / "modality-a.crt", "--recipient", ca / "pacs-b.crt", "--out", tmp_path / "fs")
    originals = {p.read_bytes() for p in sources}
    secure_files = sorted(p for p in (tmp_path / "fs").rglob("IM*"))
    assert len(secure_files) == 2
    for secure in secure_files:
        inner, plain = tmp_path / "inner.der", tmp_path / "plain.dcm"
        run = openssl("cms", "-decrypt", "-inform", "DER", "-binary", "-in", secure,
                   "-recip", ca / "pacs-b.crt", "-inkey", ca / "pacs-b.key", "-out", inner)
        assert run.returncode == 0, run.stderr
        run = openssl("cms", "-verify", "-inform", "DER", "-binary", "-in", inner,
                   "-CAfile", ca / "ca.crt", "-purpose", "any", "-out", plain)
        assert run.returncode == 0, run.stderr
        assert plain.read_bytes() in originals
