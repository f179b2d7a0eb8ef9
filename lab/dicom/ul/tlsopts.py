"""DICOM TLS for the lab's DICOM programs (PS3.15 Annex B secure transport connection profiles,
mutual authentication against the lab CA): their command-line options, the ``ssl`` contexts
made from them (:mod:`lab.security.tls.contexts`), and what a handshake negotiated.

Options, the same on the PACS (and C-MOVE receiver) and on the SCU::

    --tls-profile NAME   a profile of lab.model.tls_profiles (bcp195-rfc8996, non-downgrading,
                         extended, aes, basic); absent = no TLS
    --tls-cert FILE      our certificate (PEM); required on a server, optional on a client
    --tls-key FILE       its private key (PEM)
    --tls-ca FILE        the CA certificate peers must be issued by (the only trust anchor)
    --tls-keylog FILE    append the TLS secrets to FILE in the NSS key-log format, for a
                         capture to be decrypted (default: $TELERADLAB_TLS_KEYLOG, else none)

A client checks that the address it dialled is in the server's SubjectAlternativeName (RFC
6125); a server requires a client certificate from the CA. Handshakes are timed by the socket
class the contexts make (:class:`TimedSSLSocket`), for pynetdicom's associations as for the
lean path's.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

from lab.errors import LabError

TYPE_CHECKING = False  # not typing's: see lab.dicom.ul.records
if TYPE_CHECKING:
    import ssl
    from pathlib import Path
    from typing import Any

#: Profile names (lab.model.tls_profiles.PROFILES, checked there when used): listed here so that the
#: options cost no ssl import in a program run without TLS.
PROFILE_NAMES = ("bcp195-rfc8996", "non-downgrading", "extended", "aes", "basic")
#: The environment variable `teleradlab capture` sets while it captures, so that the programs a
#: run starts in the nodes write their TLS secrets where the capture embeds them.
KEYLOG_ENV = "TELERADLAB_TLS_KEYLOG"


@functools.cache
def timed_socket_class() -> type[ssl.SSLSocket]:
    """An SSLSocket class that remembers how long its handshake took (handshake_seconds)."""
    import ssl

    class TimedSSLSocket(ssl.SSLSocket):
        handshake_seconds: float | None = None

        def do_handshake(self, block: bool = False) -> None:
            start = time.perf_counter()
            super().do_handshake(block)
            self.handshake_seconds = time.perf_counter() - start

    return TimedSSLSocket


def _path(text: str) -> Path:
    """An option's file (pathlib loaded only when one is given: not on the SCU's plain start)."""
    from pathlib import Path

    return Path(text)


def add_arguments(parser: argparse.ArgumentParser, *, server: bool) -> None:
    """The --tls-* options (see the module's doc)."""
    group = parser.add_argument_group(
        "DICOM TLS (PS3.15 Annex B; the registered port is 2762)")
    group.add_argument("--tls-profile", choices=PROFILE_NAMES, metavar="NAME",
                       help=f"use TLS with this profile ({', '.join(PROFILE_NAMES)}); "
                       "default: no TLS")
    who = "required with --tls-profile" if server else "omit to connect without one"
    group.add_argument("--tls-cert", type=_path, metavar="FILE",
                       help=f"our certificate, PEM ({who})")
    group.add_argument("--tls-key", type=_path, metavar="FILE", help="its private key, PEM")
    group.add_argument("--tls-ca", type=_path, metavar="FILE",
                       help="CA certificate that must have issued the peer's (required with "
                       "--tls-profile)")
    group.add_argument("--tls-keylog", type=_path, metavar="FILE",
                       default=os.environ.get(KEYLOG_ENV) or None,
                       help="append the TLS secrets to FILE (NSS key-log format) so that a "
                       f"capture can be decrypted; default: ${KEYLOG_ENV} if set, else none. "
                       "Anyone with FILE reads the traffic: for teaching only")
    if not server:
        group.add_argument("--tls-cipher", metavar="SUITE",
                           help="offer only this TLS 1.2 cipher suite of the profile (OpenSSL "
                           "name, e.g. ECDHE-RSA-AES128-GCM-SHA256); TLS 1.2 is then used, as "
                           "TLS 1.3 suites cannot be chosen from Python")


def _check(args: argparse.Namespace, *, server: bool) -> bool:
    given = [n for n in ("tls_cert", "tls_key", "tls_ca") if getattr(args, n) is not None]
    if args.tls_profile is None:
        if given:
            raise LabError(f"--{given[0].replace('_', '-')} needs --tls-profile")
        return False
    missing = [n for n in (("tls_cert", "tls_key") if server else ()) + ("tls_ca",)
               if getattr(args, n) is None]
    if missing:
        raise LabError(f"--tls-profile needs --{missing[0].replace('_', '-')}")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise LabError(f"--{name.replace('_', '-')} {path}: no such file")
    return True


def server_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context the options ask for (None without --tls-profile); LabError naming
    the option if they are incomplete, the files unreadable, or the profile impossible here."""
    if not _check(args, server=True):
        return None
    # Lazy on purpose (tests/unit/test_layers.py LAZY_IMPORTS): ssl and cryptography load only
    # when TLS is asked for.
    from lab.security.tls import contexts

    try:
        ctx = contexts.server_context(args.tls_profile, args.tls_cert, args.tls_key, args.tls_ca)
    except OSError as exc:  # also ssl.SSLError
        raise LabError(f"cannot load the TLS credentials {args.tls_cert}, {args.tls_key}, "
                       f"{args.tls_ca}: {exc}") from exc
    ctx.sslsocket_class = timed_socket_class()
    _keylog(ctx, getattr(args, "tls_keylog", None))
    return ctx


def _keylog(ctx: ssl.SSLContext, path: Path | None) -> None:
    """Have ``ctx`` append its secrets to ``path`` in the NSS key-log format (the format
    Wireshark's TLS dissector and ``editcap --inject-secrets tls`` read); nothing if None."""
    if path is None:
        return
    try:
        path.touch(mode=0o600)
    except OSError as exc:
        raise LabError(f"--tls-keylog {path}: cannot write it ({exc.strerror})") from exc
    ctx.keylog_filename = str(path)


def client_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client context the options ask for (None without --tls-profile): one per set of
    options in a process, so that its associations can resume one another's TLS sessions
    (a session resumes only with the context that made it; lab.dicom.ul.requestor)."""
    if not _check(args, server=False):
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise LabError("--tls-cert and --tls-key go together")
    return _client_context(args.tls_profile, args.tls_cert, args.tls_key, args.tls_ca,
                           getattr(args, "tls_cipher", None), getattr(args, "tls_keylog", None))


@functools.cache
def _client_context(profile: str, cert: Path | None, key: Path | None, ca: Path,
                    cipher: str | None, keylog: Path | None = None) -> ssl.SSLContext:
    from lab.security.tls import contexts

    try:
        ctx = contexts.client_context(profile, cert, key, ca)
    except OSError as exc:  # also ssl.SSLError
        raise LabError(f"cannot load the TLS credentials: {exc}") from exc
    if cipher:
        contexts.restrict_cipher(ctx, profile, cipher)
    ctx.sslsocket_class = timed_socket_class()
    _keylog(ctx, keylog)
    return ctx


def client_from_server(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A client context with the server's own credentials, for the associations a server
    opens itself (C-MOVE sub-operations to a TLS destination)."""
    if args.tls_profile is None:
        return None
    return client_context(args)


def negotiated(sock: Any) -> dict[str, Any]:
    """handshake_seconds, tls_version, cipher and tls_resumed (the handshake resumed an
    earlier session: RFC 8446 2.2) of a socket (all None if it is not TLS)."""
    ssl = sys.modules.get("ssl")
    if ssl is None or not isinstance(sock, ssl.SSLSocket):
        return {"handshake_seconds": None, "tls_version": None, "cipher": None,
                "tls_resumed": None}
    cipher = sock.cipher()
    return {"handshake_seconds": getattr(sock, "handshake_seconds", None),
            "tls_version": sock.version(), "cipher": cipher[0] if cipher else None,
            "tls_resumed": sock.session_reused}
