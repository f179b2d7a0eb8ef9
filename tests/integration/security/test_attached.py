"""A lab site attached to a real network: its gateway runs IKEv2 with a "real" remote gateway
and its modality stores into the remote PACS through the tunnel.

The remote site is played by components this test starts itself, none made of lab code: a veth
pair (``att-up0`` in the host's namespace is the host interface handed to the lab as its
uplink, its peer in a namespace ``att-remote``), in that namespace Debian's strongSwan charon
(kernel-libipsec, a private mount namespace with its own /run, configured by a swanctl.conf
written here and loaded with ``swanctl --load-all``) and DCMTK's storescp on an address of the
remote LAN (one end of a second veth pair). Every namespace and process is removed by its name
or id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pyroute2 import IPRoute

from lab.dicom.data.generate import generate_study
from lab.model.names import netns_name

from ..capture import PATIENT, contains
from ..conftest import REPO, netns_names, stop, teleradlab
from .remote_site import (
    HOST_IF,
    LAB_LAN,
    LAB_UPLINK,
    PACS_ADDR,
    PACS_AE,
    PACS_PORT,
    PEER_IF,
    PSK,
    REMOTE_GW,
    REMOTE_ID,
    REMOTE_LAN,
    Remote,
    in_remote,
    start_remote,
)

LAB = "att-attach"

def _topology(mode: str, remote: Remote) -> str:
    """The lab's side: one site whose gateway's uplink is the host end of the veth pair, the
    remote gateway with the key or the certificates (made by openssl) the remote has."""
    if remote.pki is None:
        auth = f"auth: psk, psk: {PSK}"
    else:
        auth = f"auth: cert, ca: {remote.pki}/ca.crt, cert: lab.crt, key: lab.key"
    return f"""description: one site attached to a remote gateway through a host interface
sites:
  a:
    lan: {{family: ipv4, ipv4: {LAB_LAN}}}
    gateway:
      uplink: {{interface: {HOST_IF}, mode: {mode}, address: {LAB_UPLINK}/24,
               gateway: {REMOTE_GW}}}
    hosts: [{{name: modality, role: modality}}]
security:
  mode: ipsec
  ipsec:
    remote: {{address: {REMOTE_GW}, identity: {REMOTE_ID}, {auth},
              remote_ts: [{REMOTE_LAN}]}}
