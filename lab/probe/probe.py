"""The whole probe, in the order that lets each step explain the next one's failure: the path
(can we connect at all?), TLS (does the port speak it, in which profiles, with what
certificate?), then DICOM (association, C-ECHO, C-FIND, C-MOVE only if asked, the storage
contexts), then the verdicts and the WAN profile measured.

Every network wait is bounded by ``timeout``; every failure of the peer is a finding in the
report, never an exception. Only bad input (a missing file, a profile the local OpenSSL cannot
do) raises :class:`~lab.errors.LabError`, before anything is sent.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.dicom.ul import command as cmd
from lab.errors import LabError
from lab.probe import contexts, tlsscan, verdicts
from lab.probe.association import Failed, Target, associate, greet, release, speaks_tls
from lab.probe.findings import Association, DicomFindings, PathFindings, ProbeReport
from lab.probe.operations import IMPLICIT_LE, probe_dicom
from lab.probe.path import connect_once, measure
from lab.probe.store import store_study
from lab.security.tls import contexts as tls_contexts


@dataclass(frozen=True)
class Request:
    """What ``teleradlab probe`` was asked."""

    host: str
    port: int
    called: str
    calling: str = "TELERADLAB"
    tls_profile: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    move_to: str | None = None
    store_objects: int = 0  # --allow-store N: C-STORE a synthetic study of N objects
    timeout: float = 5.0
    connects: int = 5
    echoes: int = 5
    batch: int = contexts.BATCH


def client_tls(req: Request) -> ssl.SSLContext | None:
    """The lab's client context for the profile asked (LabError naming what is wrong)."""
    if req.tls_profile is None:
        return None
    if req.tls_ca is None:
        raise LabError("--tls-profile needs --tls-ca (the CA the peer's certificate must be "
                       "issued by)")
    for flag, path in (("--tls-cert", req.tls_cert), ("--tls-key", req.tls_key),
                       ("--tls-ca", req.tls_ca)):
        if path is not None and not path.is_file():
            raise LabError(f"{flag} {path}: no such file")
    try:
        return tls_contexts.client_context(req.tls_profile, req.tls_cert, req.tls_key,
                                           req.tls_ca)
    except OSError as exc:  # also ssl.SSLError
        raise LabError(f"cannot load the TLS credentials: {exc}") from exc


def sampler(req: Request, tls: ssl.SSLContext | None) -> Callable[[], float]:
    """One path sample: a short association (:func:`greet`) while the peer takes them, bare
    TCP connects (:func:`connect_once`) from the first that fails above TCP on."""
    target = Target(req.host, req.port, req.called, req.calling, min(req.timeout, 3.0), tls)
    greeting = [True]

    def sample() -> float:
        if greeting[0]:
            try:
                return greet(target)
            except Failed:
                greeting[0] = False
        return connect_once(req.host, req.port, target.timeout)

    return sample


def wan_of(path: PathFindings) -> dict[str, str]:
    """The WAN profile measured, in the keys of ``--wan`` (one-way delay = RTT / 2)."""
    if path.rtt_ms is None:
        return {}
    return {"delay": f"{path.rtt_ms / 2:.3f}ms", "jitter": f"{path.jitter_ms or 0:.3f}ms"}


def _diagnose(found: Association, req: Request) -> Association:
    """When the association failed below DICOM, find out what the port speaks instead."""
    if found.reject is not None or found.speaks is not None:
        return found
    if req.tls_profile is None:
        if speaks_tls(req.host, req.port, req.timeout):
            found.speaks = "tls"
            found.error = f"{found.error}; the port speaks TLS: ask with --tls-profile"
        return found
    plain = Target(req.host, req.port, req.called, req.calling, req.timeout)
    try:
        assoc, _, _ = associate(plain, [(cmd.VERIFICATION, (IMPLICIT_LE,))])
        release(assoc)
        speaks = True
    except Failed as exc:
        speaks = exc.found.reject is not None
    if speaks:
        found.speaks = "dicom"
        found.error = f"{found.error}; the port speaks DICOM in clear, not TLS"
    return found


def _dicom(req: Request, tls: ssl.SSLContext | None) -> DicomFindings:
    target = Target(req.host, req.port, req.called, req.calling, req.timeout, tls)
    try:
        found = probe_dicom(target, echo_count=req.echoes, move_to=req.move_to)
    except Failed as exc:
        return DicomFindings(association=_diagnose(exc.found, req), move_destination=req.move_to)
    try:
        found.contexts, found.context_batches = contexts.negotiate(target, req.batch)
    except Failed as exc:
        found.association.error = f"storage contexts: {exc}"
    if req.store_objects:
        found.store = store_study(target, req.store_objects)
    return found


def run(req: Request) -> ProbeReport:
    """Probe the peer; the report with its verdicts (nothing raised for the peer's faults)."""
    tls_ctx = client_tls(req)  # bad input fails here, before anything is sent
    start = time.perf_counter()
    report = ProbeReport(host=req.host, port=req.port, called=req.called, calling=req.calling,
                         tls_profile=req.tls_profile, seconds=0.0,
                         started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                         path=measure(req.host, req.port, count=req.connects,
                                      timeout=min(req.timeout, 3.0),
                                      sample=sampler(req, tls_ctx)))
    if report.path.connect_ms:
        if req.tls_profile is not None:
            creds = tlsscan.Credentials(req.tls_cert, req.tls_key, req.tls_ca)
            report.tls = tlsscan.scan(req.host, req.port, creds, timeout=req.timeout)
        report.dicom = _dicom(req, tls_ctx)
    report.mtu = report.path.mtu
    report.wan = wan_of(report.path)
    report.verdicts = verdicts.judge(report)
    report.seconds = round(time.perf_counter() - start, 3)
    return report
