"""The "real remote site" of the probe's tests, made of nothing of the lab: two network
namespaces the test creates (the site and the prober, joined by a veth pair, addresses from
198.18.0.0/15), DCMTK's storescp and dcmqrscp as the site's DICOM peers (in clear, over TLS
with a good, an expired or a retired-profile setup), nftables dropping one port, and a
banner server that is not DICOM; certificates made here with ``cryptography``.

Everything started is stopped by process id, and both namespaces are deleted, by
:meth:`Site.close`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROBER, SITE = "198.18.0.1", "198.18.0.2"
PROBER6, SITE6 = "2001:db8::1", "2001:db8::2"
STORESCP, DCMQRSCP = "/usr/bin/storescp", "/usr/bin/dcmqrscp"
#: Ports of the site: what listens there.
PLAIN, TLS_GOOD, TLS_EXPIRED, TLS_RETIRED = 11112, 2762, 2763, 2764
QR, SILENT, CLOSED, NOT_DICOM = 11113, 11199, 11198, 8022
#: pynetdicom's Q/R SCP: knows only FRIEND as a move destination, accepts only FRIEND as caller
#: on the second port.
PY_QR, PY_PICKY, PY_QR6 = 11114, 11115, 11116

_BANNER = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(8)
while True:
    conn, _ = srv.accept()
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n")
    conn.close()
"""


#: A Study Root Q/R SCP made with pynetdicom (independent of the lab's DICOM code): C-FIND
#: matches nothing; C-MOVE answers 0xA801 for a destination other than FRIEND (pynetdicom does,
#: when the handler yields no address: PS3.4 C.4.2.1.5). With a third argument, it accepts
#: associations only from the calling AE FRIEND (pynetdicom's require_calling_aet).
_PY_QR = """
import sys
from pynetdicom import AE, evt
from pynetdicom.sop_class import (StudyRootQueryRetrieveInformationModelFind as FIND,
    StudyRootQueryRetrieveInformationModelMove as MOVE, Verification)
def on_find(event):
    yield from ()
def on_move(event):
    dest = event.move_destination
    dest = (dest.decode() if isinstance(dest, bytes) else str(dest)).strip()
    if dest != "FRIEND":
        yield None, None
        return
    yield "198.18.0.1", 11119
    yield 0
ae = AE(ae_title="PYQR")
for cx in (FIND, MOVE, Verification):
    ae.add_supported_context(cx)
if len(sys.argv) > 3:
    ae.require_calling_aet = ["FRIEND"]
ae.start_server((sys.argv[1], int(sys.argv[2])), block=True,
                evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_MOVE, on_move)])
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


@dataclass
class Cred:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_pki(where: Path) -> dict[str, Path | Cred]:
    """A CA, the site's good and expired server certificates (RSA 2048, SAN IP SITE), and
    the prober's client certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(_name("probe test CA")).issuer_name(
        _name("probe test CA")).public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256()))
    (where / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out: dict[str, Path | Cred] = {"ca": where / "ca.pem"}

    def leaf(name: str, start: dt.datetime, end: dt.datetime, usage: x509.ObjectIdentifier,
             san: bool) -> Cred:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        b = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(SITE))]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        cred = Cred(where / f"{name}.pem", where / f"{name}.key")
        cred.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, cred.key)
        return cred

    server = ExtendedKeyUsageOID.SERVER_AUTH
    out["good"] = leaf("good", now - dt.timedelta(days=1), now + dt.timedelta(days=365), server,
                       True)
    out["expired"] = leaf("expired", now - dt.timedelta(days=60), now - dt.timedelta(days=2),
                          server, True)
    out["client"] = leaf("client", now - dt.timedelta(days=1), now + dt.timedelta(days=365),
                         ExtendedKeyUsageOID.CLIENT_AUTH, False)
    return out


QR_CONFIG = """NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
friend = (FRIEND, {prober}, 11119)
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
OPENQR {db}/open RW (10, 10mb) ANY
CLOSEDQR {db}/closed RW (10, 10mb) friend
AETable END
"""


@dataclass
class Site:
    """The two namespaces and the peers; ``close`` undoes everything."""

    work: Path
    tag: str = field(default_factory=lambda: f"prb-{os.getpid()}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pki: dict[str, Path | Cred] = field(default_factory=dict)

    @property
    def site(self) -> str:
        return f"{self.tag}-site"

    @property
    def prober(self) -> str:
        return f"{self.tag}-probe"

    def build(self) -> None:
        sh("ip", "netns", "add", self.site)
        sh("ip", "netns", "add", self.prober)
        sh("ip", "-n", self.prober, "link", "add", "eth0", "type", "veth", "peer", "name",
           "eth0", "netns", self.site)
        for ns, addr, addr6 in ((self.prober, PROBER, PROBER6), (self.site, SITE, SITE6)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{addr6}/64", "dev", "eth0", "nodad")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        rules = self.work / "drop.nft"
        rules.write_text("table inet probepeer {\n chain input {\n  type filter hook input "
                         f"priority 0;\n  tcp dport {SILENT} drop\n }}\n}}\n")
        sh("ip", "netns", "exec", self.site, "nft", "-f", str(rules))
        self.pki = make_pki(self.work)

    def start(self, argv: list[str], name: str, port: int) -> None:
        """Run ``argv`` in the site's namespace and wait until ``port`` listens there."""
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "TCP_NODELAY": "1"}
        proc = subprocess.Popen(["ip", "netns", "exec", self.site, *argv], stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.work, env=env)
        log.close()
        self.procs.append(proc)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            listening = sh("ip", "netns", "exec", self.site, "ss", "-Htln",
                           f"sport = :{port}").stdout
            if listening.strip():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{name} did not listen on {port}: "
                             + (self.work / f"{name}.log").read_text(errors="replace"))

    def tls_args(self, cred: str, *profile: str) -> list[str]:
        c = self.pki[cred]
        assert isinstance(c, Cred)
        return ["+tls", str(c.key), str(c.cert), "+cf", str(self.pki["ca"]), *profile]

    def start_all(self) -> None:
        out = self.work / "received"
        out.mkdir()
        scp = [STORESCP, "-od", str(out), "-aet", "STORESCP"]
        self.start([*scp, str(PLAIN)], "plain", PLAIN)
        self.start([*scp, *self.tls_args("good"), str(TLS_GOOD)], "tls-good", TLS_GOOD)
        self.start([*scp, *self.tls_args("expired"), str(TLS_EXPIRED)], "tls-expired",
                   TLS_EXPIRED)
        self.start([*scp, *self.tls_args("good", "+pa"), str(TLS_RETIRED)], "tls-retired",
                   TLS_RETIRED)
        for area in ("open", "closed"):
            (self.work / "db" / area).mkdir(parents=True)
        cfg = self.work / "dcmqrscp.cfg"
        cfg.write_text(QR_CONFIG.format(port=QR, prober=PROBER, db=self.work / "db"))
        self.start([DCMQRSCP, "-c", str(cfg), "-dhl", str(QR)], "qr", QR)
        self.start([sys.executable, "-c", _PY_QR, SITE, str(PY_QR)], "py-qr", PY_QR)
        self.start([sys.executable, "-c", _PY_QR, SITE, str(PY_PICKY), "picky"], "py-picky",
                   PY_PICKY)
        self.start([sys.executable, "-c", _PY_QR, SITE6, str(PY_QR6)], "py-qr6", PY_QR6)
        self.start([sys.executable, "-c", _BANNER, SITE, str(NOT_DICOM)], "banner", NOT_DICOM)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for ns in (self.prober, self.site):
            sh("ip", "netns", "del", ns, check=False)