"""


@pytest.fixture(params=["psk"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    """The remote site (``remote_site``), authenticating by ``request.param``; the lab is
    removed by name before and after."""
    teleradlab("down", LAB, check=False)
    try:
        with start_remote(tmp_path / "remote", request.param) as site:
            yield site
    finally:
        teleradlab("down", LAB, check=False)


@contextmanager
def capture_uplink(pcap: Path) -> Iterator[Path]:
    """tshark on the remote side of the uplink while the body runs, stopped by its id."""
    proc = subprocess.Popen(in_remote("tshark", "-q", "-i", PEER_IF, "-w", str(pcap)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while "Capturing on" not in proc.stderr.readline():
            assert time.monotonic() < deadline and proc.poll() is None, "tshark did not start"
        yield pcap
    finally:
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _store(files: list[Path], timeout: int = 10) -> subprocess.CompletedProcess[str]:
    return teleradlab("exec", "--lab", LAB, "modality", "--", sys.executable, "-m",
                      "lab.dicom.scu", "store", "--host", PACS_ADDR, "--port", str(PACS_PORT),
                      "--called", PACS_AE, "--timeout", str(timeout), *map(str, files), check=False,
                      timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def _objects(folder: Path) -> dict[str, tuple[pydicom.Dataset, bytes]]:
    """SOP Instance UID -> the object's data set and its pixel bytes as written (storescp writes
    its own File Meta Information, so only the data sets are compared)."""
    out = {}
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        out[str(ds.SOPInstanceUID)] = (ds, path.read_bytes()[-len(ds.PixelData):])
    assert out, f"no object in {folder}"
    return out


def _protocols(pcap: Path) -> list[str]:
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.protocols"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return out.split()


def _cleartext_dicom(pcap: Path) -> list[str]:
    return [p for p in _protocols(pcap) if ":tcp" in p and ":esp" not in p]


def _lab_pids() -> list[int]:
    target = os.stat(f"/run/netns/{netns_name(LAB, 'gw-a')}")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                st = os.stat(entry / "ns" / "net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("remote", ["psk", "cert"], indirect=True)
def test_attached_site_stores_through_a_real_remote_gateway(remote: Remote,
                                                            tmp_path: Path) -> None:
    # The topology file sits beside the certificates: cert and key are relative to it.
    topo = (remote.pki or tmp_path) / "attached.yaml"
    topo.write_text(_topology("macvlan", remote))
    generate_study("CT", tmp_path / "study", objects=3)
    files = sorted((tmp_path / "study").glob("*.dcm"))
    assert len(files) == 3
    pcap = tmp_path / "uplink.pcap"
    with capture_uplink(pcap):
        teleradlab("up", str(topo), "--name", LAB, "--no-services", timeout=180)
        sas = remote.swanctl("--list-sas")
        assert "INSTALLED" in sas and LAB_LAN in sas and REMOTE_LAN in sas, sas
        status = teleradlab("status", LAB).stdout
        assert "uplink" in status and f"{LAB_UPLINK}/24" in status and "remote-gw" in status

        res = _store(files)
        assert res.returncode == 0, res.stdout + res.stderr
        assert _objects(remote.received) == _objects(tmp_path / "study")

        # The remote gateway dies: nothing answers through the tunnel, nothing in clear.
        stop(remote.charon)
        assert _store(files[:1], timeout=5).returncode != 0
        assert len(list(remote.received.iterdir())) == 3

        # The lab's processes are SIGKILLed: the tunnel device goes, the guard drops the rest.
        for pid in _lab_pids():
            os.kill(pid, signal.SIGKILL)
        assert _store(files[:1], timeout=5).returncode != 0
        assert len(list(remote.received.iterdir())) == 3

    protocols = _protocols(pcap)
    assert any(":esp" in p for p in protocols) and any(":isakmp" in p for p in protocols)
    assert _cleartext_dicom(pcap) == []
    assert not contains(pcap, PATIENT)

    # After the crash, the lab is cleaned by its name alone: nothing of it is left.
    teleradlab("clean", "--lab", LAB)
    assert not [n for n in netns_names() if n.startswith(f"tl-{LAB}.")]
    assert not Path(f"/run/teleradlab/labs/{LAB}").exists()
    with IPRoute() as ipr:
        host = ipr.link_lookup(ifname=HOST_IF)
        assert host, "the host interface stays where it was"
        macvlans = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                    if link.get_attr("IFLA_LINK") == host[0]
                    and (info := link.get_attr("IFLA_LINKINFO")) is not None
                    and info.get_attr("IFLA_INFO_KIND") == "macvlan"]
    assert macvlans == []


#: The host interface's own address and route on the host, which ``mode: move`` takes away
#: while the lab runs and ``down`` must give back.
HOST_ADDR, HOST_NET, HOST_NEXT_HOP = "198.19.253.5", "198.19.254.0/24", "198.19.253.1"


def _host_side() -> tuple[bool, list[str], list[str]]:
    """Whether the host interface is in the host's namespace and up, its IPv4 addresses, and
    the destinations of its routes with a next hop."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=HOST_IF)
        if not found:
            return False, [], []
        up = bool(ipr.get_links(found[0])[0]["flags"] & 1)
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                 for a in ipr.get_addr(index=found[0], family=2)]
        routes = [f"{r.get_attr('RTA_DST')}/{r['dst_len']} via {r.get_attr('RTA_GATEWAY')}"
                  for r in ipr.get_routes(family=2, oif=found[0])
                  if r.get_attr("RTA_GATEWAY")]
    return up, addrs, routes


def test_a_moved_host_interface_goes_home_after_down_and_after_a_crash(
        remote: Remote, tmp_path: Path) -> None:
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=HOST_IF)[0]
        ipr.addr("add", index=index, address=HOST_ADDR, prefixlen=24)
        ipr.route("add", dst=HOST_NET, gateway=HOST_NEXT_HOP, oif=index)
    home = _host_side()
    assert home == (True, [f"{HOST_ADDR}/24"], [f"{HOST_NET} via {HOST_NEXT_HOP}"])
    topo = tmp_path / "attached.yaml"
    topo.write_text(_topology("move", remote))
    for crash in (False, True):
        study = tmp_path / f"study-{crash}"
        generate_study("CT", study, seed=int(crash), objects=2)
        teleradlab("up", str(topo), "--name", LAB, "--no-services", timeout=180)
        assert _host_side()[0] is False  # the interface is the gateway's now
        res = _store(sorted(study.glob("*.dcm")))
        assert res.returncode == 0, res.stdout + res.stderr
        assert len(list(remote.received.iterdir())) == 2 * (1 + int(crash))
        if crash:
            for pid in _lab_pids():
                os.kill(pid, signal.SIGKILL)
            teleradlab("clean", "--lab", LAB)
        else:
            teleradlab("down", LAB)
        assert _host_side() == home, "after clean after a crash" if crash else "after down"
        assert not [n for n in netns_names() if n.startswith(f"tl-{LAB}.")]
