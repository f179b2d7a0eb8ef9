"""One association with the peer, on the lab's Upper Layer (:mod:`lab.dicom.ul`), with every
way it can go wrong told apart: refused or unanswered connect, TLS handshake failure,
A-ASSOCIATE-RJ (result, source, reason: PS3.8 9.3.4), A-ABORT, a port that answers in TLS
where clear DICOM was sent, or in something that is not DICOM at all.

The A-ASSOCIATE exchange is done here rather than by :meth:`Requestor.connect`, which raises
on a rejection: the probe keeps the rejection's fields and the A-ASSOCIATE-AC's user
information (Maximum Length, PS3.8 D.1; Implementation Class UID and Version Name, PS3.7
D.3.3.2), then hands the link to a :class:`Requestor` for the DIMSE operations.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.dicom.ul import pdu
from lab.dicom.ul.link import Link, LinkClosed
from lab.dicom.ul.requestor import Requestor
from lab.errors import LabError
from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from lab.probe.findings import Association, Reject

VERIFICATION, IMPLICIT_LE = "1.2.840.10008.1.1", "1.2.840.10008.1.2"
#: The largest P-DATA-TF body the probe accepts (it receives only small responses).
PROBE_MAX_PDU = 65536
#: The first byte of a TLS record: alert (21) or handshake (22) (RFC 8446 5.1).
TLS_RECORD_TYPES = (0x15, 0x16)

#: Meaning of A-ASSOCIATE-RJ source and reason (PS3.8 Table 9-21).
REJECT_SOURCES = {1: "service user", 2: "service provider (ACSE)",
                  3: "service provider (presentation)"}
REJECT_REASONS = {
    (1, 1): "no reason given", (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized", (1, 7): "called AE title not recognized",
    (2, 1): "no reason given", (2, 2): "protocol version not supported",
    (3, 0): "reserved", (3, 1): "temporary congestion", (3, 2): "local limit exceeded",
}


class Failed(LabError):
    """The association was not established; ``found`` says how."""

    def __init__(self, found: Association) -> None:
        super().__init__(found.error or (found.reject.text if found.reject else "failed"))
        self.found = found


@dataclass(frozen=True)
class Target:
    """Where and as whom to associate."""

    host: str
    port: int
    called: str
    calling: str
    timeout: float
    tls: ssl.SSLContext | None = None


def reject_of(body: bytes) -> Reject:
    """The fields of an A-ASSOCIATE-RJ body and what they mean."""
    result, source, reason = body[1], body[2], body[3]
    why = REJECT_REASONS.get((source, reason), f"reason {reason}")
    kind = {1: "permanent", 2: "transient"}.get(result, f"result {result}")
    text = f"rejected ({kind}) by the {REJECT_SOURCES.get(source, f'source {source}')}: {why}"
    return Reject(result=result, source=source, reason=reason, text=text)


def _connect(target: Target) -> tuple[socket.socket, float]:
    """A connected socket, TLS-wrapped (handshake done) if asked, and the seconds its TCP
    connect took; Failed otherwise."""
    start = time.perf_counter()
    try:
        sock = socket.create_connection((target.host, target.port), timeout=target.timeout)
        tcp = time.perf_counter() - start
    except TimeoutError:
        raise Failed(Association(accepted=False, speaks="nothing", error=(
            f"no answer to the TCP connect within {target.timeout:g} s"))) from None
    except OSError as exc:
        raise Failed(Association(accepted=False, speaks="nothing",
                                 error=f"TCP connect failed: {exc.strerror or exc}")) from None
    if target.tls is None:
        return sock, tcp
    try:
        return target.tls.wrap_socket(sock, server_hostname=target.host), tcp
    except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
        sock.close()
        raise Failed(Association(accepted=False, error=f"TLS handshake failed: {exc}")) from None


def _request(contexts: Sequence[pdu.Proposed], target: Target) -> bytes:
    rq = pdu.Associate(target.called, target.calling, contexts=tuple(contexts),
                       max_length=PROBE_MAX_PDU,
                       implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                       implementation_version_name=IMPLEMENTATION_VERSION_NAME)
    return pdu.encode_associate(pdu.A_ASSOCIATE_RQ, rq)


def _answer(link: Link, target: Target) -> tuple[int, bytes]:
    """The first PDU the peer answers with; Failed if it is no DICOM PDU or never comes."""
    try:
        head = link.read(pdu.HEADER.size)
    except LinkClosed:
        raise Failed(Association(accepted=False, error="the peer closed the connection "
                                 "without answering the A-ASSOCIATE-RQ")) from None
    except TimeoutError:
        raise Failed(Association(accepted=False, error="no answer to the A-ASSOCIATE-RQ "
                                 f"within {target.timeout:g} s")) from None
    kind, length = pdu.HEADER.unpack(head)
    if head[0] in TLS_RECORD_TYPES and head[1] == 0x03 and target.tls is None:
        raise Failed(Association(accepted=False, speaks="tls", error=(
            "the port answered in TLS (a TLS record, not a PDU): ask with --tls-profile")))
    if kind not in (pdu.A_ASSOCIATE_AC, pdu.A_ASSOCIATE_RJ, pdu.A_ABORT):
        raise Failed(Association(accepted=False, speaks="other", error=(
            f"the port does not speak DICOM: it answered {head!r} (PS3.8 9.3.1)")))
    return kind, link.body(length)


#: Pauses before asking again after a transient rejection (PS3.8 9.3.4: result 2, "rejected
#: transient": the same request may succeed later). A peer with few association slots can
#: still count the probe's bare TCP connects of a moment ago against them.
TRANSIENT_RETRIES = (0.5, 1.5)


def associate(target: Target, contexts: Sequence[tuple[str, Sequence[str]]],
              ) -> tuple[Requestor, Association, dict[int, pdu.Result]]:
    """:func:`associate_once`, asked again after each pause of :data:`TRANSIENT_RETRIES`
    while the peer rejects it as transient; ``retries`` says how often."""
    for retries, pause in enumerate((*TRANSIENT_RETRIES, None)):
        try:
            assoc, found, answers = associate_once(target, contexts)
        except Failed as exc:
            reject = exc.found.reject
            if pause is None or reject is None or reject.result != 2:
                exc.found.retries = retries
                raise
            time.sleep(pause)
            continue
        found.retries = retries
        return assoc, found, answers
    raise AssertionError("unreachable: the last pause is None")


def associate_once(target: Target, contexts: Sequence[tuple[str, Sequence[str]]],
                   ) -> tuple[Requestor, Association, dict[int, pdu.Result]]:
    """Associate proposing ``contexts`` (ids 1, 3, 5...); the open association, what was
    learnt, and the acceptor's answer to each context by id. Failed (with the
    :class:`Association` found) if it was not established."""
    proposed = [pdu.Proposed(2 * i + 1, a, tuple(ts)) for i, (a, ts) in enumerate(contexts)]
    start = time.perf_counter()
    sock, tcp = _connect(target)
    link = Link(sock, target.timeout)
    tls = _tls_of(sock)
    try:
        link.send(_request(proposed, target))
        kind, body = _answer(link, target)
        if kind == pdu.A_ASSOCIATE_RJ and len(body) == 4:
            raise Failed(Association(accepted=False, reject=reject_of(body), **tls))
        if kind == pdu.A_ABORT:
            raise Failed(Association(accepted=False, error=(
                f"the peer aborted the association (A-ABORT source {body[2]}, reason "
                f"{body[3]})"), **tls))
        ac = pdu.decode_associate(kind, body)
    except (LinkClosed, TimeoutError, pdu.PduError) as exc:
        link.close()
        raise Failed(Association(accepted=False, error=f"association failed: {exc}")) from None
    except BaseException:
        link.close()
        raise
    found = Association(accepted=True, seconds=round(time.perf_counter() - start, 6),
                        connect_ms=round(1000 * tcp, 3),
                        peer_max_pdu=ac.max_length,
                        implementation_class_uid=ac.implementation_class_uid or None,
                        implementation_version_name=ac.implementation_version_name or None,
                        **tls)
    return Requestor(link, ac, proposed), found, {r.id: r for r in ac.results}


def greet(target: Target) -> float:
    """One short association (Verification only), released at once: the seconds its TCP
    connect took. The probe times the path this way rather than by bare TCP connects, which
    some acceptors count against their association limit until a timer expires (pynetdicom
    holds each for its ARTIM / network timeout), so that the probe's own associations would
    then be rejected as "local limit exceeded"."""
    assoc, found, _ = associate_once(target, [(VERIFICATION, (IMPLICIT_LE,))])
    release(assoc)
    return (found.connect_ms or 0.0) / 1000


def _tls_of(sock: socket.socket) -> dict[str, str | None]:
    if not isinstance(sock, ssl.SSLSocket):
        return {"tls_version": None, "cipher": None}
    cipher = sock.cipher()
    return {"tls_version": sock.version(), "cipher": cipher[0] if cipher else None}


def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether the port answers a TLS ClientHello with TLS (a ServerHello, or an alert after
    one): a handshake with no verification, whose failure for want of a client certificate
    still counts as TLS; a reply that is no TLS record (wrong version number), or silence,
    does not."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host):
            return True
    except ssl.SSLError as exc:
        return exc.reason not in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                                  "UNEXPECTED_EOF_WHILE_READING", "PACKET_LENGTH_TOO_LONG",
                                  "HTTP_REQUEST", "UNKNOWN_PROTOCOL")
    except OSError:
        return False


def release(assoc: Requestor) -> None:
    """A-RELEASE, whatever state the association is in (bounded by its timeout)."""
    with contextlib.suppress(LabError, OSError):
        assoc.release()
