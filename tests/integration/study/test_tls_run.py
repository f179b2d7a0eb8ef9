"""DICOM TLS in real labs through the command line: every shipped topology runs echo, store,
find and move over TLS with mutual authentication (the mixed ones inside the IPsec transition
tunnel); on the WAN only TLS records cross, and the patient's name never does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lab import topology as topology_file
from lab.dicom.data.generate import generate_study
from lab.model.names import LabPaths
from lab.study.results import read_csv

from ..capture import PATIENT, capture, contains, frames, tcp_streams, tls_records
from ..conftest import teleradlab


@pytest.mark.parametrize("topology", topology_file.shipped())
def test_run_over_tls_on_every_shipped_topology(topology: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    teleradlab("run", topology, "--security", "tls", "--objects", "3", "--out", str(out),
               timeout=300)
    rows = read_csv(out / "results.csv")
    assert rows and all(r["ok"] == "True" for r in rows), rows
    assert {r["operation"] for r in rows} == {"echo", "store", "find", "move"}
    for r in rows:
        assert r["security"] == "tls" and r["tls_version"] == "TLSv1.3", r
        assert r["cipher"].startswith("TLS_") and float(r["handshake_seconds"]) > 0
    assert all(r["verified"] == "yes" for r in rows if r["operation"] in ("store", "move"))
    tunnelled = topology.startswith("mixed")
    assert all((r["esp_path"] != "") == tunnelled for r in rows)


def test_cipher_choice_is_negotiated(tmp_path: Path) -> None:
    out = tmp_path / "out"
    teleradlab("run", "ipv4", "--security",
               "tls,profile=extended,cipher=DHE-RSA-AES128-GCM-SHA256", "--objects", "2",
               "--out", str(out), timeout=300)
    rows = read_csv(out / "results.csv")
    assert rows and all(r["ok"] == "True" for r in rows)
    assert {(r["tls_version"], r["cipher"]) for r in rows} == {
        ("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256")}


def test_unavailable_profile_is_refused_before_anything_starts() -> None:
    res = teleradlab("up", "ipv4", "--name", "tls-basic", "--security", "tls,profile=basic",
                     check=False)
    assert res.returncode != 0
    assert "security.tls.profile: 'basic' cannot be used here" in res.stderr
    assert "bcp195-rfc8996" in res.stderr  # what this machine can do
    assert not LabPaths("tls-basic").state_dir.exists()


def test_only_tls_records_cross_the_wan(tmp_path: Path) -> None:
    lab = "wire-tls"
    teleradlab("down", lab, check=False)
    teleradlab("up", "ipv4", "--name", lab, "--security", "tls")
    try:
        study = generate_study("CT", tmp_path / "study", objects=2)
        pki = LabPaths(lab).data_dir / "pki"
        pcap = tmp_path / "wan.pcap"
        # One interface of the WAN router (on 'any' each packet is seen twice, in and out, and
        # tshark does not dissect the second copy).
        with capture(lab, "wan", pcap, interface="gw-a"):
            teleradlab("exec", "--lab", lab, "modality", "--", sys.executable, "-m",
                       "lab.dicom.scu", "store", "--host=198.18.2.10", "--port=2762",
                       "--tls-profile=bcp195-rfc8996", f"--tls-cert={pki / 'tls-modality.crt'}",
                       f"--tls-key={pki / 'tls-modality.key'}", f"--tls-ca={pki / 'ca.crt'}",
                       *map(str, study.files))
        assert not contains(pcap, PATIENT)
        # Every TCP byte on the WAN belongs to the DICOM TLS connection ...
        ports = {p for row in frames(pcap, "tcp.srcport", "tcp.dstport", display="tcp.len > 0")
                 for p in row}
        assert "2762" in ports and all(p == "2762" or int(p) >= 32768 for p in ports), ports
        # ... and, reassembled, each direction is nothing but TLS records, mostly encrypted data.
        streams = tcp_streams(pcap, 2762)
        assert len(streams) == 2
        for data in streams.values():
            records = tls_records(data)
            assert records[0][0] == 22  # a handshake opens each direction
            assert sum(n for kind, n in records if kind == 23) > 0.9 * sum(n for _, n in records) \
                or len(data) < 10_000
        assert sum(len(d) for d in streams.values()) > sum(f.stat().st_size for f in study.files)
    finally:
        teleradlab("down", lab)
