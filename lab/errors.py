"""One exception hierarchy for the whole lab.

Every error the lab raises on purpose is a :class:`LabError`; the CLI prints its message and exits
non-zero without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class LabError(Exception):
    """Base of every error the lab raises deliberately."""


class NotRootError(LabError):
    """Building labs needs root (network and mount namespaces)."""


class TopologyError(LabError):
    """A topology file is malformed or inconsistent.

    ``problems`` holds one line per problem, each naming the file, the field path and the value.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid topology {source}:\n{lines}")


class SweepError(TopologyError):
    """A sweep file is malformed: same shape as a topology error (file, field path, value)."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        super().__init__(source, problems)
        self.args = (f"invalid sweep {source}:\n" + "\n".join(f"  {p}" for p in problems),)


class LabExistsError(LabError):
    """A lab of that name is already running."""


class LabNotFoundError(LabError):
    """No running lab (or node) of that name."""


class ReachabilityError(LabError):
    """Hosts that should reach each other could not (real pings failed)."""


class CommandError(LabError):
    """An external command failed or timed out."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        *,
        timeout: float | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timeout = timeout
        cmd = " ".join(self.argv)
        if returncode is None:
            what = f"timed out after {timeout:g} s"
        else:
            what = f"exited with status {returncode}"
        detail = (stderr or stdout).strip()
        super().__init__(f"command {what}: {cmd}" + (f"\n{detail}" if detail else ""))


class PkiError(LabError):
    """A key or certificate could not be made, loaded, or trusted."""


class TlsError(LabError):
    """A TLS profile is unknown or cannot be done here, or TLS credentials do not fit it."""


class IpsecError(LabError):
    """An IPsec choice is invalid or unsupported here, or charon or its SAs did not come up."""


class MissingProgramError(LabError):
    """A program outside Python that a feature of the lab needs is not installed.

    ``programs`` names them; ``install`` is the exact command that provides them all."""

    def __init__(self, programs: Sequence[str], install: str, message: str) -> None:
        self.programs = tuple(programs)
        self.install = install
        super().__init__(message)


class WaitTimeout(LabError):
    """Something the lab waited for did not happen in time (:func:`lab.host.wait.until`).

    ``what`` names it, ``timeout`` is the wait in seconds, ``detail`` what was seen last."""

    def __init__(self, what: str, timeout: float, detail: str = "") -> None:
        self.what = what
        self.timeout = timeout
        self.detail = detail
        super().__init__(f"{what}: not within {timeout:g} s" + (f"\n{detail}" if detail else ""))
