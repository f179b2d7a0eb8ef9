"""The archive's Storage Commitment Push Model SCP (PS3.4 Annex J), answered from what the store
really holds.

An N-ACTION-RQ (:mod:`lab.dicom.ul.commitment`) is checked (the well-known instance, Action
Type 1, a dataset that decodes) and refused with a failure status otherwise (PS3.7 10.1.4.1.10:
no such action, invalid object instance, missing attribute, invalid attribute value,
processing failure), never with an
exception. Each referenced object is then committed only if its file is in the store under its
SOP Instance UID with the same SOP Class UID, is as long as when it was stored, and still walks
as a complete dataset whose File Meta Information names the same UIDs
(:func:`lab.dicom.data.encoded.parse`, the check every object passed when stored); any other is
failed with its Failure Reason: no such object instance (0x0112), class/instance conflict
(0x0119), or processing failure (0x0110) (PS3.4 J.3.3.1.1).

The result goes back over the requestor's association (the acceptor sends it right after the
N-ACTION-RSP); a result that association ends without confirming is sent, once, over a new
association to the requestor's AE title as found in the archive's table of known peers (the
C-MOVE destinations, ``--destination``), on a thread of its own so no association waits for it.
"""

from __future__ import annotations

import logging
import mmap
import os
import ssl
import threading
from collections.abc import Mapping

from lab.dicom.archive.schema import WANTED
from lab.dicom.archive.store import Store, StoredObject
from lab.dicom.data.encoded import StoreError, parse
from lab.dicom.ul import commitment as sc
from lab.dicom.ul.commit_scu import deliver
from lab.dicom.ul.pdu import PduError
from lab.dicom.ul.services import ActionReply, ActionRequest

log = logging.getLogger("lab.dicom.pacs")

#: What the dataset walk decodes (it needs the UIDs it checks).


def check_object(store: Store, ref: sc.Reference) -> int:
    """0 if the store holds ``ref`` intact, else its Failure Reason (PS3.4 J.3.3.1.1)."""
    stored = store.get(ref.sop_instance)
    if stored is None:
        return sc.NO_SUCH_OBJECT
    if stored.sop_class_uid != ref.sop_class:
        return sc.CLASS_INSTANCE_CONFLICT
    try:
        _walk(stored)
    except FileNotFoundError:
        return sc.NO_SUCH_OBJECT
    except (OSError, StoreError, ValueError) as exc:
        log.error("commitment of %s refused: its file fails the check: %s", ref.sop_instance,
                  exc)
        return sc.PROCESSING_FAILURE
    return 0


def _walk(stored: StoredObject) -> None:
    """The stored file's length and its dataset walked again, against the index's UIDs."""
    fd = os.open(stored.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size != stored.size or size == 0:
            raise StoreError(f"{stored.path}: {size} bytes, {stored.size} when stored")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            parse(mapped, stored.transfer_syntax_uid, stored.sop_class_uid,
                  stored.sop_instance_uid, WANTED)
    finally:
        os.close(fd)


class CommitmentService:
    """Storage Commitment over one store (see the module's doc); ``peers``: AE title -> (host,
    port) of the requestors a result may be delivered to over a new association."""

    def __init__(self, store: Store, peers: Mapping[str, tuple[str, int]], *, ae_title: str,
                 tls_client: ssl.SSLContext | None = None, timeout: float = 60.0,
                 max_pdu: int = 0) -> None:
        self.store = store
        self.peers = dict(peers)
        self.ae_title = ae_title
        self.tls_client = tls_client
        self.timeout = timeout
        self.max_pdu = max_pdu
        #: Deliveries under way (joined by tests and at shutdown).
        self.threads: list[threading.Thread] = []

    def __call__(self, rq: ActionRequest) -> ActionReply:
        if rq.requested_class != sc.SOP_CLASS or rq.requested_instance != sc.INSTANCE:
            log.warning("N-ACTION from %s on %s / %s refused", rq.calling, rq.requested_class,
                        rq.requested_instance)
            return ActionReply(sc.INVALID_INSTANCE)
        if rq.action_type != sc.REQUEST_COMMITMENT:
            return ActionReply(sc.NO_SUCH_ACTION)
        try:
            transaction, refs = sc.decode_request(rq.dataset, rq.transfer_syntax)
        except sc.CommitmentError as exc:
            log.warning("commitment request from %s refused: %s", rq.calling, exc)
            return ActionReply(exc.status)
        committed: list[sc.Reference] = []
        failed: list[sc.Reference] = []
        for ref in refs:
            reason = check_object(self.store, ref)
            (failed if reason else committed).append(ref._replace(reason=reason))
        log.info("commitment %s for %s: %d committed, %d failed", transaction, rq.calling,
                 len(committed), len(failed))
        return ActionReply(0, sc.REQUEST_COMMITMENT,
                           sc.Result(transaction, tuple(committed), tuple(failed)))

    def undelivered(self, calling: str, report: sc.Result) -> None:
        """Send ``report`` over a new association to ``calling``, on a thread of its own."""
        where = self.peers.get(calling)
        if where is None:
            log.warning("commitment result %s for %s lost: %s is not a known peer "
                        "(--destination)", report.transaction, calling, calling)
            return
        thread = threading.Thread(target=self._deliver, args=(calling, where, report),
                                  name=f"commitment-{calling}", daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def _deliver(self, calling: str, where: tuple[str, int], report: sc.Result) -> None:
        try:
            status = deliver(where[0], where[1], called=calling, calling=self.ae_title,
                             result=report, timeout=self.timeout, tls=self.tls_client,
                             max_pdu=self.max_pdu)
        except (PduError, OSError, TimeoutError) as exc:
            log.warning("commitment result %s for %s not delivered: %s", report.transaction,
                        calling, exc)
            return
        log.info("commitment result %s delivered to %s on a new association (status 0x%04X)",
                 report.transaction, calling, status)
