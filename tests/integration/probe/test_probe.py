"""``teleradlab probe`` against a "real remote site" made of nothing of the lab
(:mod:`tests.integration.probe.peers`: DCMTK storescp and dcmqrscp in a namespace of the
test's own, nftables, a banner server): the verdicts against each peer, each probe within a
bounded time, never a traceback. The probe runs as the real command line, inside the prober's
namespace, and its JSON is read back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, teleradlab
from tests.integration.probe import peers
from tests.integration.probe.peers import Cred, Site

#: No probe may take longer (the silent peer: two connects of --timeout each, then nothing).
BOUND_S = 90


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("prb-probe"))
    try:
        s.build()
        s.start_all()
        yield s
    finally:
        s.close()


def probe(site: Site, port: int, called: str, *extra: str, tls: str | None = None,
          client: bool = True, host: str = peers.SITE,
          ) -> tuple[dict[str, Any], dict[str, str], int, float]:
    """Run the probe in the prober's namespace; (its JSON, verdict status by requirement,
    its exit status, seconds)."""
    out = site.work / f"probe-{port}-{called}-{time.monotonic_ns()}.json"
    argv = ["ip", "netns", "exec", site.prober, sys.executable, "-m", "lab", "probe",
            host, str(port), "--called", called, "--timeout", "2", "--connects", "3",
            "--json", str(out), "--html", str(out.with_suffix(".html")), *extra]
    if tls:
        c = site.pki["client"]
        assert isinstance(c, Cred)
        argv += ["--tls-profile", tls, "--tls-ca", str(site.pki["ca"])]
        if client:
            argv += ["--tls-cert", str(c.cert), "--tls-key", str(c.key)]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BOUND_S, cwd=REPO)
    took = time.monotonic() - start
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode in (0, 1), (proc.returncode, proc.stdout, proc.stderr)
    doc = json.loads(out.read_text())
    page = out.with_suffix(".html").read_text()
    assert all(v["requirement"] in page for v in doc["verdicts"])
    return doc, {v["requirement"]: v["status"] for v in doc["verdicts"]}, proc.returncode, took


def reason(doc: dict[str, Any], requirement: str) -> str:
    return next(str(v["reason"]) for v in doc["verdicts"] if v["requirement"] == requirement)


def test_plain_storescp(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.PLAIN, "STORESCP")
    assert v["TCP connection"] == v["DICOM association"] == v["C-ECHO"] == "pass", doc
    assert v["storage contexts"] == "pass" and v["C-FIND (study level)"] == "warn"  # no Q/R
    a = doc["dicom"]["association"]
    assert a["peer_max_pdu"] == 16384 and a["implementation_version_name"].startswith("OFFIS")
    accepted = {(c["modality"], c["transfer_syntax"]) for c in doc["dicom"]["contexts"]
                if c["result"] == 0}
    assert ("CT", "1.2.840.10008.1.2") in accepted and ("MG", "1.2.840.10008.1.2.1") in accepted
    assert ("CT", "1.2.840.10008.1.2.4.50") not in accepted  # storescp: uncompressed only
    assert len(doc["dicom"]["contexts"]) == 63 and doc["dicom"]["context_batches"] == 1
    assert len(doc["dicom"]["echo_ms"]) == 5 and doc["wan"]["delay"].endswith("ms")
    assert doc["mtu"] == 1500 and rc == 0, doc
    assert not list((site.work / "received").iterdir())  # read-only: nothing stored
    assert v["C-STORE"] == "skip"


def test_allow_store(site: Site) -> None:
    """--allow-store N: the only write; the study arrives whole at storescp, and the verdict
    names it for deletion."""
    doc, v, rc, _ = probe(site, peers.PLAIN, "STORESCP", "--allow-store", "3")
    store = doc["dicom"]["store"]
    assert v["C-STORE"] == "pass" and store["stored"] == 3 and store["mbit_s"] > 0, doc
    assert rc == 0
    assert f"delete study {store['study_instance_uid']}" in reason(doc, "C-STORE")
    received = sorted((site.work / "received").iterdir())
    assert len(received) == 3 and sum(f.stat().st_size for f in received) > 3 * 500_000
    for f in received:
        f.unlink()  # the site's owner deletes it, as told


def test_tls_good(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.TLS_GOOD, "STORESCP", tls="bcp195-rfc8996")
    for req in ("TLS on the port", "TLS profile bcp195-rfc8996", "certificate validity",
                "certificate key", "certificate signature", "certificate names",
                "certificate trust", "certificate chain", "client certificate demanded",
                "DICOM association", "C-ECHO", "TLS 1.0 and 1.1 refused",
                "retired TLS profiles refused"):
        assert v[req] == "pass", (req, reason(doc, req), doc)
    assert doc["tls"]["client_auth"] == "REQUIRED"
    assert doc["dicom"]["association"]["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert rc == 0


def test_tls_good_without_client_certificate(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.TLS_GOOD, "STORESCP", tls="bcp195-rfc8996", client=False)
    assert v["DICOM association"] == "fail" and rc == 1, doc
    assert v["client certificate demanded"] == "pass"  # found without one
    assert "requires a client certificate" in reason(doc, "DICOM association")


def test_tls_expired(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.TLS_EXPIRED, "STORESCP", tls="bcp195-rfc8996")
    assert v["certificate validity"] == "fail" and "expired" in reason(doc, "certificate validity")
    assert v["certificate trust"] == "pass"  # issued by the CA all the same
    assert v["DICOM association"] == "fail"
    assert "expired" in reason(doc, "DICOM association"), doc
    assert rc == 1


def test_tls_retired_profile_only(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.TLS_RETIRED, "STORESCP", tls="bcp195-rfc8996")
    assert v["TLS profile bcp195-rfc8996"] == "fail", doc
    assert v["retired TLS profiles refused"] == "warn"
    assert "aes" in reason(doc, "retired TLS profiles refused")
    assert v["DICOM association"] == "fail" and rc == 1


def test_refused_calling_ae_pynetdicom(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.PY_PICKY, "PYQR")
    assert v["DICOM association"] == "fail" and rc == 1
    reject = doc["dicom"]["association"]["reject"]
    assert reject is not None and (reject["source"], reject["reason"]) == (1, 3), doc
    assert "calling AE title not recognized" in reason(doc, "DICOM association")
    doc, v, rc, _ = probe(site, peers.PY_PICKY, "PYQR", "--calling", "FRIEND")
    assert v["DICOM association"] == v["C-ECHO"] == "pass", doc


def test_refused_calling_ae_dcmqrscp(site: Site) -> None:
    """dcmqrscp refuses a caller not among the AE's peers, naming the called AE (its reason
    7): the probe reports the peer's own words; the same call as FRIEND is accepted."""
    doc, v, rc, _ = probe(site, peers.QR, "CLOSEDQR")
    assert v["DICOM association"] == "fail" and rc == 1
    reject = doc["dicom"]["association"]["reject"]
    assert reject is not None and reject["result"] == 1 and reject["source"] == 1, doc
    doc, v, rc, _ = probe(site, peers.QR, "CLOSEDQR", "--calling", "FRIEND")
    assert v["DICOM association"] == "pass", doc


