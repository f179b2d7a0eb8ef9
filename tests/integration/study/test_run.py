"""``teleradlab run`` end to end: echo, store, find and move between the sites of a real lab,
every transfer verified at its receiver, tidy results and provenance written, and the lab left
as it was found (built and removed by ``run``, or reused and left running with ``--lab``).

Other people run labs on the same machine: every lab made here is named ``rb-...``, but for the
one test that checks ``run`` building (and removing) a lab named after its topology.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.dicom.data.generate import MODALITIES
from lab.model.topology import Family
from lab.study.results import read_csv
from lab.topology import load

from ..conftest import REPO, TOPOLOGIES, leftovers, netns_names, teleradlab

#: The columns the brief of results.csv promises (lab.study.results.Row has a few more).
COLUMNS = ("topology", "family", "backend", "security", "operation", "modality", "pdu", "objects",
           "bytes", "seconds", "mbytes_per_s", "setup_seconds", "verified")
RUN_TIMEOUT = 900


def _exists(lab: str) -> bool:
    """Does any trace of lab ``lab`` exist (namespaces, record, data)?"""
    roots = (Path("/run/teleradlab/labs"), Path("/var/lib/teleradlab"))
    return bool(netns_names(f"tl-{lab}.")) or any((root / lab).exists() for root in roots)


@contextmanager
def own_lab(name: str, topology: str) -> Iterator[str]:
    """Our own lab ``name`` (rb-...) for the duration; removed after, leaving nothing."""
    assert name.startswith("rb-")
    with own_lab_named(name, topology) as lab:
        yield lab


@contextmanager
def own_lab_named(name: str, topology: str) -> Iterator[str]:
    """A lab ``name`` of the caller's own for the duration; removed after, leaving nothing."""
    if _exists(name):
        teleradlab("down", name, check=False)  # left by an interrupted earlier run of these tests
    teleradlab("up", topology, "--name", name)
    try:
        yield name
    finally:
        teleradlab("down", name)
        assert not any(leftovers(name).values()), leftovers(name)


def run(*args: str, check: bool = True) -> Any:
    return teleradlab("run", *args, check=check, timeout=RUN_TIMEOUT)


def echo_from_modality(lab: str, topology: str, family: Family) -> dict[str, Any]:
    """A C-ECHO from the modality to the PACS, outside ``run``: is the lab still serving?"""
    host = load(TOPOLOGIES / f"{topology}.yaml").node("pacs").addresses(family)[0].ip
    proc = teleradlab("exec", "--lab", lab, "modality", "--", sys.executable, "-m",
                      "lab.dicom.scu", "echo", f"--host={host}", check=False)
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


