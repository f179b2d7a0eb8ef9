"""DICOM TLS between the lab's own programs (``python -m lab.dicom.pacs`` / ``scu``), over
loopback with real handshakes: store, echo, find and move; clients without a certificate, with
one from another CA, or offering only what the profile forbids are refused while the SCP keeps
serving. Certificates come from a throwaway lab CA (lab.security.pki.authority)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.dicom.archive.store import study_paths
from lab.dicom.data.generate import generate_study
from lab.dicom.reports import parse_output
from lab.dicom.ul.tlsopts import KEYLOG_ENV
from lab.security.pki.authority import Credential, create_ca

PROFILE = "bcp195-rfc8996"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    ca: Path
    pacs: Credential
    receiver: Credential
    client: Credential
    rogue: Credential


def _port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = create_ca(d / "ca", "tls test CA")
    both = {"server", "client"}
    rogue = create_ca(d / "rogue", "someone else's CA").issue("intruder", usages={"client"})
    return Pki(ca.cert_path, ca.issue("pacs", ips=[HOST], usages=both),
               ca.issue("receiver", ips=[HOST], usages=both),
               ca.issue("modality", usages={"client"}), rogue)


def _tls(cred: Credential | None, ca: Path) -> list[str]:
    args = [f"--tls-profile={PROFILE}", f"--tls-ca={ca}"]
    if cred is not None:
        args += [f"--tls-cert={cred.cert_path}", f"--tls-key={cred.key_path}"]
    return args


@dataclass
class Scp:
    port: int
    root: Path
    log: Path
    proc: subprocess.Popen[str]


def _start(root: Path, port: int, tls: list[str], *extra: str) -> Scp:
    log = root.with_suffix(".log")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.dicom.pacs", f"--root={root}", f"--bind={HOST}",
         f"--port={port}", "-v", *tls, *extra],
        stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening" in line and "DICOM TLS" in line, log.read_text()
    return Scp(port, root, log, proc)


@pytest.fixture(scope="module")
def scps(certs: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scp, Scp]]:
    d = tmp_path_factory.mktemp("scps")
    receiver = _start(d / "received", _port(), _tls(certs.receiver, certs.ca), "--ae=MODALITY",
                      "--storage-only")
    pacs = _start(d / "store", _port(), _tls(certs.pacs, certs.ca),
                  f"--destination=MODALITY={HOST}:{receiver.port}")
    yield pacs, receiver
    for scp in (pacs, receiver):
        scp.proc.terminate()
        scp.proc.wait(timeout=10)


def scu(port: int, tls: list[str], operation: str, *args: str) -> dict[str, object]:
    res = subprocess.run([sys.executable, "-m", "lab.dicom.scu", operation, f"--host={HOST}",
                          f"--port={port}", "--timeout=10", *tls, *args],
                         capture_output=True, text=True, timeout=60, check=False)
    doc: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    assert (res.returncode == 0) == doc["ok"], res.stderr
    report = parse_output(operation, res.stdout)  # the orchestrator's reader takes it as it is
    assert report.document() == doc
    return doc


def _assert_tls(doc: dict[str, object]) -> None:
    assert doc["tls_version"] in ("TLSv1.2", "TLSv1.3"), doc
    assert any(aead in str(doc["cipher"]) for aead in ("GCM", "CHACHA20")), doc
    assert isinstance(doc["handshake_seconds"], float) and doc["handshake_seconds"] > 0, doc


def test_store_echo_find_move_over_tls(certs: Pki, scps: tuple[Scp, Scp],
                                       tmp_path: Path) -> None:
    pacs, receiver = scps
    good = _tls(certs.client, certs.ca)
    study = generate_study("CT", tmp_path / "ct", objects=3, seed=41)
    stored = scu(pacs.port, good, "store", *map(str, study.files))
    assert stored["ok"] and stored["objects"] == 3, stored
    _assert_tls(stored)
    echo = scu(pacs.port, good, "echo")
    assert echo["ok"] and echo["status"] == 0
    _assert_tls(echo)
    key = f"--key=StudyInstanceUID={study.study_instance_uid}"
    found = scu(pacs.port, good, "find", "--level=STUDY", key)
    assert found["ok"] and len(found["matches"]) == 1, found  # type: ignore[arg-type]
    _assert_tls(found)
    moved = scu(pacs.port, good, "move", "--level=STUDY", key, "--dest=MODALITY")
    assert moved["ok"] and moved["completed"] == 3, moved
    _assert_tls(moved)
    assert len(study_paths(receiver.root, study.study_instance_uid)) == 3
    assert len(study_paths(pacs.root, study.study_instance_uid)) == 3
    assert "TLS from 127.0.0.1: TLSv1" in pacs.log.read_text()
    assert "TLS from 127.0.0.1: TLSv1" in receiver.log.read_text()  # the move came over TLS


def test_plain_client_gets_nothing_from_a_tls_scp(scps: tuple[Scp, Scp]) -> None:
    doc = scu(scps[0].port, [], "echo")
    assert not doc["ok"], doc


@pytest.mark.parametrize("who", ["no certificate", "untrusted CA"])
def test_bad_client_refused_and_scp_keeps_serving(certs: Pki, scps: tuple[Scp, Scp],
                                                  who: str) -> None:
    pacs = scps[0]
    before = pacs.log.read_text().count("TLS handshake with 127.0.0.1 refused")
    cred = None if who == "no certificate" else certs.rogue
    doc = scu(pacs.port, _tls(cred, certs.ca), "echo")
    assert not doc["ok"] and "tls_version" not in doc, doc
    _wait_for(lambda: pacs.log.read_text().count("TLS handshake with 127.0.0.1 refused") > before)
    good = scu(pacs.port, _tls(certs.client, certs.ca), "echo")
    assert good["ok"], good


def _client(certs: Pki, *, version: ssl.TLSVersion, ciphers: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(certs.ca))
    ctx.load_cert_chain(str(certs.client.cert_path), str(certs.client.key_path))
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize(("version", "ciphers", "allowed"), [
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", True),  # in the profile
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA", False),  # CBC-SHA1: not in it
    (ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0", False),  # below its TLS 1.2 minimum
])
def test_forbidden_version_or_cipher_refused(certs: Pki, scps: tuple[Scp, Scp],
                                             version: ssl.TLSVersion, ciphers: str,
                                             allowed: bool) -> None:
    pacs = scps[0]
    before = pacs.log.read_text().count("TLS handshake with 127.0.0.1 refused")
    ctx = _client(certs, version=version, ciphers=ciphers)
    with socket.create_connection((HOST, pacs.port), timeout=10) as raw:
        if allowed:
            with ctx.wrap_socket(raw, server_hostname=HOST) as conn:
                assert conn.version() == "TLSv1.2" and conn.cipher()[0] == ciphers
            return
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname=HOST)
    _wait_for(lambda: pacs.log.read_text().count("TLS handshake with 127.0.0.1 refused") > before)
    assert scu(pacs.port, _tls(certs.client, certs.ca), "echo")["ok"]


def test_incomplete_tls_options_are_refused(certs: Pki, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "lab.dicom.pacs", f"--root={tmp_path}",
                          f"--tls-profile={PROFILE}", f"--tls-ca={certs.ca}"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and "--tls-profile needs --tls-cert" in res.stderr


def _wait_for(condition: object) -> None:
    deadline = time.monotonic() + 10
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-ca=/nonexistent"], "--tls-ca needs --tls-profile"),
    ([f"--tls-profile={PROFILE}"], "--tls-profile needs --tls-ca"),
    ([f"--tls-profile={PROFILE}", "--tls-ca=/nonexistent"], "no such file"),
])
def test_scu_reports_bad_tls_options(args: list[str], message: str) -> None:
    doc = scu(_port(), args, "echo")
    assert not doc["ok"] and message in str(doc["error"]), doc


def test_scu_cert_needs_its_key(certs: Pki) -> None:
    doc = scu(_port(), [f"--tls-profile={PROFILE}", f"--tls-ca={certs.ca}",
                        f"--tls-cert={certs.client.cert_path}"], "echo")
    assert not doc["ok"] and "--tls-cert and --tls-key go together" in str(doc["error"]), doc


def test_later_associations_of_a_process_resume_the_tls_session(
        certs: Pki, scps: tuple[Scp, Scp]) -> None:
    """TLS 1.3 resumption (RFC 8446 2.2) between the associations one process opens with the
    same options: the first makes a full handshake, the next resume (the archive still
    requires, and has, the client's certificate: the associations are accepted)."""
    import argparse

    from lab.dicom.ul import tlsopts
    from lab.dicom.ul.requestor import open_association

    options = argparse.Namespace(tls_profile=PROFILE, tls_cert=certs.client.cert_path,
                                 tls_key=certs.client.key_path, tls_ca=certs.ca)
    resumed = []
    for _ in range(3):
        ctx = tlsopts.client_context(options)
        assoc, _ = open_association(HOST, scps[0].port, called="PACS", calling="MODALITY",
                                    contexts=[("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])],
                                    max_pdu=0, timeout=10, tls=ctx)
        assert assoc.echo() == 0
        assoc.release()
        resumed.append(assoc.tls["tls_resumed"])
    assert resumed == [False, True, True]


def test_store_spread_over_associations_with_a_window(certs: Pki, scps: tuple[Scp, Scp],
                                                      tmp_path: Path) -> None:
    """``store --associations 3``: three TLS associations at once, each granted the window
    proposed; every object stored once."""
    pacs, _ = scps
    before = pacs.log.read_text().count("TLS from 127.0.0.1")
    study = generate_study("CT", tmp_path / "ct", objects=7, seed=43)
    stored = scu(pacs.port, _tls(certs.client, certs.ca), "store", "--associations=3",
                 "--window=3", *map(str, study.files))
    assert stored["ok"] and stored["objects"] == 7, stored
    assert stored["associations"] == 3 and stored["window"] == 3, stored
    assert stored["statuses"] == {"0x0000": 7}, stored
    assert pacs.log.read_text().count("TLS from 127.0.0.1") - before == 3
    assert len(study_paths(pacs.root, study.study_instance_uid)) == 7


@pytest.mark.parametrize("how", ["option", "environment"])
def test_scu_writes_its_tls_secrets_when_asked(certs: Pki, scps: tuple[Scp, Scp],
                                               tmp_path: Path, how: str) -> None:
    """--tls-keylog FILE, or TELERADLAB_TLS_KEYLOG (what `teleradlab capture` sets): the TLS 1.3
    secrets in the NSS key-log format, one line per secret of the handshake."""
    keylog = tmp_path / "keys.log"
    pacs, _ = scps
    argv = [sys.executable, "-m", "lab.dicom.scu", "echo", f"--host={HOST}",
            f"--port={pacs.port}", "--timeout=10", *_tls(certs.client, certs.ca)]
    env = dict(os.environ)
    env.pop(KEYLOG_ENV, None)
    if how == "option":
        argv.append(f"--tls-keylog={keylog}")
    else:
        env[KEYLOG_ENV] = str(keylog)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert res.returncode == 0, res.stderr
    lines = [ln.split() for ln in keylog.read_text().splitlines() if not ln.startswith("#")]
    labels = {ln[0] for ln in lines}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels, labels
    assert all(len(ln) == 3 and len(ln[1]) == 64 for ln in lines)  # label, client random, secret
    assert len({ln[1] for ln in lines}) == 1  # one handshake

