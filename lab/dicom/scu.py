"""The modality's DICOM client (SCU), run inside a node: ``python -m lab.dicom.scu OPERATION``.

Operations (DICOM PS3.4): ``echo`` (Verification), ``store`` (Storage: one association per
study), ``find`` and ``move`` (Query/Retrieve, Patient or Study Root). Each prints one JSON
document on stdout with what happened and how long it took, separating the association setup
(A-ASSOCIATE, PS3.8) from the operation itself, so the orchestrator can time transfers without
parsing logs: the models of :mod:`lab.dicom.reports`, which the orchestrator parses. With
``--tls-profile`` (DICOM TLS, PS3.15 Annex B) the document adds ``handshake_seconds``,
``tls_version`` and ``cipher`` (null without TLS); ``setup_seconds`` then includes the TCP
connect and the TLS handshake.

``echo`` and ``store`` run on the lab's lean Upper Layer (:mod:`lab.dicom.ul.requestor`): stored
files are sent without being decoded, straight from the file to the socket, so each object
needs an accepted presentation context with exactly its own transfer syntax; ``store`` keeps
up to ``--window`` requests outstanding when the peer grants an Asynchronous Operations Window
(PS3.7 D.3.3.3; one at a time otherwise), so that the next object is on its way while the
peer stores the last, and spreads the study over ``--associations`` associations at once.
When an association breaks, ``store --retries N`` sends the objects not yet answered again on
a new one, with a back-off doubling from ``--retry-backoff`` (lab.dicom.sender), and reports
the retries and the time to recover; ``store --commit`` then asks for Storage Commitment of the
whole study (PS3.4 Annex J) and reports the archive's answer per object.
``find`` and ``move`` run on the same Upper Layer (:mod:`lab.dicom.qrscu`); ``move --repeat
N`` makes N C-MOVEs in a row and reports the failed ones. ``--pdu`` sets the maximum PDU
length this end accepts and caps the PDUs it sends (never above what the peer accepts).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from lab.dicom import MODALITY_AE, PACS_AE, PACS_PORT, report_line
from lab.dicom.sender import RetriesExhausted, Sender
from lab.dicom.ul import commit_scu, tlsopts
from lab.dicom.ul.commitment import CommitmentError
from lab.dicom.ul.requestor import (
    Part10,
    ScuError,
    open_association,
    read_part10,
)
from lab.errors import LabError

TYPE_CHECKING = False  # not typing's: see lab.dicom.ul.records
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")
VERIFICATION = "1.2.840.10008.1.1"
#: Store requests outstanding proposed by default: 16, what the lab's archive grants at most.
#: A few objects cover the archive's time between receiving one and answering it; on a long
#: path more keep TCP's window full (scripts/bench --only wan-dicom, a 100-object CT study on
#: transcontinental-100m-80ms: window 4 6.6 s, window 16 5.9 s, bound 4.7 s).
WINDOW = 16
#: Transfer syntaxes proposed for Verification: Implicit and Explicit VR Little Endian.
ECHO_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _connect(args: argparse.Namespace, contexts: Sequence[tuple[str, Sequence[str]]],
             ) -> tuple[Any, float]:
    tls = tlsopts.client_context(args)  # None without --tls-profile
    return open_association(args.host, args.port, called=args.called, calling=args.calling,
                            contexts=contexts, max_pdu=args.pdu, timeout=args.timeout, tls=tls,
                            window=getattr(args, "window", 1))


def echo(args: argparse.Namespace) -> dict[str, Any]:
    assoc, setup = _connect(args, [(VERIFICATION, ECHO_SYNTAXES)])
    try:
        start = time.perf_counter()
        code = assoc.echo()
        seconds = time.perf_counter() - start
    except BaseException:
        assoc.abort()
        raise
    assoc.release()
    return {"ok": code == 0, "status": code, "setup_seconds": setup, "seconds": seconds,
            **assoc.tls}


def _objects(args: argparse.Namespace) -> list[Part10]:
    files: list[str] = list(args.files)
    if args.file_list:
        with open(args.file_list, encoding="utf-8") as listing:
            files += listing.read().split()
    if not files:
        raise ScuError("no files to store")
    return [read_part10(f) for f in files]


def _each(calls: list[Callable[[], T]]) -> list[T | BaseException]:
    """Each call's result (or the exception it raised), all calls at once on threads of their
    own; one call runs on this thread (the usual single association starts no thread pool)."""
    if len(calls) == 1:
        try:
            return [calls[0]()]
        except BaseException as exc:
            return [exc]
    from concurrent.futures import ThreadPoolExecutor  # only for parallel associations

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    return [f.exception() or f.result() for f in futures]


def store(args: argparse.Namespace) -> dict[str, Any]:
    """C-STORE the files over ``--associations`` associations at once, each taking a
    contiguous share of the objects (Maani et al. 2012: parallel associations fill a long
    path for peers without an Asynchronous Operations Window), each resumed on a new
    association if it breaks (``--retries``, lab.dicom.sender); then, with ``--commit``, a
    Storage Commitment of the whole study. ``setup_seconds`` is the time until every
    association is up, ``seconds`` the time from then until every object is answered."""
    objects = _objects(args)
    pairs = sorted({(o.sop_class, o.transfer_syntax) for o in objects})
    if len(pairs) > 127:
        raise ScuError(f"{len(pairs)} SOP class/transfer syntax pairs: one association "
                       "allows 128 presentation contexts (PS3.8 9.3.2.2), one of them for "
                       "Storage Commitment")
    count = max(1, min(args.associations, len(objects)))
    contexts: list[tuple[str, Sequence[str]]] = [(cls, [ts]) for cls, ts in pairs]
    if args.commit:
        contexts.append(commit_scu.CONTEXT)
    senders = [Sender(partial(_connect, args, contexts),
                      objects[i * len(objects) // count:(i + 1) * len(objects) // count],
                      max_pdu=args.pdu, retries=args.retries, backoff=args.retry_backoff)
               for i in range(count)]
    try:
        start = time.perf_counter()
        _all(_each([s.open for s in senders]))
        setup = time.perf_counter() - start
        window = min(s.assoc.window for s in senders if s.assoc is not None)
        tls = next(s.assoc.tls for s in senders if s.assoc is not None)
        start = time.perf_counter()
        gave_up = _gave_up(_each([s.send for s in senders]))
        seconds = time.perf_counter() - start
        commitment = {} if gave_up else _commit(args, senders[0], objects)
    except BaseException:
        for sender in senders:  # every association that came up, whichever failed
            sender.abort()
        raise
    for sender in senders:
        sender.release()
    out = _outcome(objects, senders)
    all_committed = commitment.get("committed", len(objects)) == len(objects)
    return {**out, "ok": out["complete"] and all_committed, "setup_seconds": setup,
            "seconds": seconds, "window": window, "associations": count, **commitment, **tls,
            **({"error": gave_up} if gave_up else {})}


def _outcome(objects: list[Part10], senders: list[Sender]) -> dict[str, Any]:
    """What the senders achieved, as report fields: statuses, failures, retries, recovery."""
    codes = [code for s in senders for code in s.statuses]
    statuses = Counter(f"0x{code:04X}" if code is not None and code >= 0 else "none"
                       for code in codes)
    failed = [str(obj.path) for obj, code in zip(objects, codes, strict=True) if code != 0]
    recoveries = [r for s in senders for r in s.recoveries]
    return {"objects": len(objects), "bytes": sum(o.size for o in objects),
            "statuses": dict(statuses), "failed": failed,
            "retries": sum(s.retries for s in senders),
            "recover_seconds": max(recoveries) if recoveries else None,
            "breaks": [e for s in senders for e in s.errors] or None, "complete": not failed}


def _all(results: list[T | BaseException]) -> list[T]:
    """The results, or the first exception among them raised."""
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


@contextlib.contextmanager
def _listening(port: int) -> Iterator[socket.socket | None]:
    """With ``--commit-port``: a socket where the archive may open an association to bring
    the commitment result (PS3.4 J.3.3), on every address (IPv6 and IPv4)."""
    if not port:
        yield None
        return
    try:
        listener = socket.create_server(("::", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True)
    except OSError as exc:
        raise ScuError(f"--commit-port {port}: cannot listen: {exc}") from None
    with listener:
        yield listener


def _gave_up(results: list[BaseException | None]) -> str:
    """Why an association gave up after its retries ('' if none did): the study is then
    reported as far as it went; any other exception is raised."""
    why = ""
    for result in results:
        if isinstance(result, RetriesExhausted):
            why = why or str(result)
        elif isinstance(result, BaseException):
            raise result
    return why


def _commit(args: argparse.Namespace, sender: Sender, objects: list[Part10],
            ) -> dict[str, Any]:
    """With ``--commit``: the Storage Commitment of every object, as report fields."""
    if not args.commit:
        return {}
    start = time.perf_counter()
    try:
        with _listening(args.commit_port) as listener:
            answers = sender.commit(objects, args.commit_timeout, listener, args.calling)
        error = None
    except (CommitmentError, RetriesExhausted) as exc:
        answers, error = {o.sop_instance: "no answer" for o in objects}, str(exc)
    return {"committed": sum(a == "committed" for a in answers.values()),
            "commitment": answers, "commit_seconds": time.perf_counter() - start,
            "commit_error": error}


def find(args: argparse.Namespace) -> dict[str, Any]:
    # Lazy on purpose (tests/unit/test_layers.py LAZY_IMPORTS): the Q/R client loads pynetdicom,
    # ~0.2 s the store path (the benchmarks' hot path) does not pay.
    from lab.dicom import qrscu

    return qrscu.find(args)


def move(args: argparse.Namespace) -> dict[str, Any]:
    from lab.dicom import qrscu

    return qrscu.move(args)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's, given the terminal's width (COLUMNS, else the terminal's, else 80) as
    shutil would find it, without importing shutil: argparse makes a formatter for every
    argument it adds, and that import alone was 2 ms of every C-STORE run's start."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        if kwargs.get("width") is None:
            columns = os.environ.get("COLUMNS", "")
            if not columns.isdigit():
                try:
                    columns = str(os.get_terminal_size(sys.__stdout__.fileno()).columns
                                  if sys.__stdout__ is not None else 80)
                except (ValueError, OSError):
                    columns = "80"
            kwargs["width"] = max(int(columns) - 2, 20)
        super().__init__(prog, **kwargs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.dicom.scu", description=__doc__,
                                formatter_class=_HelpFormatter)
    p.add_argument("operation", choices=("echo", "store", "find", "move"))
    p.add_argument("files", nargs="*", help="files to store")
    p.add_argument("--host", required=True, help="peer address (IPv4 or IPv6)")
    p.add_argument("--port", type=int, default=PACS_PORT)
    p.add_argument("--called", default=PACS_AE, help="peer AE title")
    p.add_argument("--calling", default=MODALITY_AE, help="our AE title")
    p.add_argument("--pdu", type=int, default=0, help="maximum PDU length (0 = unlimited)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--file-list", help="a file naming the files to store, one per line")
    p.add_argument("--window", type=int, default=WINDOW, metavar="N",
                   help="store: propose an Asynchronous Operations Window of N requests "
                   "outstanding (PS3.7 D.3.3.3), so the next object is sent while the peer "
                   "stores the last; the peer may grant fewer, and a peer that does not "
                   "answer the proposal gets one at a time (default %(default)s; 1 = propose "
                   "nothing; 0 = no limit)")
    p.add_argument("--associations", type=int, default=1, metavar="N",
                   help="store: spread the objects over N associations at once, each with "
                   "its own window (default %(default)s)")
    p.add_argument("--retries", type=int, default=0, metavar="N",
                   help="store: when an association breaks, send the objects not yet answered "
                   "again on a new one, at most N times per association (default %(default)s)")
    p.add_argument("--retry-backoff", type=float, default=0.5, metavar="S",
                   help="store: seconds to wait before the first retry, doubled for each "
                   "further one (default %(default)s)")
    p.add_argument("--commit", action="store_true",
                   help="store: then ask the peer to commit every object (Storage Commitment "
                   "Push Model, PS3.4 Annex J) and report its answer per object")
    p.add_argument("--commit-timeout", type=float, default=60.0, metavar="S",
                   help="store: longest wait for the commitment result (default %(default)s)")
    p.add_argument("--commit-port", type=int, default=0, metavar="PORT",
                   help="store --commit: also take the result on an association the peer "
                   "opens to this port (it calls our --calling AE title); 0 = only on the "
                   "association that asked (default)")
    p.add_argument("--model", choices=("patient", "study"), default="study")
    p.add_argument("--level", default="STUDY", choices=("PATIENT", "STUDY", "SERIES", "IMAGE"))
    p.add_argument("--key", action="append", default=[], metavar="KEYWORD=VALUE",
                   help="query/retrieve key (repeatable), e.g. StudyInstanceUID=1.2.3")
    p.add_argument("--dest", default=MODALITY_AE, help="C-MOVE destination AE title")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="move: N C-MOVEs in a row, one association each; reports those that "
                   "failed (moves_failed, failures)")
    tlsopts.add_arguments(p, server=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_intermixed_args(argv)
    if args.retries < 0 or args.retry_backoff < 0 or args.commit_timeout <= 0:
        cli.error(f"--retries {args.retries}, --retry-backoff {args.retry_backoff}: at least "
                  f"0; --commit-timeout {args.commit_timeout}: above 0")
    if not 0 <= args.commit_port <= 65535:
        cli.error(f"--commit-port {args.commit_port}: 0 to 65535")
    operations = {"echo": echo, "store": store, "find": find, "move": move}
    try:
        result = operations[args.operation](args)
    except (LabError, OSError, ValueError) as exc:
        result = {"ok": False, "error": str(exc)}
    # the report's fields are those of lab.dicom.report_models (SCU_REPORTS), checked where
    # it is read (lab.dicom.reports.parse_report); written without building the model, whose
    # dataclasses would add about 15 ms to the start of every C-STORE run
    print(report_line.line({"operation": args.operation, "peer": f"[{args.host}]:{args.port}",
                            **result}, report_line.TLS_FIELDS))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    code = main()
    # Everything is closed and the report printed: exit without tearing the interpreter down
    # (its modules and objects, about 5 ms that every C-STORE run would otherwise wait for).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
