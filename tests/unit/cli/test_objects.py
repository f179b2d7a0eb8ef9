"""``teleradlab sign | verify | deid | reid | media | credentials`` (lab.cli.objects) on real
files through click's CliRunner: the whole path of a study between two sites, and each refusal
exiting 1 with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pydicom import dcmread

from lab.cli.main import main
from lab.dicom.data.generate import generate_study


def teleradlab(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA of its own with modality-a (the sender) and pacs-b (the receiver), and a stranger
    from another CA, made by ``teleradlab credentials``."""
    here = tmp_path_factory.mktemp("pki")
    result = teleradlab("credentials", "modality-a", "pacs-b", "--ca-dir", here / "ca")
    assert result.exit_code == 0, result.output
    assert f"CA certificate: {here / 'ca' / 'ca.crt'}" in result.output
    assert teleradlab("credentials", "stranger", "--ca-dir", here / "other").exit_code == 0
    again = teleradlab("credentials", "pacs-b", "--ca-dir", here / "ca")
    assert "pacs-b: kept" in again.output
    return here


def _pair(sites: Path, name: str, ca: str = "ca") -> list[str | Path]:
    return ["--key", sites / ca / f"{name}.key", "--cert", sites / ca / f"{name}.crt"]


@pytest.fixture
def study(tmp_path: Path) -> list[Path]:
    return list(generate_study("CT", tmp_path / "src", objects=2).files)


def test_help_explains_the_profiles() -> None:
    assert "creator-rsa" in teleradlab("sign", "--help").output
    text = teleradlab("deid", "--help").output
    assert "retain-long-modified-dates" in text and "2024b" in text
    assert "EnvelopedData" in teleradlab("media", "--help").output


def test_sign_then_verify_and_a_change_named(tmp_path: Path, sites: Path,
                                            study: list[Path]) -> None:
    signed = tmp_path / "signed"
    result = teleradlab("sign", tmp_path / "src", *_pair(sites, "modality-a"),
                        "--profile", "creator-rsa", "--out", signed)
    assert result.exit_code == 0 and "signed 2 object(s)" in result.output, result.output
    result = teleradlab("verify", signed, "--ca", sites / "ca" / "ca.crt")
    assert result.exit_code == 0 and result.output.count(": verified (") == 2, result.output
    assert "verified 2 signature(s)" in result.output
    assert "creator-rsa" in result.output
    changed = dcmread(signed / "CT-0001.dcm")
    changed.PatientName = "Someone^Else"
    changed.save_as(signed / "CT-0001.dcm", enforce_file_format=True)
    result = teleradlab("verify", signed, "--ca", sites / "ca" / "ca.crt")
    assert result.exit_code == 1 and "CT-0001.dcm" in result.output
    assert "value changed since signing" in result.output
    foreign = teleradlab("verify", signed / "CT-0002.dcm", "--ca", sites / "other" / "ca.crt")
    assert foreign.exit_code == 1 and "does not chain to a trusted CA" in foreign.output
    unsigned = teleradlab("verify", study[0], "--ca", sites / "ca" / "ca.crt")
    assert unsigned.exit_code == 1 and "no digital signature" in unsigned.output


def test_deid_then_reid_and_a_wrong_key(tmp_path: Path, sites: Path,
                                        study: list[Path]) -> None:
    result = teleradlab("deid", tmp_path / "src", "--recipient", sites / "ca" / "pacs-b.crt",
                        "--option", "retain-long-modified-dates", "--date-offset", "-7",
                        "--out", tmp_path / "deid")
    assert result.exit_code == 0 and "de-identified" in result.output, result.output
    name = str(dcmread(study[0]).PatientName).encode()
    assert all(name not in p.read_bytes() for p in (tmp_path / "deid").iterdir())
    wrong = teleradlab("reid", tmp_path / "deid", *_pair(sites, "stranger", "other"),
                       "--out", tmp_path / "nothing")
    assert wrong.exit_code == 1 and "not encrypted for CN=stranger" in wrong.output
    assert not (tmp_path / "nothing").exists()
    result = teleradlab("reid", tmp_path / "deid", *_pair(sites, "pacs-b"),
                        "--out", tmp_path / "back")
    assert result.exit_code == 0, result.output
    for original in study:
        assert dcmread(tmp_path / "back" / original.name) == dcmread(original)


def test_media_export_import_and_a_tampered_file(tmp_path: Path, sites: Path,
                                                 study: list[Path]) -> None:
    result = teleradlab("media", "export", tmp_path / "src", *_pair(sites, "modality-a"),
                        "--recipient", sites / "ca" / "pacs-b.crt", "--out", tmp_path / "fs")
    assert result.exit_code == 0 and "exported 2 secure file(s)" in result.output
    assert (tmp_path / "fs" / "DICOMDIR").is_file()
    result = teleradlab("media", "import", tmp_path / "fs", *_pair(sites, "pacs-b"),
                        "--ca", sites / "ca" / "ca.crt", "--out", tmp_path / "in")
    assert result.exit_code == 0 and "signed by CN=modality-a" in result.output, result.output
    assert sorted(p.read_bytes() for p in (tmp_path / "in").iterdir()) == sorted(
        p.read_bytes() for p in study)
    victim = next(p for p in (tmp_path / "fs").rglob("IM*"))
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0x01
    victim.write_bytes(bytes(data))
    result = teleradlab("media", "import", tmp_path / "fs", *_pair(sites, "pacs-b"),
                        "--ca", sites / "ca" / "ca.crt", "--out", tmp_path / "in2")
    assert result.exit_code == 1 and victim.name in result.output
    assert "nothing imported" in result.output and not (tmp_path / "in2").exists()


def test_credentials_need_one_ca(tmp_path: Path) -> None:
    assert teleradlab("credentials", "x").exit_code == 2
    result = teleradlab("credentials", "x", "--lab", "i14-no-such-lab")
    assert result.exit_code == 1 and "has no CA" in result.output
