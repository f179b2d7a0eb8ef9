"""How the SCU sends a study so that nothing is lost: C-STOREs resumed on a new association when
one breaks, and a Storage Commitment of the whole study at the end (PS3.4 Annex J).

A :class:`Sender` owns a share of the study's objects and the association carrying them. When
the association breaks (the peer resets or aborts it, the archive dies, a wait times out), the
objects not yet answered are sent again on a new association, after a back-off that doubles
each time (``backoff``, ``2 * backoff``, ...), at most ``retries`` times over the whole run. An
object whose C-STORE was answered, even with a failure status, is not sent again: a refusal is
the archive's answer, not a fault. An object answered and then sent again (its response lost
with the association) is harmless: the archive keeps one copy per SOP Instance UID and answers
the identical object again with success (lab.dicom.archive.store).

The time to recover is measured from the failure to the next acknowledged object, so it covers
the back-off, the new connection and association, and resending what was in flight.

:func:`commit` asks the archive to commit every object of the study (on a live association or
a new one, retried the same way with a new Transaction UID each time) and turns its result into
one answer per object: committed, failed with its reason (PS3.4 J.3.3.1.1), or no answer.
Imports the standard library and the lab's Upper Layer only (the SCU's lean path).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence

from lab.dicom.ul import commit_scu
from lab.dicom.ul import commitment as sc
from lab.dicom.ul.pdu import PduError
from lab.dicom.ul.requestor import Part10, Requestor

TYPE_CHECKING = False  # not typing's: see lab.dicom.ul.records
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")
#: What a broken association or an unreachable peer raises; anything else is not retried.
BROKEN = (PduError, OSError, TimeoutError)
#: Connects and associates: the association and the seconds it took.
Connect = Callable[[], tuple[Requestor, float]]


class RetriesExhausted(PduError):
    """The association broke once more than the retries allow (the last error as cause)."""


class Sender:
    """Sends ``objects`` over associations made by ``connect``, resuming after a break."""

    def __init__(self, connect: Connect, objects: Sequence[Part10], *, max_pdu: int,
                 retries: int, backoff: float) -> None:
        self.connect, self.objects, self.max_pdu = connect, list(objects), max_pdu
        self.retries_left, self.backoff = retries, backoff
        self.assoc: Requestor | None = None
        #: The C-STORE status of each object (None: not answered yet; -1: no context fits).
        self.statuses: list[int | None] = [None] * len(self.objects)
        self.retries = 0
        #: Seconds from each failure to the next acknowledged object.
        self.recoveries: list[float] = []
        self.errors: list[str] = []
        self._broke_at: float | None = None

    def open(self) -> float:
        """Associate (retrying like the rest); the seconds the association that came up took."""
        return self._with_retries(self._open)

    def _open(self) -> float:
        if self.assoc is not None:
            return 0.0
        self.assoc, seconds = self.connect()
        return seconds

    def send(self) -> None:
        """Send every object not yet answered, resuming on a new association after a break."""
        self._with_retries(self._send_pending)

    def _send_pending(self) -> None:
        self._open()
        assert self.assoc is not None
        todo = [i for i, status in enumerate(self.statuses) if status is None]
        for k, status in self.assoc.store_each([self.objects[i] for i in todo], self.max_pdu):
            self.statuses[todo[k]] = status
            if self._broke_at is not None:
                self.recoveries.append(time.monotonic() - self._broke_at)
                self._broke_at = None

    def _with_retries(self, work: Callable[[], T]) -> T:
        while True:
            try:
                return work()
            except BROKEN as exc:
                self._broken(exc)

    def _broken(self, exc: BaseException) -> None:
        """Drop the broken association; wait the back-off, or raise if no retry is left."""
        if self.assoc is not None:
            self.assoc.abort()
            self.assoc = None
        if self._broke_at is None:
            self._broke_at = time.monotonic()
        self.errors.append(f"{type(exc).__name__}: {exc}")
        if self.retries_left <= 0:
            raise RetriesExhausted(f"gave up after {self.retries} retries: {exc}") from exc
        time.sleep(self.backoff * 2 ** self.retries)
        self.retries += 1
        self.retries_left -= 1

    def commit(self, objects: Sequence[Part10], wait: float,
               listener: socket.socket | None = None, ae_title: str = "") -> dict[str, str]:
        """Storage Commitment of ``objects`` on this sender's association (a new one if it
        broke, retried), the result taken there or, with ``listener``, also on an association
        the archive opens to ``ae_title``: each SOP Instance UID's answer (:func:`answers`).
        No result within ``wait`` seconds is a CommitmentError (not retried)."""
        import uuid  # a new Transaction UID (PS3.5 B.2): only a committing run pays the import

        refs = [sc.Reference(o.sop_class, o.sop_instance) for o in objects]

        def ask() -> sc.Result:
            self._open()
            assert self.assoc is not None
            try:
                return commit_scu.request(self.assoc, f"2.25.{uuid.uuid4().int}", refs,
                                          message_id=65535, wait=wait, max_pdu=self.max_pdu,
                                          listener=listener, ae_title=ae_title)
            except TimeoutError:
                self.abort()  # its state is unknown once a wait ran out
                raise sc.CommitmentError(f"no commitment result within {wait} s") from None

        return answers(objects, self._with_retries(ask))

    def release(self) -> None:
        if self.assoc is not None:
            self.assoc.release()
            self.assoc = None

    def abort(self) -> None:
        if self.assoc is not None:
            self.assoc.abort()
            self.assoc = None


def answers(objects: Sequence[Part10], result: sc.Result) -> dict[str, str]:
    """Each object's answer in a commitment result: ``committed``, ``failed 0xNNNN (reason)``,
    or ``no answer`` when the result names it in neither sequence (it then is not committed)."""
    out = {o.sop_instance: "no answer" for o in objects}
    for ref in result.committed:
        if ref.sop_instance in out:
            out[ref.sop_instance] = "committed"
    for ref in result.failed:  # named in both: failed
        if ref.sop_instance in out:
            why = sc.REASONS.get(ref.reason, "unknown reason")
            out[ref.sop_instance] = f"failed 0x{ref.reason:04X} ({why})"
    return out