def test_query_retrieve_dcmqrscp(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.QR, "OPENQR", "--move-to", "FRIEND")
    assert v["C-FIND (study level)"] == "pass" and doc["dicom"]["find"]["matches"] == 0
    assert v["C-MOVE to FRIEND"] == "pass" and rc == 0, doc


def test_move_destinations_pynetdicom(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.PY_QR, "PYQR", "--move-to", "FRIEND")
    assert v["C-FIND (study level)"] == "pass" and v["C-MOVE to FRIEND"] == "pass", doc
    doc, v, rc, _ = probe(site, peers.PY_QR, "PYQR", "--move-to", "NOWHERE")
    assert v["C-MOVE to NOWHERE"] == "fail" and "0xA801" in reason(doc, "C-MOVE to NOWHERE")
    assert "destination unknown" in reason(doc, "C-MOVE to NOWHERE") and rc == 1
    assert v["storage contexts"] == "fail"  # a Q/R SCP that stores nothing


def test_ipv6_peer(site: Site) -> None:
    """Over IPv6 (pynetdicom listens on it; DCMTK 3.6.7 does not): path, MTU, association."""
    doc, v, _, _ = probe(site, peers.PY_QR6, "PYQR", host=peers.SITE6)
    assert v["TCP connection"] == v["DICOM association"] == v["C-FIND (study level)"] == "pass"
    assert doc["mtu"] == 1500 and doc["host"] == peers.SITE6, doc


def test_silent_peer(site: Site) -> None:
    doc, v, rc, took = probe(site, peers.SILENT, "ANY")
    assert v["TCP connection"] == "fail" and "no answer" in reason(doc, "TCP connection")
    assert v["DICOM association"] == "skip" and rc == 1 and took < 30, (took, doc)


