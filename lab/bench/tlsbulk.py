"""Bulk TCP or TLS throughput between two nodes: the raw transport the DICOM programs use, with
the same ``--tls-*`` options (so the same profile, cipher and certificates), for the security
benchmark's "DICOM over the path / raw transport over the same path" ratio. iperf3 measures
plain TCP; it has no TLS, so this program measures both the same way.

    python -m lab.bench.tlsbulk serve --port P [--tls-...]     # prints one JSON line per connection
    python -m lab.bench.tlsbulk send --host H --port P --mbytes N [--tls-...]

The receiver times from the first byte after the handshake to the last, and prints
``{"bytes": ..., "seconds": ..., "mbit_per_s": ...}`` (:class:`lab.dicom.reports.BulkReport`);
it serves one connection, then exits.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lab.dicom.reports import BulkListening, BulkReport
from lab.dicom.ul import tlsopts

CHUNK = 256 * 1024


def serve(args: argparse.Namespace) -> int:
    ctx = tlsopts.server_context(args)
    with socket.create_server(("::", args.port), family=socket.AF_INET6, dualstack_ipv6=True) as s:
        print(BulkListening(listening=args.port).line(), flush=True)
        conn, _ = s.accept()
        if ctx is not None:
            conn = ctx.wrap_socket(conn, server_side=True)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        total, start = 0, 0.0
        sink = _Files(args.into, args.object_bytes) if args.into else None
        with conn:
            if sink is None:
                while n := conn.recv_into(buf):
                    if not total:
                        start = time.perf_counter()
                    total += n
            else:  # a buffer full per write, as the archive writes a dataset (a TLS receive
                filled = 0  # brings one record, 16 KiB at most)
                while n := conn.recv_into(view[filled:]):
                    if not total:
                        start = time.perf_counter()
                    total += n
                    filled += n
                    if filled == CHUNK:
                        sink.write(view)
                        filled = 0
                sink.write(view[:filled])
                sink.close()
            seconds = time.perf_counter() - start if total else 0.0
            negotiated = tlsopts.negotiated(conn)  # while the connection is open
        report = BulkReport(bytes=total, seconds=seconds,
                            mbit_per_s=total * 8 / seconds / 1e6 if seconds else 0.0,
                            **negotiated)
        print(report.line(), flush=True)
    return 0


class _Files:
    """Writes a stream into successive new files of ``size`` bytes in ``folder`` (as an archive
    keeps every object it receives), so the raw figure pays what storing bytes costs."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size, self.count = folder, size, 0
        self.fd, self.left = -1, 0
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, data: memoryview) -> None:
        while data:
            if self.left == 0:
                self.close()
                self.count += 1
                self.fd = os.open(self.folder / f"{self.count:06d}.bin",
                                  os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                self.left = self.size
            n = os.write(self.fd, data[:self.left])
            data, self.left = data[n:], self.left - n

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def send(args: argparse.Namespace) -> int:
    ctx = tlsopts.client_context(args)
    payload = bytes(CHUNK)
    remaining = int(args.mbytes * 1e6)
    with socket.create_connection((args.host, args.port), timeout=60) as raw:
        conn = ctx.wrap_socket(raw, server_hostname=args.host) if ctx is not None else raw
        with conn:
            while remaining > 0:
                conn.sendall(payload[:min(CHUNK, remaining)])
                remaining -= CHUNK
            # End with a FIN after the last byte and wait for the receiver's: closing at once
            # with unread bytes (TLS 1.3 session tickets) would send a reset, and the receiver
            # would lose the tail of the stream still in its buffers.
            conn.shutdown(socket.SHUT_WR)  # on TLS: the TCP half-close, without close_notify
            while conn.recv(CHUNK):
                pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench.tlsbulk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="receive one connection and report its throughput")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--into", type=Path, default=None, metavar="DIR",
                     help="write what arrives into new files of --object-bytes each in DIR")
    srv.add_argument("--object-bytes", type=int, default=1 << 19)
    tlsopts.add_arguments(srv, server=True)
    snd = sub.add_parser("send", help="send --mbytes of zeros")
    snd.add_argument("--host", required=True)
    snd.add_argument("--port", type=int, required=True)
    snd.add_argument("--mbytes", type=float, default=100.0)
    tlsopts.add_arguments(snd, server=False)
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else send(args)


if __name__ == "__main__":
    sys.exit(main())
