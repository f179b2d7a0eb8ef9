"""The acceptor's answer to an A-ASSOCIATE-RQ (PS3.8 9.3.3, 9.3.4): which presentation contexts
it accepts, with which transfer syntax, and when it rejects the association instead."""

from __future__ import annotations

from collections.abc import Mapping

from lab.dicom.ul import pdu

#: A peer announcing a Maximum Length below this would make every response many PDUs.
SMALLEST_PEER_PDU = 1024


def negotiate(rq: pdu.Associate, supported: Mapping[str, frozenset[str]]) -> list[pdu.Result]:
    """Each proposed context accepted with its first supported transfer syntax, or refused
    with the reason (PS3.8 9.3.3.2)."""
    results = []
    for cx in rq.contexts:
        syntaxes = supported.get(cx.abstract_syntax)
        if syntaxes is None:
            results.append(pdu.Result(cx.id, pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        chosen = next((ts for ts in cx.transfer_syntaxes if ts in syntaxes), None)
        results.append(pdu.Result(cx.id, pdu.ACCEPTANCE, chosen) if chosen else
                       pdu.Result(cx.id, pdu.TRANSFER_SYNTAXES_NOT_SUPPORTED))
    return results


def rejection(rq: pdu.Associate, ae_titles: frozenset[str]) -> tuple[int, int, int] | None:
    """Why an A-ASSOCIATE-RQ is rejected (result, source, reason: PS3.8 9.3.4), or None."""
    if not rq.protocol_version & 1:
        return 1, 2, 2  # permanent, ACSE provider, protocol version not supported
    if rq.application_context != pdu.APPLICATION_CONTEXT:
        return 1, 1, 2  # permanent, service user, application context name not supported
    if rq.called not in ae_titles:
        return 1, 1, 7  # permanent, service user, called AE title not recognized
    if not rq.calling or not rq.contexts or 0 < rq.max_length < SMALLEST_PEER_PDU:
        return 1, 1, 1  # permanent, service user, no reason given
    return None