def test_closed_port(site: Site) -> None:
    doc, v, rc, took = probe(site, peers.CLOSED, "ANY")
    assert v["TCP connection"] == "fail" and "refused" in reason(doc, "TCP connection").lower()
    assert rc == 1 and took < 15, took


def test_tls_port_asked_in_clear(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.TLS_GOOD, "STORESCP")
    assert v["DICOM association"] == "fail" and rc == 1
    assert doc["dicom"]["association"]["speaks"] == "tls", doc


def test_clear_port_asked_in_tls(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.PLAIN, "STORESCP", tls="bcp195-rfc8996")
    assert v["TLS on the port"] == "fail" and v["DICOM association"] == "fail" and rc == 1
    assert doc["dicom"]["association"]["speaks"] == "dicom", doc


def test_port_that_is_not_dicom(site: Site) -> None:
    doc, v, rc, _ = probe(site, peers.NOT_DICOM, "ANY")
    assert v["DICOM association"] == "fail" and rc == 1
    assert doc["dicom"]["association"]["speaks"] == "other", doc
    assert "does not speak DICOM" in reason(doc, "DICOM association")


def test_wan_profile_from_the_probe(site: Site, tmp_path: Path) -> None:
    """The measured WAN is what ``--wan @probe.json`` reads."""
    from lab.model.wan import parse_measured

    doc, _, _, _ = probe(site, peers.PLAIN, "STORESCP")
    wan = parse_measured(doc, "probe.json")
    assert abs(wan.forward.delay_ms - doc["path"]["rtt_ms"] / 2) < 0.01


def test_run_predicts_over_the_probed_link(site: Site, tmp_path: Path) -> None:
    """``teleradlab run --wan @probe.json``: the lab's WAN is the one measured, every result
    row says so, and the probe's JSON and page link to the run's results."""
    doc, _, _, _ = probe(site, peers.PLAIN, "STORESCP")
    probe_json = tmp_path / "probe.json"
    probe_json.write_text(json.dumps(doc))
    (tmp_path / "probe.html").write_text("<html></html>")
    lab = f"prb-wan{site.tag.rpartition('-')[2]}"
    out = tmp_path / "prediction"
    teleradlab("up", "ipv4", "--name", lab, timeout=180)
    try:
        teleradlab("run", "--lab", lab, "--modality", "CT", "--objects", "2", "--wan",
                   f"@{probe_json}", "--out", str(out), timeout=300)
    finally:
        teleradlab("down", lab, timeout=180)
    rows = list(csv.DictReader((out / "results.csv").open()))
    name = ",".join(f"{k}={v}" for k, v in doc["wan"].items())
    assert rows and {r["wan_profile"] for r in rows} == {name}, rows[0]
    assert {float(r["wan_delay_ms"]) for r in rows} == {float(doc["wan"]["delay"][:-2])}
    linked = json.loads(probe_json.read_text())
    assert linked["prediction"] == str(out.resolve())
    assert f'href="{out.resolve()}"' in (tmp_path / "probe.html").read_text()


SWEEP = """description: one case, to predict over a probed link
matrix:
  topology: [ipv4]
  security: [{mode: none}]
  pdu: [16384]
  modality: [CT]
  wan: [none, dsl-20m-30ms]
objects: 2
"""


def test_sweep_predicts_over_the_probed_link(site: Site, tmp_path: Path) -> None:
    """``teleradlab sweep --wan @probe.json``: the file's two WANs become the measured one
    (one case), run on a lab named by the test, linked from the probe's JSON."""
    doc, _, _, _ = probe(site, peers.PLAIN, "STORESCP")
    probe_json = tmp_path / "probe.json"
    probe_json.write_text(json.dumps(doc))
    (tmp_path / "one.yaml").write_text(SWEEP)
    out = tmp_path / "sweep"
    prefix = f"prb-sw{site.tag.rpartition('-')[2]}"
    teleradlab("sweep", str(tmp_path / "one.yaml"), "--name", prefix, "--wan",
               f"@{probe_json}", "--out", str(out), timeout=400)
    rows = list(csv.DictReader((out / "results.csv").open()))
    name = ",".join(f"{k}={v}" for k, v in doc["wan"].items())
    assert rows and {r["wan_profile"] for r in rows} == {name}, rows[0]
    assert {r["case_status"] for r in rows} == {"done"}, rows
    assert len({r["case_id"] for r in rows}) == 1
    assert json.loads(probe_json.read_text())["prediction"] == str(out.resolve())