def check_results(out: Path, *, topology: str, lab: str, families: set[str],
                  modalities: tuple[str, ...], objects: int, pdu: int = 0,
                  sync: str = "none") -> list[dict[str, str]]:
    """Everything results.csv and run.json must say about a successful run."""
    rows = read_csv(out / "results.csv")
    assert rows, "results.csv has no rows"
    assert set(COLUMNS) <= set(rows[0]), f"missing columns: {set(COLUMNS) - set(rows[0])}"
    assert {r["family"] for r in rows} == families
    for row in rows:
        assert (row["topology"], row["backend"], row["security"]) == (topology, "netns", "none")
        assert int(row["pdu"]) == pdu, row
        assert row["ok"] == "True", row
        assert float(row["seconds"]) > 0 and float(row["setup_seconds"]) > 0, row
    want = Counter({(f, "echo", ""): 1 for f in families})
    want.update({(f, op, m): 1 for f in families for m in modalities
                 for op in ("store", "find", "move")})
    assert Counter((r["family"], r["operation"], r["modality"]) for r in rows) == want

    sizes = {m: sum(p.stat().st_size for p in (out / "data" / m).glob("*.dcm"))
             for m in modalities}
    for row in rows:
        op, modality = row["operation"], row["modality"]
        if op in ("store", "move"):
            assert row["verified"] == "yes", row
            assert int(row["objects"]) == objects, row
            assert int(row["bytes"]) == sizes[modality] > 0, row
            assert float(row["mbytes_per_s"]) > 0, row
        elif op == "find":
            assert int(row["objects"]) == 1, f"the study was not found: {row}"
            assert json.loads(row["detail"])["matches_found"] == 1, row
        else:
            assert json.loads(row["detail"])["status"] == 0, row

    prov = json.loads((out / "run.json").read_text())
    assert prov["lab"] == lab and prov["topology"] == topology
    assert prov["all_ok"] is True and prov["rows"] == len(rows)
    assert prov["kernel"] == platform.release()
    for dist in ("pydicom", "pynetdicom", "cryptography", "numpy"):
        assert re.fullmatch(r"\d+\.\d+.*", prov["packages"][dist]), prov["packages"]
    assert isinstance(prov["data_paths"], dict) and prov["data_paths"], prov["data_paths"]
    assert prov["data_paths"]["store"].startswith(
        {"none": "written to the page cache, no fsync", "object": "fdatasync of every object"}[
            sync]), prov["data_paths"]
    assert prov["git_revision"], prov
    if (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", prov["git_revision"]), prov["git_revision"]
    assert prov["skipped_inputs"] == []
    return rows


#: (topology, modalities, objects per study): all seven modalities once, two elsewhere.
CASES = [
    ("ipv4", MODALITIES, 1),
    ("ipv6", ("CT", "MR"), 2),
    ("dualstack", ("CR", "NM"), 2),
]


@pytest.mark.parametrize(("topology", "modalities", "objects"), CASES,
                         ids=[c[0] for c in CASES])
def test_run_on_a_running_lab(topology: str, modalities: tuple[str, ...], objects: int,
                              tmp_path: Path) -> None:
    families = {"ipv4": {"ipv4"}, "ipv6": {"ipv6"}, "dualstack": {"ipv4", "ipv6"}}[topology]
    with own_lab(f"rb-run-{topology}", topology) as lab:
        out = tmp_path / "out"
        res = run("--lab", lab, "--modality", ",".join(modalities), "--objects", str(objects),
                  "--out", str(out))
        assert "results:" in res.stdout
        check_results(out, topology=topology, lab=lab, families=families,
                      modalities=modalities, objects=objects)
        # --lab reuses the lab and leaves it running, its PACS still serving.
        assert lab in json.dumps(json.loads(teleradlab("status", lab, "--json").stdout))
        assert len(netns_names(f"tl-{lab}.")) == len(load(TOPOLOGIES / f"{topology}.yaml").nodes)
        family = Family.IPV6 if topology == "ipv6" else Family.IPV4
        assert echo_from_modality(lab, topology, family)["ok"]


def test_run_builds_and_removes_its_own_lab(tmp_path: Path) -> None:
    topology = "ipv4"  # run names the lab after its topology
    if _exists(topology):
        pytest.skip(f"someone else's lab {topology!r} is running on this machine")
    out = tmp_path / "out"
    run(topology, "--modality", "CT", "--objects", "2", "--out", str(out))
    check_results(out, topology=topology, lab=topology, families={"ipv4"}, modalities=("CT",),
                  objects=2)
    assert not netns_names(f"tl-{topology}.")
    assert not Path("/var/lib/teleradlab", topology).exists()
    assert not Path("/run/teleradlab/labs", topology).exists()
    assert not any(leftovers(topology).values()), leftovers(topology)


def test_run_on_a_mixed_topology_needs_the_tunnel(tmp_path: Path) -> None:
    # The shipped mixed-4over6 topology under a file name of our own, so that the lab run
    # builds is named rb-... like every other lab these tests make.
    topology = tmp_path / "rb-mixed-4over6.yaml"
    shutil.copy(TOPOLOGIES / "mixed-4over6.yaml", topology)
    lab = topology.stem
    if _exists(lab):
        teleradlab("down", lab, check=False)  # left by an interrupted earlier run of this test
    res = run(str(topology), "--objects", "1", "--out", str(tmp_path / "out"), check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    message = " ".join(res.stderr.split())
    assert "cannot reach" in message and "need the IPsec tunnel" in message, res.stderr
    assert not any(leftovers(lab).values()), leftovers(lab)
    assert not read_csv(tmp_path / "out" / "results.csv")


def test_run_with_a_16k_pdu(tmp_path: Path) -> None:
    with own_lab("rb-run-pdu", "ipv4") as lab:
        out = tmp_path / "out"
        run("--lab", lab, "--modality", "CT", "--objects", "2", "--pdu", "16384",
            "--out", str(out))
        check_results(out, topology="ipv4", lab=lab, families={"ipv4"}, modalities=("CT",),
                      objects=2, pdu=16384)


def _archive_argv(lab: str) -> list[list[str]]:
    """The command lines of the lab's DICOM stores (the PACS and the receivers) now running."""
    root = f"/var/lib/teleradlab/{lab}/nodes/"
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        if "lab.dicom.pacs" in argv and any(a.startswith(f"--root={root}") for a in argv):
            found.append(argv)
    return found


def test_run_with_stores_that_flush_every_object(tmp_path: Path) -> None:
    """``archive: {sync: object}``: the lab's PACS and receiver run with --sync=object (by
    default --sync=none), a run still stores, finds and moves verified, and run.json says so."""
    topology = tmp_path / "rb-durable.yaml"
    topology.write_text((TOPOLOGIES / "ipv4.yaml").read_text() + "archive: {sync: object}\n")
    with own_lab("rb-run-default", "ipv4") as lab:
        stores = _archive_argv(lab)
        assert len(stores) == 2 and all("--sync=none" in a for a in stores), stores
    with own_lab("rb-durable", str(topology)) as lab:
        stores = _archive_argv(lab)
        assert len(stores) == 2 and all("--sync=object" in a for a in stores), stores
        out = tmp_path / "out"
        run("--lab", lab, "--modality", "CT", "--objects", "2", "--out", str(out))
        check_results(out, topology="rb-durable", lab=lab, families={"ipv4"},
                      modalities=("CT",), objects=2, sync="object")


@pytest.mark.parametrize("pdu", ["100", "16383", "-1"])
def test_run_refuses_a_pdu_below_16k(pdu: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A lab that does not exist: the option must be refused before anything else is looked at.
    res = run("--lab", "rb-nosuch", "--pdu", pdu, "--out", str(out), check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "--pdu" in res.stderr and pdu in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
