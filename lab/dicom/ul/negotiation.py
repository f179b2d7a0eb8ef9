"""The acceptor's answer to an A-ASSOCIATE-RQ (PS3.8 9.3.3, 9.3.4): which presentation contexts
it accepts, with which transfer syntax, the Asynchronous Operations Window it grants, and when it
rejects the association instead."""

from __future__ import annotations

from collections.abc import Mapping

from lab.dicom.ul import pdu
from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

#: A peer announcing a Maximum Length below this would make every response many PDUs.
SMALLEST_PEER_PDU = 1024
#: Most requests a requestor may have outstanding (Asynchronous Operations Window granted).
WINDOW = 16


def acceptance(rq: pdu.Associate, results: list[pdu.Result], max_pdu: int) -> pdu.Associate:
    """The A-ASSOCIATE-AC for ``rq``: the contexts' results, our Maximum Length, the lab's
    implementation identity (PS3.7 D.3.3.2) and the window granted (:func:`window_answer`)."""
    return pdu.Associate(rq.called, rq.calling, results=tuple(results), max_length=max_pdu,
                         implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                         implementation_version_name=IMPLEMENTATION_VERSION_NAME,
                         other_user_items=window_answer(rq))


def window_answer(rq: pdu.Associate) -> tuple[bytes, ...]:
    """The Asynchronous Operations Window granted (PS3.7 D.3.3.3), if one was proposed: up to
    WINDOW requests of the requestor outstanding (requests are still served one after the
    other, each answered in order; the next ones wait in the socket meanwhile, so the
    requestor sends while the archive stores), and one performed by it (the only operation
    this end invokes is the N-EVENT-REPORT of a Storage Commitment result, PS3.4 J.3.3)."""
    proposed = pdu.window(rq)
    if proposed is None:
        return ()
    return (pdu.window_item(min(proposed[0] or WINDOW, WINDOW), 1),)


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
