"""The probe's judgements (lab.probe.verdicts) and its pure parts (batches, profiles from
suites, the measured WAN), on findings made by hand: each threshold moves a verdict."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lab.probe import contexts, tlsscan
from lab.probe.findings import (
    Association,
    Certificate,
    ContextResult,
    DicomFindings,
    Operation,
    PathFindings,
    ProbeReport,
    Reject,
    StoreResult,
    TlsFindings,
)
from lab.probe.path import jitter
from lab.probe.probe import wan_of
from lab.probe.verdicts import judge

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def cert(**change: object) -> Certificate:
    base = dict(subject="CN=pacs", issuer="CN=ca", not_before="2026-01-01T00:00:00+00:00",
                not_after="2027-06-01T00:00:00+00:00", days_left=180.0, key_type="RSA",
                key_bits=2048, signature_hash="sha256", names=["198.18.0.2"], chain_length=1,
                trusted=True)
    return Certificate.model_validate({**base, **change})


def report(**change: object) -> ProbeReport:
    base = ProbeReport(host="198.18.0.2", port=11112, called="PACS", calling="US",
                       tls_profile=None, started="now", seconds=1.0,
                       path=PathFindings(connect_ms=[1.0, 1.2, 1.1], rtt_ms=1.1, jitter_ms=0.05,
                                         mtu=1500))
    return base.model_copy(update=change)


def statuses(r: ProbeReport) -> dict[str, str]:
    return {v.requirement: v.status for v in judge(r, NOW)}


def test_unreachable_peer_fails_and_skips_dicom() -> None:
    r = report(path=PathFindings(failures=["no answer within 3 s"] * 2))
    v = statuses(r)
    assert v == {"TCP connection": "fail", "DICOM association": "skip"}


def test_small_mtu_warns() -> None:
    r = report(path=PathFindings(connect_ms=[1.0], rtt_ms=1.0, jitter_ms=0.0, mtu=1380))
    assert statuses(r)["path MTU"] == "warn"


@pytest.mark.parametrize(("change", "requirement", "status"), [
    ({}, "certificate validity", "pass"),
    ({"days_left": -2.0}, "certificate validity", "fail"),
    ({"days_left": 10.0}, "certificate validity", "warn"),
    ({"not_before": "2027-01-01T00:00:00+00:00"}, "certificate validity", "fail"),
    ({"key_bits": 1024}, "certificate key", "fail"),
    ({"key_type": "EC secp256r1", "key_bits": 256}, "certificate key", "pass"),
    ({"signature_hash": "sha1"}, "certificate signature", "fail"),
    ({"names": ["pacs.example.org"]}, "certificate names", "fail"),
    ({"trusted": False, "trust_error": "not issued by a CA of ca.pem"}, "certificate trust",
     "fail"),
    ({"trusted": None}, "certificate trust", "skip"),
])
def test_certificate_thresholds(change: dict[str, object], requirement: str, status: str) -> None:
    tls = TlsFindings(speaks_tls=True, versions={"TLS 1.2": True}, client_auth="REQUIRED",
                      certificate=cert(**change))
    assert statuses(report(tls=tls, tls_profile="bcp195-rfc8996"))[requirement] == status


def test_tls_profiles_versions_and_client_auth() -> None:
    suites = {"TLS 1.0": ["AES128-SHA"], "TLS 1.1": [], "TLS 1.2": ["AES128-SHA"], "TLS 1.3": []}
    tls = TlsFindings(speaks_tls=True, versions={k: bool(s) for k, s in suites.items()},
                      suites=suites, client_auth="DISABLED", profiles=tlsscan.profiles(suites))
    v = statuses(report(tls=tls, tls_profile="bcp195-rfc8996"))
    assert v["TLS profile bcp195-rfc8996"] == "fail"
    assert v["retired TLS profiles refused"] == "warn"
    assert v["TLS 1.0 and 1.1 refused"] == "warn"
    assert v["client certificate demanded"] == "warn"
    assert v["certificate"] == "skip"


def test_profiles_from_suites() -> None:
    accepted = {p.name for p in tlsscan.profiles({"TLS 1.3": ["TLS_AES_128_GCM_SHA256"]})
                if p.accepted}
    assert accepted == {"bcp195-rfc8996", "non-downgrading", "extended"}
    accepted = {p.name for p in tlsscan.profiles({"TLS 1.2": ["DES-CBC3-SHA"]}) if p.accepted}
    assert accepted == {"aes", "basic"}  # B.3 falls back to 3DES; B.1 is 3DES
    assert not any(p.accepted for p in tlsscan.profiles({"TLS 1.2": ["AES256-SHA256"]}))


def test_no_tls_on_the_port() -> None:
    v = statuses(report(tls=TlsFindings(speaks_tls=False, error="wrong version number"),
                        tls_profile="aes"))
    assert v["TLS on the port"] == "fail"


def _dicom(**change: object) -> DicomFindings:
    rows = [ContextResult(modality=m, sop_class="1.2", transfer_syntax=ts, result=0)
            for m in ("CT", "MR") for ts in contexts.UNCOMPRESSED]
    base = DicomFindings(association=Association(accepted=True, seconds=0.01, peer_max_pdu=16384,
                                                 implementation_class_uid="1.2.3"),
                         echo_ms=[0.5], echo_status=0, contexts=rows, context_batches=1,
                         find=Operation(offered=True, status=0))
    return base.model_copy(update=change)


def test_dicom_verdicts() -> None:
    v = statuses(report(dicom=_dicom()))
    assert v["DICOM association"] == v["C-ECHO"] == v["maximum PDU"] == "pass"
    assert v["storage contexts"] == v["C-FIND (study level)"] == "pass"
    assert v["C-MOVE"] == "skip"


def test_rejection_and_move_and_small_pdu() -> None:
    rejected = _dicom(association=Association(accepted=False, reject=Reject(
        result=1, source=1, reason=3, text="calling AE title not recognized")))
    r = report(dicom=rejected)
    assert statuses(r) == {"TCP connection": "pass", "path MTU": "pass",
                           "DICOM association": "fail"}
    assert "US -> PACS" in judge(r, NOW)[-1].reason
    d = _dicom(move=Operation(offered=True, status=0xA801), move_destination="NOWHERE",
               association=Association(accepted=True, peer_max_pdu=4096))
    v = {x.requirement: x for x in judge(report(dicom=d), NOW)}
    assert v["C-MOVE to NOWHERE"].status == "fail"
    assert "destination unknown" in v["C-MOVE to NOWHERE"].reason
    assert v["maximum PDU"].status == "warn"


def test_store_verdicts() -> None:
    made = dict(objects=2, bytes=1_000_000, study_instance_uid="2.25.7", patient_id="P",
                patient_name="TELERAD^PROBE")
    ok = StoreResult(**made, stored=2, statuses=[0, 0], seconds=0.5, mbit_s=16.0)
    v = {x.requirement: x for x in judge(report(dicom=_dicom(store=ok)), NOW)}
    assert v["C-STORE"].status == "pass" and "delete study 2.25.7" in v["C-STORE"].reason
    half = StoreResult(**made, stored=1, statuses=[0, 0xA700], seconds=0.5)
    v = {x.requirement: x for x in judge(report(dicom=_dicom(store=half)), NOW)}
    assert v["C-STORE"].status == "fail" and "1 of 2 stored" in v["C-STORE"].reason


def test_storage_contexts_missing_modality_warns_none_fails() -> None:
    rows = [ContextResult(modality="CT", sop_class="1", transfer_syntax="1.2.840.10008.1.2",
                          result=0),
            ContextResult(modality="MR", sop_class="2", transfer_syntax="1.2.840.10008.1.2",
                          result=3)]
    assert statuses(report(dicom=_dicom(contexts=rows)))["storage contexts"] == "warn"
    none = [r.model_copy(update={"result": 3}) for r in rows]
    assert statuses(report(dicom=_dicom(contexts=none)))["storage contexts"] == "fail"


def test_batches_respect_the_128_limit() -> None:
    pairs = contexts.pairs()
    assert len(pairs) == 7 * len(contexts.TRANSFER_SYNTAXES)
    assert [len(b) for b in contexts.batches(pairs)] == [len(pairs)]
    assert [len(b) for b in contexts.batches(pairs, 20)] == [20, 20, 20, 3]
    assert [len(b) for b in contexts.batches(list(range(300)), 128)] == [128, 128, 44]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 128"):
        list(contexts.batches(pairs, 129))


def test_measured_wan_and_jitter() -> None:
    assert jitter([10.0, 10.4, 12.0]) == pytest.approx(0.5)
    assert jitter([10.0]) == 0.0
    path = PathFindings(connect_ms=[20.0, 24.0], rtt_ms=22.0, jitter_ms=1.0)
    assert wan_of(path) == {"delay": "11.000ms", "jitter": "1.000ms"}
    assert wan_of(PathFindings()) == {}


def test_worst() -> None:
    assert report().worst() == "pass"
    assert report(verdicts=judge(report(path=PathFindings()), NOW)).worst() == "fail"
