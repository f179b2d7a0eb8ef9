"""The single choke point for running external programs.

Every command is logged (exactly as run) at DEBUG level, has a timeout, and a failure raises
:class:`~lab.errors.CommandError` carrying the command, status, stdout and stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

from lab.errors import CommandError

log = logging.getLogger("lab.host.shell")

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run ``argv`` to completion and capture its output (text)."""
    log.debug("run: %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            argv, None, _text(exc.stdout), _text(exc.stderr), timeout=timeout
        ) from None
    except FileNotFoundError:
        raise CommandError(argv, 127, "", f"{argv[0]}: program not found") from None
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and not result.ok:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return result


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path | None = None,
    capture: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the background, in its own session, with no standard input.

    Output goes to ``log_path`` (appended), or to pipes with ``capture``, or nowhere. The caller
    owns the process and must stop it (see ``lab.host.processes``)."""
    log.debug("spawn: %s", shlex.join(argv))
    handle: IO[bytes] | None = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
    out: int | IO[bytes] = subprocess.PIPE if capture else (handle or subprocess.DEVNULL)
    err: int | IO[bytes] = subprocess.PIPE if capture else subprocess.STDOUT
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise CommandError(argv, 127, "", f"{argv[0]}: program not found") from None
    finally:
        if handle is not None:
            handle.close()


def replace_process(argv: Sequence[str]) -> NoReturn:
    """Replace this process with ``argv`` (used by ``teleradlab exec``: exit code and terminal
    pass straight through)."""
    log.debug("exec: %s", shlex.join(argv))
    try:
        os.execvp(argv[0], list(argv))
    except FileNotFoundError:
        raise CommandError(argv, 127, "", f"{argv[0]}: program not found") from None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
