"""Pass / warn / fail per requirement, from what a probe found (:class:`ProbeReport`): the
judgement, kept apart from the measuring so that it can be read, changed and unit-tested on
its own. A requirement that could not be tested (an earlier one failed, or it was not asked
for) is ``skip``, with the reason.

Thresholds, each with its source:

- certificate: expired or not yet valid fails; under :data:`EXPIRY_WARN_DAYS` days left warns;
  RSA/DSA keys under 2048 bits and EC keys under 256 fail (BCP 195 / RFC 9325 4.5, NIST SP
  800-57); MD5 or SHA-1 signatures fail (RFC 9155); the address dialled must be among the
  certificate's names (RFC 6125, as the lab's clients check);
- TLS: TLS 1.0 and 1.1 accepted warn (RFC 8996 deprecates them); a retired PS3.15 profile
  (B.1 Basic, B.3 AES) accepted warns; a client certificate not demanded warns (the Annex B
  profiles authenticate both ends);
- DICOM: a Maximum Length under :data:`SMALL_PDU` warns (many PDUs per object; the common
  defaults are 16 KiB, pynetdicom's 16382 bytes); storage
  contexts pass when every modality is accepted in an uncompressed transfer syntax, which
  every Storage SCP must accept (PS3.4 B.4.1: Implicit VR Little Endian);
- path: an MTU under :data:`SMALL_MTU` warns (an IPsec tunnel adds up to ~80 bytes, RFC 4303).
"""

from __future__ import annotations

from datetime import UTC, datetime

from lab.probe.certs import matches
from lab.probe.findings import Certificate, ProbeReport, Status, TlsFindings, Verdict
from lab.probe.syntaxes import UNCOMPRESSED

EXPIRY_WARN_DAYS = 30
SMALL_PDU = 8192
SMALL_MTU = 1400
WEAK_HASHES = frozenset({"md5", "sha1"})


def _v(requirement: str, status: Status, reason: str) -> Verdict:
    return Verdict(requirement=requirement, status=status, reason=reason)


def path_verdicts(report: ProbeReport) -> list[Verdict]:
    p = report.path
    if not p.connect_ms:
        return [_v("TCP connection", "fail", "no connection to "
                   f"{report.host}:{report.port}: {'; '.join(p.failures) or 'no answer'}")]
    out = [_v("TCP connection", "pass", f"{len(p.connect_ms)} connects, RTT {p.rtt_ms} ms "
              f"(median), jitter +-{p.jitter_ms} ms")]
    if p.mtu is None:
        out.append(_v("path MTU", "skip", "the kernel gave no MTU for the peer"))
    elif p.mtu < SMALL_MTU:
        out.append(_v("path MTU", "warn", f"{p.mtu} bytes: an IPsec tunnel leaves ~80 less "
                      "for TCP (RFC 4303)"))
    else:
        out.append(_v("path MTU", "pass", f"{p.mtu} bytes"))
    return out


def certificate_verdicts(cert: Certificate, host: str, now: datetime) -> list[Verdict]:
    out = []
    if datetime.fromisoformat(cert.not_before) > now:
        out.append(_v("certificate validity", "fail", f"not valid before {cert.not_before}"))
    elif cert.days_left < 0:
        out.append(_v("certificate validity", "fail", f"expired on {cert.not_after}"))
    elif cert.days_left < EXPIRY_WARN_DAYS:
        out.append(_v("certificate validity", "warn", f"expires in {cert.days_left:.0f} days "
                      f"({cert.not_after})"))
    else:
        out.append(_v("certificate validity", "pass", f"valid until {cert.not_after}"))
    least = 256 if cert.key_type.startswith(("EC", "Ed")) else 2048
    out.append(_v("certificate key", "pass" if cert.key_bits >= least else "fail",
                  f"{cert.key_type}, {cert.key_bits} bits (at least {least})"))
    weak = cert.signature_hash in WEAK_HASHES
    out.append(_v("certificate signature", "fail" if weak else "pass",
                  f"signed with {cert.signature_hash or 'a hash-free algorithm'}"
                  + (" (RFC 9155: no longer acceptable)" if weak else "")))
    named = matches(host, cert.names)
    out.append(_v("certificate names", "pass" if named else "fail",
                  f"{host} {'is' if named else 'is not'} among {', '.join(cert.names) or '-'}"))
    out.append(_v("certificate chain", "fail" if cert.chain_problems else "pass",
                  "; ".join(cert.chain_problems) or f"{cert.chain_length} certificate(s) sent, "
                  "none above the leaf expired, weakly signed or with a short key"))
    if cert.trusted is None:
        out.append(_v("certificate trust", "skip", "no --tls-ca given"))
    else:
        out.append(_v("certificate trust", "pass" if cert.trusted else "fail",
                      "issued by the CA given" if cert.trusted else str(cert.trust_error)))
    return out


