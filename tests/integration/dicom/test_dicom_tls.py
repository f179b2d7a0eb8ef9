"""DICOM TLS in a real lab, with DCMTK (3.6.7, IPv4) as the independent peer: DCMTK storescu
``+tls`` to the lab's TLS PACS, and the lab's SCU to DCMTK storescp ``+tls``, on the registered
DICOM TLS port 2762, with mutual authentication against a lab CA. What arrives is compared with
what was sent by the SHA-256 of each object's encoded dataset.

DCMTK runs its default profile (``+py``, the Non-Downgrading BCP 195 TLS Profile); the lab's
programs run the matching ``non-downgrading`` profile. Certificates are RSA, which that
profile's TLS 1.2 suites (ECDHE-RSA) need.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.dicom import MODALITY_AE, PACS_AE
from lab.dicom.archive.store import study_paths
from lab.dicom.data.generate import generate_study
from lab.model.dicom import TLS_PORT
from lab.security.pki.authority import Credential, create_ca

from ..conftest import REPO
from . import test_dicom_interop as interop
from .test_dicom_interop import (
    MODALITY_IP,
    PACS_IP,
    by_instance,
    dcmtk_cmd,
    in_node,
    ipv4_lab,
    output,
)

PROFILE = "non-downgrading"
dcmtk = interop.dcmtk  # the fixtures: DCMTK's programs, a work folder under /tmp
work = interop.work


@dataclass(frozen=True)
class Creds:
    ca: Path
    pacs: Credential
    modality: Credential


def _issue(folder: Path) -> Creds:
    ca = create_ca(folder / "ca", "tls interop CA", key_type="rsa-2048")
    return Creds(ca.cert_path,
                 ca.issue("pacs", ips=[PACS_IP], usages={"server", "client"},
                          key_type="rsa-2048"),
                 ca.issue("modality", ips=[MODALITY_IP], usages={"server", "client"},
                          key_type="rsa-2048"))


def _lab_tls(cred: Credential, ca: Path) -> list[str]:
    return [f"--tls-profile={PROFILE}", f"--tls-cert={cred.cert_path}",
            f"--tls-key={cred.key_path}", f"--tls-ca={ca}"]


def _dcmtk_tls(cred: Credential, ca: Path) -> list[str]:
    return ["+tls", str(cred.key_path), str(cred.cert_path), "+cf", str(ca)]


@contextmanager
def _background(lab: str, node: str, argv: list[str], log: Path) -> Iterator[None]:
    """A server run in a node until the end of the block, once it listens on TLS_PORT."""
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "lab", "exec", "--lab", lab, node, "--",
                                 *argv], cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not in_node(lab, node, "ss", "-Hltn", f"sport = :{TLS_PORT}").stdout.strip():
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dcmtk_storescu_tls_to_the_lab_pacs(dcmtk: dict[str, str], work: Path) -> None:
    creds = _issue(work)
    study = generate_study("CT", work / "ct", objects=5, seed=11)
    store = work / "tls-store"
    pacs = [sys.executable, "-m", "lab.dicom.pacs", f"--root={store}", f"--port={TLS_PORT}",
            "--storage-only", "-v", *_lab_tls(creds.pacs, creds.ca)]
    with ipv4_lab("tls-scp", "--no-services") as lab, _background(
            lab, "pacs", pacs, work / "pacs.log"):
        res = in_node(lab, "modality", *dcmtk_cmd(
            dcmtk["storescu"], "-v", *_dcmtk_tls(creds.modality, creds.ca),
            "-aet", MODALITY_AE, "-aec", PACS_AE, "-xe", PACS_IP, str(TLS_PORT),
            *map(str, study.files)), check=False)
        assert output(res).count("Received Store Response (Success)") == 5, output(res)
        log = (work / "pacs.log").read_text()
        assert f"TLS from {MODALITY_IP}: TLSv1." in log, log
    assert by_instance(study_paths(store, study.study_instance_uid)) == by_instance(study.files)


def test_lab_scu_tls_to_dcmtk_storescp(dcmtk: dict[str, str], work: Path) -> None:
    creds = _issue(work)
    study = generate_study("CT", work / "ct", objects=5, seed=12)
    received = work / "storescp"
    received.mkdir()
    scp = dcmtk_cmd(dcmtk["storescp"], "-v", *_dcmtk_tls(creds.pacs, creds.ca),
                    "-aet", PACS_AE, "+xa", "-od", str(received), str(TLS_PORT))
    with ipv4_lab("tls-scu", "--no-services") as lab, _background(
            lab, "pacs", scp, work / "storescp.log"):
        res = in_node(lab, "modality", sys.executable, "-m", "lab.dicom.scu", "store",
                      f"--host={PACS_IP}", f"--port={TLS_PORT}",
                      *_lab_tls(creds.modality, creds.ca),
                      *map(str, study.files), check=False)
        doc = json.loads(res.stdout.strip().splitlines()[-1])
        assert doc["ok"] and doc["statuses"] == {"0x0000": 5}, doc
        assert doc["tls_version"] in ("TLSv1.2", "TLSv1.3") and doc["cipher"], doc
        assert doc["handshake_seconds"] > 0, doc
    assert by_instance(sorted(received.iterdir())) == by_instance(study.files)
