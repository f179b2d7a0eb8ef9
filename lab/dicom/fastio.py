"""Event-driven I/O for pynetdicom associations (both ends): what makes a C-STORE of many small
objects cost network time rather than polling time.

pynetdicom 3.0 runs each association as two polling threads:

- the DUL reactor (``pynetdicom.dul.DULServiceProvider.run_reactor``) sleeps ``_run_loop_delay``
  (1 ms) whenever a pass finds nothing to do, then polls the socket (``select`` with timeout 0)
  and its queue of PDUs to send. Every PDU arriving or leaving while it sleeps waits up to a
  millisecond (and ``time.sleep(0.001)`` is ~1.1 ms), several times per C-STORE, at both ends;
- the acceptor's association reactor (``Association._run_reactor``) sleeps 1 ms before each
  look at its queue of received DIMSE messages.

:func:`upgrade_socket` turns an association's socket into an :class:`EventSocket`, whose
``ready`` (the DUL reactor's socket poll) *waits* in ``select`` for the socket or for a wake-up
pipe that the DUL's queue of PDUs to send writes to; the reactor's own sleep is then set near
zero. An idle association thus sleeps in ``select`` (at most :data:`IDLE_WAIT` at a time: timers
and a stop request are noticed that late) instead of waking a thousand times a second, and a
PDU is read or sent as soon as it can be. The same socket reads a PDU with ``recv_into`` one
preallocated buffer, instead of 4096-byte ``recv`` calls joined by ``bytearray.extend``.

:func:`wait_for_messages` makes the acceptor's association reactor wait on its DIMSE message
queue (at most :data:`IDLE_WAIT`) where it polled it, so a received C-STORE request is handled
as soon as it is complete.

Both reach into pynetdicom internals (checked against 3.0.4): the attributes named above,
``DULServiceProvider.to_provider_queue`` and ``DIMSEServiceProvider.msg_queue``. Each checks
what it relies on and otherwise leaves the association as stock pynetdicom runs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import ssl
import weakref
from typing import Any

from pynetdicom.transport import AssociationSocket

log = logging.getLogger(__name__)

#: Longest single wait of an idle reactor (seconds): the latency of its timers (ARTIM, network
#: idle timeout), of noticing it was told to stop, and of the acceptor noticing an A-RELEASE.
IDLE_WAIT = 0.005
#: The DUL reactor's sleep between passes that found nothing to do, once it waits in select.
LOOP_DELAY = 0.00002


class _WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """The DUL's queue of primitives to send, which wakes the reactor's ``select``."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self.wake_fd = wake_fd

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        # A full pipe means the reactor is awake already; a closed one, that it has finished.
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"\0")


class EventSocket(AssociationSocket):
    """An AssociationSocket whose ``ready`` waits instead of polling (see the module's doc).
    Made from a stock one by :func:`upgrade_socket`, never constructed directly."""

    _wake_r: int
    _wake_w: int

    def _init_events(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Closed with the object, not by close(): the reactor may be in select on it then.
        weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)
        dul = self.assoc.dul
        waking = _WakingQueue(self._wake_w)
        while True:  # nothing is queued yet; move anything that is, in order
            try:
                waking.queue.append(dul.to_provider_queue.get_nowait())
            except queue.Empty:
                break
        dul.to_provider_queue = waking
        dul._run_loop_delay = LOOP_DELAY

    @property
    def ready(self) -> bool:
        sock = self.socket
        dul = self.assoc.dul
        busy = dul.to_provider_queue.qsize() or dul.event_queue.qsize() or dul._kill_thread
        if sock is None or self._is_connected is False:
            if not busy:  # not connected (yet, or any more): wait for something to send
                self._wait([self._wake_r])
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        fd = sock.fileno()
        try:
            ready = self._wait([fd, self._wake_r], 0 if busy else IDLE_WAIT)
        except (OSError, TimeoutError, ValueError):
            self.event_queue.put("Evt17")  # Evt17: transport connection closed (as stock)
            return False
        return fd in ready

    def _wait(self, fds: list[int], timeout: float = IDLE_WAIT) -> list[int]:
        """select() on fds for reading; a wake-up found is consumed."""
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        return ready

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` (fewer if the peer closes), straight into one buffer."""
        sock = self.socket
        assert sock is not None
        buf = bytearray(nr_bytes)
        view = memoryview(buf)
        nr_read = 0
        while nr_read < nr_bytes:
            got = sock.recv_into(view[nr_read:], nr_bytes - nr_read)
            if not got:
                del view
                del buf[nr_read:]
                return buf
            nr_read += got
        return buf


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _supported(sock: Any) -> bool:
    dul = getattr(getattr(sock, "assoc", None), "dul", None)
    return (type(sock) is AssociationSocket and dul is not None
            and type(getattr(dul, "to_provider_queue", None)) is queue.Queue
            and isinstance(getattr(dul, "_run_loop_delay", None), float)
            and isinstance(getattr(dul, "event_queue", None), queue.Queue)
            and hasattr(dul, "_kill_thread") and hasattr(sock, "_is_connected"))


def upgrade_socket(sock: AssociationSocket) -> AssociationSocket:
    """Make a freshly created association socket an :class:`EventSocket`, in place (before its
    reactor starts); a socket or DUL not as pynetdicom 3.0 makes them is left alone."""
    if not _supported(sock):
        log.debug("pynetdicom internals differ: association socket left as is")
        return sock
    sock.__class__ = EventSocket
    assert isinstance(sock, EventSocket)
    sock._init_events()
    return sock


class _WaitingQueue(queue.Queue):  # type: ignore[type-arg]
    """A DIMSE message queue whose non-blocking get waits up to IDLE_WAIT for a message."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            block, timeout = True, IDLE_WAIT
        return super().get(block, timeout)


def wait_for_messages(assoc: Any) -> None:
    """Let an acceptor association's reactor wait for DIMSE messages (see the module's doc);
    left alone if pynetdicom's message queue is not the plain, still empty queue expected."""
    dimse = getattr(assoc, "dimse", None)
    msgs = getattr(dimse, "msg_queue", None)
    if dimse is None or type(msgs) is not queue.Queue or msgs.qsize():
        log.debug("pynetdicom internals differ: DIMSE message queue left as is")
        return
    dimse.msg_queue = _WaitingQueue()
