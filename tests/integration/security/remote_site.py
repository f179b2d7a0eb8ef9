"""The "real remote site" of the attached-site tests, made of nothing of the lab: a namespace
with a veth pair to the host (the lab's uplink), Debian's strongSwan charon (kernel-libipsec,
its own /run in a private mount namespace, a swanctl.conf written here and loaded with
``swanctl --load-all``), DCMTK's storescp on the remote LAN, and for certificate
authentication a CA and two certificates made by ``openssl``. Everything is removed by its name
or process id."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns

from ..conftest import stop

REMOTE_NS = "att-remote"
HOST_IF, PEER_IF = "att-up0", "att-up1"
REMOTE_GW, LAB_UPLINK = "198.19.250.1", "198.19.250.2"
REMOTE_LAN, PACS_ADDR = "198.19.251.0/24", "198.19.251.1"
LAB_LAN = "198.19.252.0/24"
PSK = "attached-site-test-key"
PACS_PORT, PACS_AE = 11112, "REMOTEPACS"
CHARON = Path("/usr/lib/ipsec/charon")

STRONGSWAN_CONF = """charon {{
  load = random nonce openssl aes sha1 sha2 gcm hmac kdf gmp curve25519 pem pkcs1 pkcs8 x509 \
pubkey kernel-libipsec kernel-netlink socket-default vici
  install_routes = yes
  filelog {{
    remote {{
      path = {log}
      default = 1
      ike = 2
      flush_line = yes
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{vici}
    }}
  }}
}}
"""

#: The lab gateway's IKE identity (its node name, the default) and the remote's.
LAB_ID, REMOTE_ID = "gw-a", "remote-gw"


def swanctl_conf(auth: str, pki: Path | None) -> str:
    """The remote's connection: the lab's LAN against its own, PSK or certificates."""
    if auth == "psk":
        local, remote = "auth = psk", "auth = psk"
        secrets = (f"ike-lab {{\n    id-1 = {REMOTE_ID}\n    id-2 = {LAB_ID}\n"
                   f'    secret = "{PSK}"\n  }}')
    else:
        assert pki is not None
        local = f"auth = pubkey\n      certs = {pki}/remote.crt"
        remote = f"auth = pubkey\n      cacerts = {pki}/ca.crt"
        secrets = ""  # the key is read from private/ beside swanctl.conf (start_charon)
    return f"""connections {{
  lab {{
    version = 2
    local_addrs = {REMOTE_GW}
    remote_addrs = {LAB_UPLINK}
    proposals = aes256-sha256-modp2048
    local {{
      {local}
      id = {REMOTE_ID}
    }}
    remote {{
      {remote}
      id = {LAB_ID}
    }}
    children {{
      lab {{
        local_ts = {REMOTE_LAN}
        remote_ts = {LAB_LAN}
        esp_proposals = aes256gcm16
      }}
    }}
  }}
}}
secrets {{
  {secrets}
}}
"""


def make_pki(d: Path) -> Path:
    """With openssl: a CA, and a certificate for each gateway naming its IKE identity."""
    d.mkdir()

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "2",
         "-subj", "/CN=remote test CA")
    for name, ident in (("remote", REMOTE_ID), ("lab", LAB_ID)):
        (d / f"{name}.ext").write_text(f"subjectAltName = DNS:{ident}\n")
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
             "-subj", f"/CN={ident}")
        ossl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
             "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
             "-out", str(d / f"{name}.crt"), "-extfile", str(d / f"{name}.ext"))
    return d


def in_remote(*argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{REMOTE_NS}", "--", *argv]




@dataclass
class Remote:
    """The remote site's parts the test looks at."""

    dir: Path
    charon: subprocess.Popen[bytes]
    received: Path
    pki: Path | None

    def swanctl(self, *args: str) -> str:
        return subprocess.run(in_remote("swanctl", *args, "--uri", f"unix://{self.dir}/vici"),
                              capture_output=True, text=True, timeout=30, check=True).stdout


def network() -> None:
    """The remote namespace, the uplink's veth pair and the remote LAN."""
    netns.create(REMOTE_NS)
    with IPRoute() as ipr:
        ipr.link("add", ifname=HOST_IF, kind="veth", peer={"ifname": PEER_IF})
        ipr.link("set", index=ipr.link_lookup(ifname=PEER_IF)[0], net_ns_fd=REMOTE_NS)
        ipr.link("set", index=ipr.link_lookup(ifname=HOST_IF)[0], state="up")
    with NetNS(REMOTE_NS) as ns:
        # The remote LAN: this kernel has no dummy device, so one end of a veth pair.
        ns.link("add", ifname="att-lan", kind="veth", peer={"ifname": "att-lan1"})
        ns.link("set", index=ns.link_lookup(ifname="att-lan1")[0], state="up")
        for name, addr in ((PEER_IF, REMOTE_GW), ("att-lan", PACS_ADDR)):
            index = ns.link_lookup(ifname=name)[0]
            ns.addr("add", index=index, address=addr, prefixlen=24)
            ns.link("set", index=index, state="up")
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def teardown_network() -> None:
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=HOST_IF):
            ipr.link("del", index=index)
    if REMOTE_NS in netns.listnetns():
        netns.remove(REMOTE_NS)


def start_charon(d: Path, auth: str, pki: Path | None) -> subprocess.Popen[bytes]:
    (d / "run").mkdir()
    (d / "strongswan.conf").write_text(STRONGSWAN_CONF.format(log=d / "charon.log",
                                                              vici=d / "vici"))
    (d / "swanctl.conf").write_text(swanctl_conf(auth, pki))
    if pki is not None:  # swanctl loads private keys from private/ beside its swanctl.conf
        (d / "private").mkdir()
        (d / "private" / "remote.key").write_bytes((pki / "remote.key").read_bytes())
    script = (f"mount --bind {d}/run /run && STRONGSWAN_CONF={d}/strongswan.conf "
              f"exec {CHARON}")
    with open(d / "charon.err", "wb") as err:
        proc = subprocess.Popen(in_remote("unshare", "--mount", "--propagation", "private",
                                          "sh", "-c", script),
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 15
    while not (d / "vici").exists():
        assert proc.poll() is None and time.monotonic() < deadline, (
            "the remote charon did not start: " + (d / "charon.err").read_text())
        time.sleep(0.05)
    subprocess.run(in_remote("swanctl", "--load-all", "--file", str(d / "swanctl.conf"),
                             "--uri", f"unix://{d}/vici"),
                   check=True, capture_output=True, timeout=30)
    return proc


@contextmanager
def start_remote(d: Path, auth: str) -> Iterator[Remote]:
    """The whole remote site, removed when the block ends (processes by id, then the links
    and the namespace by name)."""
    teardown_network()
    d.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        network()
        pki = make_pki(d / "pki") if auth == "cert" else None
        received = d / "received"
        received.mkdir()
        procs.append(start_charon(d, auth, pki))
        procs.append(subprocess.Popen(
            in_remote("env", "TCP_NODELAY=1", "/usr/bin/storescp", "+xa", "-aet", PACS_AE,
                      "-od", str(received), str(PACS_PORT)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield Remote(d, procs[0], received, pki)
    finally:
        for proc in procs:
            stop(proc)
        teardown_network()
