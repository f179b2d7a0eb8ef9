"""The certificate reading (lab.probe.certs) on certificates made here, the probe's HTML page
(lab.report.probe), and the measured WAN as ``--wan @probe.json`` for run, sweep and wan set."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.cli.main import main
from lab.model.wan import ProfileError, parse_measured
from lab.probe.certs import judge_chain, matches
from lab.probe.findings import (
    Association,
    ContextResult,
    DicomFindings,
    PathFindings,
    ProbeReport,
    Verdict,
)
from lab.report import probe as page
from lab.study.sweep import spec

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def _cert(subject: str, issuer_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey,
          issuer: str, san: list[x509.GeneralName] | None, days: int = 90,
          ) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=10))
         .not_valid_after(NOW + dt.timedelta(days=days)))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA384())


def test_judge_chain(tmp_path: Path) -> None:
    ca_key, leaf_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("ca", ca_key, ca_key, "ca", None, 365)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    san: list[x509.GeneralName] = [x509.DNSName("pacs.example.org"),
                                   x509.IPAddress(ipaddress.ip_address("198.18.0.2"))]
    leaf = _cert("pacs", ca_key, leaf_key, "ca", san, days=5)
    found = judge_chain([leaf], "198.18.0.2", tmp_path / "ca.pem", now=NOW)
    assert found.trusted and found.key_type == "EC secp256r1" and found.key_bits == 256
    assert found.signature_hash == "sha384" and found.days_left == pytest.approx(5.0)
    assert found.names == ["pacs.example.org", "198.18.0.2"]
    assert found.chain_problems == []
    old_ca = _cert("old ca", ca_key, ca_key, "old ca", None, -1)  # expired yesterday
    found = judge_chain([leaf, old_ca], "198.18.0.2", None, now=NOW)
    assert len(found.chain_problems) == 1 and "CN=old ca: outside its validity" in \
        found.chain_problems[0]
    forged = _cert("pacs", other_key, leaf_key, "ca", san)  # right issuer name, wrong key
    found = judge_chain([forged], "198.18.0.2", tmp_path / "ca.pem", now=NOW)
    assert found.trusted is False and "not issued" in str(found.trust_error)
    assert judge_chain([forged], "198.18.0.2", None, now=NOW).trusted is None


def test_names() -> None:
    assert matches("198.18.0.2", ["pacs", "198.18.0.2"])
    assert not matches("198.18.0.3", ["198.18.0.2"])
    assert matches("a.example.org", ["*.example.org"])
    assert not matches("a.b.example.org", ["*.example.org"])
    assert matches("2001:db8::1", ["2001:DB8:0::1"])


def _report() -> ProbeReport:
    d = DicomFindings(association=Association(accepted=True, peer_max_pdu=16384),
                      contexts=[ContextResult(modality="CT", sop_class="1.2",
                                              transfer_syntax="1.2.840.10008.1.2", result=0)],
                      context_batches=1)
    return ProbeReport(host="198.18.0.2", port=104, called="<b>PACS</b>", calling="US",
                       tls_profile=None, started="now", seconds=2.0, dicom=d,
                       path=PathFindings(connect_ms=[2.0, 2.2], rtt_ms=2.1, jitter_ms=0.05),
                       verdicts=[Verdict(requirement="DICOM association", status="fail",
                                         reason="<script>alert(1)</script>")],
                       wan={"delay": "1.050ms", "jitter": "0.050ms"})


def test_page_escapes_the_peers_words() -> None:
    html = page.render(_report(), "p.json")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;PACS" in html and "--wan @p.json" in html
    assert '<td class="fail">fail</td>' in html and '<td class="pass">yes</td>' in html


def test_parse_measured() -> None:
    wan = parse_measured(_report().model_dump(mode="json"), "p.json")
    assert wan.name == "delay=1.050ms,jitter=0.050ms"
    assert wan.forward.delay_ms == pytest.approx(1.05) and wan.reverse.jitter_ms == 0.05
    with pytest.raises(ProfileError, match=r"p.json: wan: no measured WAN"):
        parse_measured({"wan": {}}, "p.json")
    with pytest.raises(ProfileError, match=r"p.json: wan.delay: expected a time"):
        parse_measured({"wan": {"delay": "soon"}}, "p.json")


def test_sweep_over_the_probed_wan(tmp_path: Path) -> None:
    probe_json = tmp_path / "probe.json"
    probe_json.write_text(_report().model_dump_json())
    loaded = spec.load(spec.resolve_path("ipsec-vs-tls-wan"))
    moved = spec.over_wan(loaded, "delay=1.050ms,jitter=0.050ms")
    assert {c.wan for c in moved.cases} == {"delay=1.050ms,jitter=0.050ms"}
    assert len({c.case_id for c in moved.cases}) == len(moved.cases) < len(loaded.cases)
    assert [c.index for c in moved.cases] == list(range(len(moved.cases)))
    result = CliRunner().invoke(main, ["sweep", "ipsec-vs-tls-wan", "--list",
                                       "--wan", f"@{probe_json}"])
    assert result.exit_code == 0, result.output
    assert "delay-1.050ms-jitter-0.050ms" in result.output


def test_bad_probe_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for arg in (f"@{bad}", f"@{tmp_path / 'missing.json'}"):
        result = CliRunner().invoke(main, ["sweep", "quick", "--list", "--wan", arg])
        assert result.exit_code == 2 and "cannot read a probe's JSON" in result.output


def test_link_prediction(tmp_path: Path) -> None:
    probe_json = tmp_path / "probe.json"
    probe_json.write_text(_report().model_dump_json())
    page.write(_report(), tmp_path / "probe.html")
    page.link_prediction(probe_json, tmp_path / "results")
    assert json.loads(probe_json.read_text())["prediction"] == str(tmp_path / "results")
    assert f'href="{tmp_path / "results"}"' in (tmp_path / "probe.html").read_text()
