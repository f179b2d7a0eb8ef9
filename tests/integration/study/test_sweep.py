"""``teleradlab sweep`` and ``report`` on real labs (all named report-...): the quick sweep's
cases (plain, IPsec, TLS, unimpaired and shaped WAN) really transfer and verify on one reused lab
per topology, security and WAN; every shipped sweep runs at reduced size and its report renders
with every figure; an interrupted sweep resumes where it stopped, and a case this machine cannot
do is recorded with its error while the others go on."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from lab.report import browser
from lab.study.results import read_csv

from ..conftest import REPO, leftovers, teleradlab

SWEEP_TIMEOUT = 900
OTHERS = ("ipv6-vs-ipv4", "ipv6-ipsec-algorithms", "ipv4-tls-profiles", "ipsec-vs-tls-wan",
          "demo", "object-security")


def _no_leftovers(prefix: str) -> None:
    left = {k: [x for x in v if f"tl-{prefix}-" in x or f"/{prefix}-" in x]
            for k, v in leftovers().items()}
    assert not any(left.values()), left


def _state(out: Path) -> dict[str, dict[str, Any]]:
    doc: dict[str, dict[str, Any]] = json.loads((out / "state.json").read_text())["cases"]
    return doc


def _check_report(out: Path) -> str:
    res = teleradlab("report", str(out), timeout=300)
    path = out / "report.html"
    assert str(path) in res.stdout
    images = browser.render_images(path)
    topologies = sorted({r["case_topology"] for r in read_csv(out / "results.csv")})
    assert [i.alt for i in images[5:]] == [f"Topology {t}" for t in topologies]
    assert all(i.width > 300 and i.height > 200 for i in images), images
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [
        "concurrency.png", "pdu.png", "setup.png", "throughput.png", "wan.png"]
    return path.read_text()


def _check_plain_rows(rows: list[dict[str, str]]) -> None:
    for r in rows:
        assert r["ok"] == "True", r
        assert (r["topology"], r["pdu"], r["modality"] or r["case_modality"]) == (
            r["case_topology"], r["case_pdu"], r["case_modality"]), r
        assert r["backend"] == "netns" and r["data_path_esp"] == "none (no IPsec)", r
        assert re.fullmatch(r"[0-9a-f]{40}", r["git_revision"]), r["git_revision"]
        if r["operation"] in ("store", "move"):
            assert r["verified"] == "yes" and int(r["bytes"]) > 0, r


def _check_protected_rows(rows: list[dict[str, str]]) -> None:
    """Every row says what protected and shaped its path, as its case asked."""
    for r in rows:
        assert r["ok"] == "True", r
        security, wan = r["case_security"], r["case_wan"]
        tunnel = security.startswith("ipsec") or (
            security.startswith("tls") and r["case_topology"].startswith("mixed"))
        assert (r["esp_path"] in ("kernel", "libipsec")) == tunnel, r
        if security.startswith("tls") and r["operation"] != "courier":  # media: no channel
            assert r["tls_version"].startswith("TLSv1") and r["cipher"], r
        assert (r["wan_path"] in ("netem", "userspace")) == (wan != "none"), r
        if r["operation"] in ("store", "move"):
            assert r["verified"] == "yes" and int(r["bytes"]) > 0, r


def test_quick_sweep_reuses_labs_and_runs_every_axis(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    res = teleradlab("sweep", "quick", "--out", str(out), "--name", "report-q", "--objects", "1",
                     "--repetitions", "1", timeout=SWEEP_TIMEOUT)
    _no_leftovers("report-q")
    state = _state(out)
    assert len(state) == 48 and all(s["status"] == "done" for s in state.values()), [
        (c, s.get("error")) for c, s in state.items() if s["status"] != "done"]
    rows = read_csv(out / "results.csv")
    assert pq.read_table(out / "results.parquet").num_rows == len(rows)
    # echo + store, find, move of one study per case (one repetition).
    assert Counter(r["case_id"] for r in rows) == {c: 4 for c in state}
    _check_plain_rows([r for r in rows if r["case_security"] == "none"])
    _check_protected_rows(rows)
    # One lab per topology x security x WAN served all its PDU/modality cases: 12, not 48.
    labs = {(r["case_topology"], r["case_security"], r["case_wan"], r["lab"]) for r in rows}
    assert len(labs) == 12 and len({lab for *_, lab in labs}) == 12, labs
    assert "12 labs built" in " ".join(res.stdout.split())
    text = _check_report(out)
    assert "the fastest configuration was" in text


@pytest.mark.parametrize("name", OTHERS)
def test_every_shipped_sweep_runs_at_reduced_size(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    prefix = f"report-{OTHERS.index(name)}"
    teleradlab("sweep", name, "--out", str(out), "--name", prefix, "--objects", "1",
               "--repetitions", "1", timeout=SWEEP_TIMEOUT)
    _no_leftovers(prefix)
    state = _state(out)
    # Every case ran, but those asking what this machine cannot do (the retired 'basic' TLS
    # profile: no 3DES suites in OpenSSL 3), which are recorded with that reason.
    failed = {c: s.get("error", "") for c, s in state.items() if s["status"] != "done"}
    assert all("cannot be used here" in e for e in failed.values()), failed
    rows = read_csv(out / "results.csv")
    assert len(state) == len({r["case_id"] for r in rows})
    _check_plain_rows([r for r in rows if r["case_security"] == "none"])
    _check_protected_rows([r for r in rows if r["case_id"] not in failed])
    text = _check_report(out)
    if name == "demo":  # scripts/demo's report: every figure and table has data
        assert "no data" not in text
    # The sweep and each of its runs name the package lock the environment came from.
    lock = hashlib.sha256((REPO / "requirements.lock").read_bytes()).hexdigest()
    docs = [out / "sweep.json", *sorted(out.glob("cases/*/run.json"))]
    assert len(docs) > 1
    for doc in docs:
        assert json.loads(doc.read_text())["requirements_lock_sha256"] == lock, doc


def test_faults_sweep_recovers_and_reports_the_recovery_times(tmp_path: Path) -> None:
    """The shipped faults sweep (IPsec vs TLS x each fault), one repetition of 10 objects: every
    fault hit its C-STORE and the lab recovered; the study arrived whole and committed through
    every fault, the archive's crash resumed on a new association; the report shows the recovery
    per protection and fault."""
    out = tmp_path / "faults"
    teleradlab("sweep", "faults", "--out", str(out), "--name", "flt-sw", "--objects", "10",
               "--repetitions", "1", timeout=SWEEP_TIMEOUT)
    _no_leftovers("flt-sw")
    state = _state(out)
    assert len(state) == 10 and all(s["status"] == "done" for s in state.values()), state
    stores = [r for r in read_csv(out / "results.csv") if r["operation"] == "store"]
    assert len(stores) == 10
    for r in stores:
        assert r["fault"] == ("" if r["case_fault"] == "none" else r["case_fault"]), r
        if r["fault"]:
            assert r["fault_node"] and 0.5 <= float(r["fault_at_s"]) < 1.5, r
            assert float(r["fault_seconds"]) > 0, r
        # every study arrives whole and committed, the archive's crash included (resumed)
        assert r["ok"] == "True" and r["verified"] == "yes", r
        assert r["complete"] == "True" and int(r["committed"]) == 10, r
        if r["fault"].startswith("archive-restart"):
            assert int(r["retries"]) >= 1 and float(r["recover_seconds"]) > 0, r
    assert {r["fault"].split("@")[0] for r in stores if r["case_security"] == "ipsec"} == {
        "", "archive-restart", "ike-restart", "rekey", "link-down", "loss-burst"}
    text = _check_report(out)
    assert "faults during a C-STORE" in text and "ike-restart@0.5s,seconds=1" in text


MINI = """\
description: four plain cases on one IPv4 lab
matrix: {topology: [ipv4], pdu: [0, 16384], modality: [CT, MR]}
repetitions: 1
objects: 1
"""


def _wait_for(out: Path, done: int, timeout: float = 300) -> None:
    """Until ``done`` cases are done and the next one is running."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            st = [s["status"] for s in _state(out).values()]
        except (OSError, ValueError):
            st = []
        if st.count("done") >= done and "running" in st:
            return
        time.sleep(0.05)
    raise AssertionError(f"the sweep did not get to case {done + 1}")