def tls_verdicts(tls: TlsFindings, report: ProbeReport, now: datetime) -> list[Verdict]:
    asked = report.tls_profile
    if not tls.speaks_tls:
        return [_v("TLS on the port", "fail", f"no TLS handshake: {tls.error}")]
    versions = ", ".join(v for v, ok in tls.versions.items() if ok) or "a handshake"
    out = [_v("TLS on the port", "pass", f"accepts {versions}")]
    accepted = {p.name: p for p in tls.profiles}
    if asked in accepted:
        prof = accepted[asked]
        others = ", ".join(p.name for p in tls.profiles if p.accepted) or "none"
        out.append(_v(f"TLS profile {asked}", "pass" if prof.accepted else "fail",
                      f"{prof.section}: accepted with {', '.join(prof.suites[:3])}"
                      if prof.accepted else f"{prof.section}: refused (accepted: {others})"))
    retired = [p for p in tls.profiles if p.retired and p.accepted]
    out.append(_v("retired TLS profiles refused", "warn" if retired else "pass",
                  "accepts " + ", ".join(f"{p.name} ({p.section})" for p in retired)
                  if retired else "Basic (B.1) and AES (B.3) refused"))
    old = [v for v in ("TLS 1.0", "TLS 1.1") if tls.versions.get(v)]
    out.append(_v("TLS 1.0 and 1.1 refused", "warn" if old else "pass",
                  f"accepts {', '.join(old)} (RFC 8996 deprecates them)" if old else "refused"))
    demand = tls.client_auth or "unknown"
    out.append(_v("client certificate demanded", "pass" if demand == "REQUIRED" else "warn",
                  {"REQUIRED": "the peer requires a client certificate",
                   "OPTIONAL": "the peer asks for a client certificate but goes on without one",
                   "DISABLED": "the peer accepts anonymous clients"}.get(demand, demand)))
    if tls.certificate is None:
        out.append(_v("certificate", "skip", "no certificate chain was received"))
    else:
        out += certificate_verdicts(tls.certificate, report.host, now)
    return out


def dicom_verdicts(report: ProbeReport) -> list[Verdict]:
    d = report.dicom
    if d is None:
        return [_v("DICOM association", "skip", "the peer could not be reached")]
    a = d.association
    if not a.accepted:
        why = a.reject.text if a.reject else a.error or "not established"
        if report.tls is not None and report.tls.client_auth == "REQUIRED" and not a.reject:
            why += ("; the peer requires a client certificate: give --tls-cert/--tls-key, "
                    "issued by a CA it trusts")
        return [_v("DICOM association", "fail", f"{report.calling} -> {report.called}: {why}")]
    out = [_v("DICOM association", "pass", f"accepted in {1000 * (a.seconds or 0):.1f} ms"
              + (f" over {a.tls_version} ({a.cipher})" if a.tls_version else "")
              + (f", after {a.retries} transient rejection(s)" if a.retries else ""))]
    if d.echo_status is None:
        out.append(_v("C-ECHO", "fail", d.echo_error or "Verification was not accepted"))
    else:
        out.append(_v("C-ECHO", "pass" if d.echo_status == 0 else "fail",
                      f"status 0x{d.echo_status:04X}, round trips {d.echo_ms} ms"))
    peer = a.peer_max_pdu or 0
    out.append(_v("maximum PDU", "warn" if 0 < peer < SMALL_PDU else "pass",
                  f"{peer or 'unlimited'} bytes; implementation {a.implementation_class_uid} "
                  f"{a.implementation_version_name or ''}".rstrip()))
    out.append(_storage(report))
    f = d.find
    if f is None or not f.offered or f.error or f.status != 0:
        why = "not offered" if f is None or not f.offered else f.error or f"status 0x{f.status:04X}"
        out.append(_v("C-FIND (study level)", "warn", f"no C-FIND: {why}"))
    else:
        out.append(_v("C-FIND (study level)", "pass", f"answered, {f.matches} matches for a "
                      "key that matches nothing"))
    if d.move_destination is None:
        out.append(_v("C-MOVE", "skip", "not asked (--move-to AE)"))
    else:
        m = d.move
        ok = m is not None and m.offered and m.status in (0x0000, 0xB000)
        why = ("not offered" if m is None or not m.offered else m.error
               or f"status 0x{m.status or 0:04X}"
               + (" (move destination unknown)" if m.status == 0xA801 else ""))
        out.append(_v(f"C-MOVE to {d.move_destination}", "pass" if ok else "fail", why))
    out.append(_stored(report))
    return out


def _stored(report: ProbeReport) -> Verdict:
    assert report.dicom is not None
    s = report.dicom.store
    if s is None:
        return _v("C-STORE", "skip", "not asked (--allow-store N writes a synthetic study)")
    delete = (f"delete study {s.study_instance_uid} (patient {s.patient_name}, ID "
              f"{s.patient_id}) from the peer")
    if s.error or s.stored < s.objects:
        why = s.error or f"{s.stored} of {s.objects} stored, statuses {s.statuses}"
        return _v("C-STORE", "fail", f"{why}; {delete} if any arrived")
    return _v("C-STORE", "pass", f"{s.objects} CT objects ({s.bytes} bytes) in {s.seconds} s, "
              f"{s.mbit_s} Mbit/s; {delete}")


def _storage(report: ProbeReport) -> Verdict:
    assert report.dicom is not None
    contexts = report.dicom.contexts
    if not contexts:
        return _v("storage contexts", "skip", "not negotiated")
    modalities = sorted({c.modality for c in contexts})
    plain = {c.modality for c in contexts if c.accepted and c.transfer_syntax in UNCOMPRESSED}
    n = sum(c.accepted for c in contexts)
    missing = [m for m in modalities if m not in plain]
    text = (f"{n} of {len(contexts)} contexts accepted in {report.dicom.context_batches} "
            "association(s)")
    if not missing:
        return _v("storage contexts", "pass", f"{text}; every modality uncompressed")
    return _v("storage contexts", "fail" if len(missing) == len(modalities) else "warn",
              f"{text}; no uncompressed storage for {', '.join(missing)}")


def judge(report: ProbeReport, now: datetime | None = None) -> list[Verdict]:
    """Every verdict, in the order path, TLS, DICOM."""
    moment = now or datetime.now(UTC)
    out = path_verdicts(report)
    if report.tls is not None:
        out += tls_verdicts(report.tls, report, moment)
    return out + dicom_verdicts(report)
