"""strongSwan's IKE daemon, charon, run inside lab nodes and driven only through VICI.

Each node that does IKE runs its own charon with its own ``strongswan.conf`` (``STRONGSWAN_CONF``
in the node's data directory). Nodes have a private ``/run``, so the daemons' pid files and VICI
sockets never collide; the orchestrator reaches a node's VICI socket through the host path of that
``/run``. Kernel ESP (kernel-netlink, XFRM) is used where the kernel has it, else ESP runs in
userspace (kernel-libipsec, over a TUN device, tunnel mode only, ESP in UDP as RFC 3948).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import vici

from lab.backends.base import Lab
from lab.errors import IpsecError
from lab.host import processes, programs, shell
from lab.host.wait import until
from lab.model.names import LabPaths
from lab.model.plan import EspPath

IPSEC_DIRS = (Path("/usr/lib/ipsec"), Path("/usr/libexec/ipsec"))
#: Crypto plugins: everything the lab's proposal keywords can name (3DES and Blowfish come from
#: OpenSSL's legacy provider through the openssl plugin).
CRYPTO_PLUGINS = ("random nonce openssl aes sha1 sha2 md5 gcm chapoly hmac xcbc cmac ctr ccm kdf "
                  "gmp curve25519")
CERT_PLUGINS = "x509 revocation constraints pubkey pkcs1 pkcs8 pem"
#: Packets charon sends itself (IKE, and with kernel-libipsec the ESP-in-UDP packets) carry this
#: firewall mark and bypass the routing table that sends protected traffic into the tunnel.
BYPASS_MARK = 0x42
TUN_DEVICE = "ipsec0"
VICI_SOCKET = "charon.vici"  # in the node's /run
START_TIMEOUT_S = 10.0


def charon_binary() -> Path:
    """charon where the registry of programs finds it (not on PATH: strongSwan's libexec)."""
    program = programs.BY_NAME["charon"]
    found = programs.locate(program)
    if found is None:
        raise IpsecError("strongSwan's charon is not installed "
                         f"({programs.install_command([program])})")
    return Path(found)


def config_text(esp_path: EspPath, log_path: Path, vici_socket: str = f"/run/{VICI_SOCKET}"
                ) -> str:
    """A complete ``strongswan.conf`` for one node: only the plugins the lab uses, a file log
    (IKE and kernel messages at level 2), and the bypass mark for charon's own packets."""
    kernel = "kernel-netlink" if esp_path is EspPath.KERNEL else "kernel-libipsec kernel-netlink"
    return f"""# written by teleradlab; charon reads it through STRONGSWAN_CONF
charon {{
  load = {CRYPTO_PLUGINS} {CERT_PLUGINS} {kernel} socket-default vici
  install_routes = yes
  retransmit_tries = 3
  retransmit_timeout = 1.0
  filelog {{
    lab {{
      path = {log_path}
      time_format = %H:%M:%S
      default = 1
      ike = 2
      cfg = 2
      knl = 2
      flush_line = yes
    }}
  }}
  plugins {{
    kernel-netlink {{
      fwmark = !{BYPASS_MARK:#x}
    }}
    socket-default {{
      fwmark = {BYPASS_MARK:#x}
    }}
    kernel-libipsec {{
      allow_peer_ts = yes
    }}
    vici {{
      socket = unix://{vici_socket}
    }}
  }}
}}
"""


def connect(path: Path, timeout: float = 30.0) -> Any:
    """A VICI session on the daemon listening at ``path`` (a host path)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise IpsecError(f"cannot reach charon's VICI socket {path}: {exc}") from None
    return vici.Session(sock)


@dataclass
class Charon:
    """One charon in one node of a running lab."""

    lab: Lab
    node: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def paths(self) -> LabPaths:
        return self.lab.paths

    @property
    def esp_path(self) -> EspPath:
        """The ESP path of the lab's plan (userspace ESP when the lab plans no IPsec)."""
        ipsec = self.lab.plan.ipsec
        return ipsec.esp_path if ipsec else EspPath.LIBIPSEC

    @property
    def log(self) -> Path:
        return self.paths.node_data(self.node) / "charon.log"

    @property
    def conf(self) -> Path:
        return self.paths.node_data(self.node) / "strongswan.conf"

    @property
    def vici_path(self) -> Path:
        return self.paths.node_run(self.node) / VICI_SOCKET

    def log_tail(self, lines: int = 25) -> str:
        if not self.log.exists():
            return "(charon wrote no log)"
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def start(self) -> None:
        """Start the daemon and return once its VICI socket answers."""
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(config_text(self.esp_path, self.log), encoding="utf-8")
        argv = ["env", f"STRONGSWAN_CONF={self.conf}", str(charon_binary())]
        self.proc = self.lab.spawn(self.node, argv, log_path=self.log.with_suffix(".out"))
        until(self._answers, START_TIMEOUT_S, 0.02,
              what=f"charon on {self.node} opening its VICI socket",
              detail=lambda: f"its log {self.log}:\n{self.log_tail()}")

    def _answers(self) -> bool:
        """Whether the daemon answers on its VICI socket yet; IpsecError if it has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise IpsecError(f"charon on {self.node} exited (status {self.proc.returncode}); "
                             f"its log {self.log}:\n{self.log_tail()}")
        if not self.vici_path.exists():
            return False
        try:
            self.session().version()
        except (IpsecError, OSError):
            return False
        return True

    def session(self) -> Any:
        return connect(self.vici_path)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            processes.stop([self.proc.pid])
            self.proc.wait(timeout=10)


def vici_error(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


@contextmanager
def _probe_daemon() -> Iterator[Any]:
    """A throwaway charon in new, anonymous mount and network namespaces (gone when it exits):
    it touches neither the host's network nor its /run."""
    with tempfile.TemporaryDirectory(prefix="teleradlab-charon-", dir="/tmp") as tmp:
        d = Path(tmp)
        sock = d / "charon.vici"
        (d / "strongswan.conf").write_text(
            config_text(EspPath.LIBIPSEC, d / "charon.log", str(sock)).replace(
                "install_routes = yes", "install_routes = no\n  port = 0\n  port_nat_t = 0"))
        script = (f"mount -t tmpfs tmpfs /run && STRONGSWAN_CONF={d}/strongswan.conf "
                  f"exec {charon_binary()}")
        proc = shell.spawn(["unshare", "--mount", "--net", "--propagation", "private",
                            "sh", "-c", script], log_path=d / "charon.out")
        log = d / "charon.log"

        def ready() -> bool:
            if proc.poll() is not None:
                raise IpsecError("could not start a charon to ask for its algorithms: " + (
                    log.read_text(errors="replace")[-1500:] if log.exists() else "no log"))
            return sock.exists()

        try:
            until(ready, START_TIMEOUT_S, 0.02, what="a charon to ask for its algorithms",
                  detail=lambda: log.read_text(errors="replace")[-1500:] if log.exists() else "")
            yield connect(sock)
        finally:
            if proc.poll() is None:
                processes.stop([proc.pid])
            proc.wait(timeout=10)


@cache
def algorithms() -> Mapping[str, list[str]]:
    """What the installed strongSwan can do, by transform type (``encryption``, ``aead``,
    ``integrity``, ``prf``, ``dh``), read from a real charon through VICI ``get_algorithms``
    (once per process: the installed plugins do not change under a running command)."""
    with _probe_daemon() as session:
        raw = session.get_algorithms()
    return {str(kind): [str(k) for k in names] for kind, names in raw.items()}