def test_an_interrupted_sweep_resumes(tmp_path: Path) -> None:
    sweep_file = tmp_path / "mini.yaml"
    sweep_file.write_text(MINI)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "lab", "sweep", str(sweep_file), "--out", str(out),
            "--name", "report-r"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(out, done=1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    _no_leftovers("report-r")  # the interrupted sweep took its lab down
    before = _state(out)
    finished = {c: s["finished"] for c, s in before.items() if s["status"] == "done"}
    assert finished and [s["status"] for s in before.values()].count("running") == 1
    refused = teleradlab("sweep", str(sweep_file), "--out", str(out), check=False)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    res = teleradlab("sweep", str(sweep_file), "--out", str(out), "--name", "report-r",
                     "--resume", timeout=SWEEP_TIMEOUT)
    _no_leftovers("report-r")
    assert f"{len(finished)} already finished" in " ".join(res.stdout.split())
    after = _state(out)
    assert len(after) == 4 and all(s["status"] == "done" for s in after.values())
    assert {c: after[c]["finished"] for c in finished} == finished  # not run again
    rows = read_csv(out / "results.csv")
    assert Counter(r["case_id"] for r in rows) == {c: 4 for c in after}  # echo+store+find+move
    _check_plain_rows(rows)


def test_retry_failed_reruns_only_the_failed_cases(tmp_path: Path) -> None:
    sweep_file = tmp_path / "two.yaml"
    # The retired 'basic' profile needs 3DES suites, which OpenSSL 3 does not have: that case
    # fails (before its lab is built) every time.
    sweep_file.write_text("matrix: {topology: [ipv4], security: [{mode: none}, "
                          "{mode: tls, tls: {profile: basic}}]}\nobjects: 1\n")
    out = tmp_path / "out"
    teleradlab("sweep", str(sweep_file), "--out", str(out), "--name", "report-f",
               timeout=SWEEP_TIMEOUT)
    first = _state(out)
    assert sorted(s["status"] for s in first.values()) == ["done", "failed"]
    failed = next(s for s in first.values() if s["status"] == "failed")
    assert "'basic' cannot be used here" in failed["error"], failed
    res = teleradlab("sweep", str(sweep_file), "--out", str(out), "--name", "report-f",
                     "--resume", "--retry-failed", timeout=SWEEP_TIMEOUT)
    _no_leftovers("report-f")
    assert "1 already finished" in " ".join(res.stdout.split())
    again = _state(out)
    for case, s in first.items():
        same = again[case]["finished"] == s["finished"]
        assert same == (s["status"] == "done"), (case, s, again[case])
    assert len(read_csv(out / "results.csv")) == 4 + 1  # echo/store/find/move + the failure
