"""Interoperability with an independent DICOM toolkit: DCMTK (Debian's dcmtk, 3.6.7).

Each test builds its own IPv4 lab with the real command line (DCMTK 3.6.7 has no IPv6) and runs
DCMTK's programs inside its nodes with ``teleradlab exec``: echoscu, storescu, findscu and
movescu against the lab's PACS (and the modality's receiver of C-MOVE results), and the lab's
SCU against DCMTK's storescp. What arrives is compared with what was sent by the SHA-256 of each
object's encoded dataset (PS3.10: everything after the File Meta Information).

DCMTK runs with TCP_NODELAY=1 in its environment (else each small PDU can wait ~40 ms for a
delayed ACK), and by absolute path: pynetdicom installs programs of the same names into the
virtualenv, which comes first on PATH when the lab's environment is active.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom import dcmread

from lab.bench.store import dcmtk_tool
from lab.dicom import MODALITY_AE, MODALITY_STORE_PORT, PACS_AE, PACS_PORT
from lab.dicom.archive.store import study_paths
from lab.dicom.data.generate import Study, generate_study
from lab.dicom.data.integrity import dataset_digest
from lab.errors import LabError
from lab.model.names import LabPaths
from lab.model.topology import Family
from lab.topology import load

from ..conftest import REPO, TOPOLOGIES, leftovers, teleradlab

TOPOLOGY = load(TOPOLOGIES / "ipv4.yaml")
PACS_IP = str(TOPOLOGY.node("pacs").addresses(Family.IPV4)[0].ip)  # 198.18.2.10
MODALITY_IP = str(TOPOLOGY.node("modality").addresses(Family.IPV4)[0].ip)  # 198.18.1.10
#: Lab names carry the pid, so runs on the same machine at the same time do not collide.
SUFFIX = str(os.getpid() % 100000)


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcmtk() -> dict[str, str]:
    """Paths of DCMTK's programs (missing DCMTK: skipped here, a failure under CI)."""
    try:
        return {t: dcmtk_tool(t) for t in ("echoscu", "storescu", "storescp", "findscu",
                                            "movescu")}
    except LabError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def work() -> Iterator[Path]:
    """A folder under /tmp, which nodes share with the host (not /run: each node has its own)."""
    path = Path(tempfile.mkdtemp(prefix="ix-dicom-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def ipv4_lab(name: str, *options: str) -> Iterator[str]:
    """Lab ``ix-NAME-PID`` from topologies/ipv4.yaml, removed (and checked gone) at the end."""
    lab = f"ix-{name}-{SUFFIX}"
    teleradlab("up", "ipv4", "--name", lab, *options)
    try:
        yield lab
    finally:
        teleradlab("down", lab)
        left = leftovers(lab)
        assert not any(left.values()), left


def in_node(lab: str, node: str, *argv: str, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
    return teleradlab("exec", "--lab", lab, node, "--", *argv, check=check)


def dcmtk_cmd(tool: str, *args: str) -> list[str]:
    return ["env", "TCP_NODELAY=1", tool, *args]


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def by_instance(paths: Sequence[Path]) -> dict[str, str]:
    """SOP Instance UID -> SHA-256 of the encoded dataset, for Part-10 files."""
    out = {}
    for path in paths:
        uid = str(dcmread(path, stop_before_pixels=True,
                          specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        assert uid not in out, f"{uid} twice"
        out[uid] = dataset_digest(path)
    return out


def node_store(lab: str, node: str, folder: str) -> Path:
    return LabPaths(lab).node_data(node) / folder


def storescu(dcmtk: dict[str, str], lab: str, files: Sequence[Path]) -> None:
    """DCMTK storescu from the modality to the lab's PACS, Explicit VR Little Endian first."""
    res = in_node(lab, "modality", *dcmtk_cmd(
        dcmtk["storescu"], "-v", "-aet", MODALITY_AE, "-aec", PACS_AE, "-xe",
        PACS_IP, str(PACS_PORT), *map(str, files)))
    assert output(res).count("Received Store Response (Success)") == len(files), output(res)


def findscu(dcmtk: dict[str, str], lab: str, work: Path, model: str,
            keys: dict[str, str]) -> list[dict[str, str]]:
    """The identifiers findscu (``-P`` patient root, ``-S`` study root) gets back, keyword ->
    value, read from DCMTK's XML dump of the responses."""
    xml = work / f"find-{time.monotonic_ns()}.xml"
    args = [a for k, v in keys.items() for a in ("-k", f"{k}={v}" if v else k)]
    res = in_node(lab, "modality", *dcmtk_cmd(
        dcmtk["findscu"], "-v", model, "-aet", MODALITY_AE, "-aec", PACS_AE, "-Xs", str(xml),
        *args, PACS_IP, str(PACS_PORT)))
    assert "Received Final Find Response (Success)" in output(res), output(res)
    if not xml.exists():
        return []
    return [{e.get("name", ""): (e.text or "") for e in ds.iter("element")}
            for ds in ET.parse(xml).getroot().iter("data-set")]


@pytest.fixture
def ct_study(work: Path) -> Study:
    return generate_study("CT", work / "ct", objects=12, seed=7)


# --- the tests ---------------------------------------------------------------------------------


def test_echoscu_to_the_lab_pacs_and_receiver(dcmtk: dict[str, str]) -> None:
    with ipv4_lab("echo") as lab:
        res = in_node(lab, "modality", *dcmtk_cmd(
            dcmtk["echoscu"], "-v", "-aet", MODALITY_AE, "-aec", PACS_AE, PACS_IP,
            str(PACS_PORT)))
        assert "Received Echo Response (Success)" in output(res), output(res)
        # The modality's receiver of C-MOVE results answers C-ECHO too (from the PACS's side).
        res = in_node(lab, "pacs", *dcmtk_cmd(
            dcmtk["echoscu"], "-v", "-aet", PACS_AE, "-aec", MODALITY_AE, MODALITY_IP,
            str(MODALITY_STORE_PORT)))
        assert "Received Echo Response (Success)" in output(res), output(res)


def test_storescu_to_the_lab_pacs(dcmtk: dict[str, str], work: Path, ct_study: Study) -> None:
    # A second SOP class (multi-frame NM) in the same association.
    nm = generate_study("NM", work / "nm", objects=1, seed=7)
    with ipv4_lab("store") as lab:
        storescu(dcmtk, lab, [*ct_study.files, *nm.files])
        for study in (ct_study, nm):
            found = findscu(dcmtk, lab, work, "-S", {
                "QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study.study_instance_uid,
                "NumberOfStudyRelatedInstances": ""})
            assert [m["NumberOfStudyRelatedInstances"] for m in found] == [str(len(study.files))]
            stored = study_paths(node_store(lab, "pacs", "store"), study.study_instance_uid)
            assert by_instance(stored) == by_instance(study.files)


def test_movescu_to_the_modality_receiver(dcmtk: dict[str, str], work: Path,
                                          ct_study: Study) -> None:
    with ipv4_lab("move") as lab:
        storescu(dcmtk, lab, ct_study.files)

        def movescu(destination: str) -> subprocess.CompletedProcess[str]:
            # No storage SCP of movescu's own (--no-port is its default): the PACS sends the
            # study to the AE it knows as `destination`.
            return in_node(lab, "modality", *dcmtk_cmd(
                dcmtk["movescu"], "-v", "-S", "-aet", MODALITY_AE, "-aec", PACS_AE,
                "-aem", destination, "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={ct_study.study_instance_uid}", PACS_IP,
                str(PACS_PORT)), check=False)

        res = movescu(MODALITY_AE)  # the lab's receiver on the modality
        assert "Received Final Move Response (Success)" in output(res), output(res)
        received = study_paths(node_store(lab, "modality", "received"),
                               ct_study.study_instance_uid)
        assert by_instance(received) == by_instance(ct_study.files)
        # A destination the PACS does not know: 0xA801, Refused: Move Destination unknown
        # (PS3.4 C.4.2).
        res = movescu("NOWHERE")
        assert res.returncode != 0
        assert "Final Move Response (Refused: MoveDestinationUnknown)" in output(res), output(res)


@contextmanager
def dcmtk_storescp(dcmtk: dict[str, str], lab: str, out_dir: Path, log: Path) -> Iterator[int]:
    """DCMTK's storescp as the ``pacs`` node's AE PACS on port 11112, accepting every storage
    SOP class and transfer syntax it knows (+xa); stopped by its process id."""
    out_dir.mkdir()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab", "exec", "--lab", lab, "pacs", "--",
             *dcmtk_cmd(dcmtk["storescp"], "-v", "-aet", PACS_AE, "+xa", "-od", str(out_dir),
                        str(PACS_PORT))],
            cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while in_node(lab, "modality", *dcmtk_cmd(
                dcmtk["echoscu"], "-aet", MODALITY_AE, "-aec", PACS_AE, PACS_IP, str(PACS_PORT)),
                check=False).returncode != 0:
            assert proc.poll() is None, f"storescp exited: {log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "storescp did not answer C-ECHO"
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()  # `teleradlab exec` replaced itself by nsenter, nsenter by storescp
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_lab_scu_to_dcmtk_storescp(dcmtk: dict[str, str], work: Path, ct_study: Study) -> None:
    received = work / "storescp"
    with ipv4_lab("scp", "--no-services") as lab:
        with dcmtk_storescp(dcmtk, lab, received, work / "storescp.log") as pid:
            assert Path(f"/proc/{pid}/exe").resolve().name == "storescp"
            res = in_node(lab, "modality", sys.executable, "-m", "lab.dicom.scu", "store",
                          f"--host={PACS_IP}", f"--port={PACS_PORT}",
                          *map(str, ct_study.files))
            doc = json.loads(res.stdout.strip().splitlines()[-1])
            assert doc["ok"] and doc["objects"] == len(ct_study.files), doc
            assert doc["statuses"] == {"0x0000": len(ct_study.files)}, doc
        assert not Path(f"/proc/{pid}").exists()
        # storescp decoded each dataset and wrote it again (its default, not bit-preserving):
        # equal digests say DCMTK reads the lab's encoding exactly as it was meant.
        assert by_instance(sorted(received.iterdir())) == by_instance(ct_study.files)


def study_date(study: Study) -> date:
    return date.fromisoformat(str(dcmread(study.files[0], stop_before_pixels=True).StudyDate))


def test_findscu_wildcards_and_date_ranges(dcmtk: dict[str, str], work: Path,
                                           ct_study: Study) -> None:
    other = generate_study("MR", work / "mr", objects=2, seed=8)  # another patient and day
    days = {s.study_instance_uid: study_date(s) for s in (ct_study, other)}
    assert abs(days[ct_study.study_instance_uid] - days[other.study_instance_uid]) > timedelta(2)
    with ipv4_lab("find") as lab:
        storescu(dcmtk, lab, [*ct_study.files, *other.files])

        def find(model: str, **keys: str) -> list[dict[str, str]]:
            return findscu(dcmtk, lab, work, model, keys)

        def study_uids(model: str, **keys: str) -> list[str]:
            return [m["StudyInstanceUID"] for m in find(model, QueryRetrieveLevel="STUDY",
                                                         StudyInstanceUID="", **keys)]

        # Patient Root, PATIENT level: a wildcard name finds both patients; PN matching
        # ignores case in the lab's PACS (the standard leaves that to the implementation).
        both = find("-P", QueryRetrieveLevel="PATIENT", PatientName="TELERAD*", PatientID="")
        assert sorted(m["PatientID"] for m in both) == sorted(
            [ct_study.patient_id, other.patient_id])
        one = find("-P", QueryRetrieveLevel="PATIENT", PatientName="telerad^synth?",
                   PatientID=ct_study.patient_id)
        assert [m["PatientName"] for m in one] == [ct_study.patient_name]
        for study in (ct_study, other):
            day = days[study.study_instance_uid]
            around = f"{day - timedelta(1):%Y%m%d}-{day + timedelta(1):%Y%m%d}"
            # Patient Root, STUDY level (hierarchical: the patient's ID), and a date range.
            assert study_uids("-P", PatientID=study.patient_id, StudyDate=around) == [
                study.study_instance_uid]
            # Study Root, STUDY level: wildcard name and date range.
            found = find("-S", QueryRetrieveLevel="STUDY", PatientName="TELERAD*",
                         StudyDate=around, StudyInstanceUID="", ModalitiesInStudy="")
            assert [(m["StudyInstanceUID"], m["ModalitiesInStudy"]) for m in found] == [
                (study.study_instance_uid, study.modality)]
        # Open-ended ranges: from the later day on, up to the earlier day.
        (first, early), (last, late) = sorted(days.items(), key=lambda kv: kv[1])
        assert study_uids("-S", PatientName="TELERAD*", StudyDate=f"{late:%Y%m%d}-") == [last]
        assert study_uids("-S", PatientName="TELERAD*", StudyDate=f"-{early:%Y%m%d}") == [first]
        assert study_uids("-S", PatientName="TELERAD*",
                          StudyDate=f"-{early - timedelta(1):%Y%m%d}") == []
