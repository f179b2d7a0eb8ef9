"""``teleradlab capture`` on real labs, read back with tshark (an independent dissector): the
patient's name of the generated study crosses the WAN readable in clear; under DICOM TLS it is
readable only with the TLS secrets the capture embedded (the same file without them shows no
DICOM at all); under IPsec only ESP crosses, and with ESP NULL (integrity only) the DICOM inside
is readable again."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.dicom.data.generate import generate_study

from ..capture import PATIENT
from ..conftest import REPO, teleradlab

NAME = b"TELERAD^SYNTH0"  # the generated study's PatientName (seed 0)


@pytest.fixture
def lab_named(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"tch-{request.node.name.split('_')[1][:5]}"  # tch-clear, tch-tls, ...
    teleradlab("down", name, check=False)
    yield name
    teleradlab("down", name, check=False)


def _capture(lab: str, out: Path, *security: str) -> tuple[Path, list[str], str]:
    """Build ``lab`` with ``security``, capture a small run on the WAN router; the file, the
    tshark options the command printed, and its output."""
    teleradlab("up", "ipv4", "--name", lab, "--no-check", *security)
    res = teleradlab("capture", "--lab", lab, "--run", "--objects", "2", "--out", str(out),
                     timeout=300)
    pcap = out / f"{lab}-wan.pcapng"
    assert pcap.is_file(), res.stdout
    line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("or: tshark"))
    argv = shlex.split(line.split("or:", 1)[1])
    options = argv[3:argv.index("-Y")]
    return pcap, options, res.stdout


def without_secrets(data: bytes) -> bytes:
    """The pcapng file ``data`` without its Decryption Secrets Blocks (block type 0x0A; every
    block is type, total length, body, total length: pcapng draft section 3.1). Written here,
    as Debian's editcap 4.0 refuses --discard-all-secrets on these files."""
    order = "little" if data[8:12] == b"\x4d\x3c\x2b\x1a" else "big"
    out, i, dropped = b"", 0, 0
    while i < len(data):
        kind = int.from_bytes(data[i:i + 4], order)
        length = int.from_bytes(data[i + 4:i + 8], order)
        assert length >= 12 and i + length <= len(data), f"bad block at {i}"
        if kind == 0x0A:
            dropped += 1
        else:
            out += data[i:i + length]
        i += length
    assert dropped == 1, dropped
    return out


def tshark(pcap: Path, options: list[str], *args: str) -> str:
    return subprocess.run(["tshark", "-r", str(pcap), *options, *args], capture_output=True,
                          text=True, check=True, timeout=120).stdout


def dicom_view(pcap: Path, options: list[str], where: str = "") -> tuple[list[str], str]:
    """The DICOM PDU types tshark dissects (in the frames ``where`` selects), and its detailed
    view of them."""
    display = f"dicom && {where}" if where else "dicom"
    types = tshark(pcap, options, "-Y", display, "-T", "fields", "-e", "dicom.pdu.type").split()
    return types, tshark(pcap, options, "-Y", display, "-V")


def protocols(pcap: Path, options: list[str]) -> set[str]:
    """Every protocol stack tshark sees, one per frame (frame.protocols)."""
    return set(tshark(pcap, options, "-T", "fields", "-e", "frame.protocols").split())


def test_clear_lab_shows_the_patient_name(lab_named: str, tmp_path: Path) -> None:
    pcap, options, _ = _capture(lab_named, tmp_path / "cap")
    types, detail = dicom_view(pcap, options)
    assert "0x04" in types  # P-DATA-TF (PS3.8 9.3.5)
    assert NAME.decode() in detail


def test_tls_capture_opens_decrypted_only_with_its_secrets(lab_named: str,
                                                          tmp_path: Path) -> None:
    pcap, options, stdout = _capture(lab_named, tmp_path / "cap", "--security", "tls")
    assert "TLS secrets: embedded" in stdout
    assert PATIENT not in pcap.read_bytes()  # encrypted on the wire
    types, detail = dicom_view(pcap, options)
    assert "0x01" in types and "0x04" in types, types  # A-ASSOCIATE-RQ and P-DATA, decrypted
    assert NAME.decode() in detail
    bare = tmp_path / "without-secrets.pcapng"
    bare.write_bytes(without_secrets(pcap.read_bytes()))
    assert len(tshark(bare, [], "-T", "fields", "-e", "frame.number").split()) == len(
        tshark(pcap, [], "-T", "fields", "-e", "frame.number").split())  # every packet kept
    types, detail = dicom_view(bare, options)
    assert types == [] and NAME.decode() not in detail
    assert any("tls" in p for p in protocols(bare, options))  # ... but TLS records were there
    wire = pcap.with_name(f"{pcap.stem}-wire.pcapng")  # the copy the capture kept: the same
    assert dicom_view(wire, options)[0] == [] and wire.read_bytes() != pcap.read_bytes()


def test_ipsec_lab_shows_only_esp_on_the_wan(lab_named: str, tmp_path: Path) -> None:
    pcap, options, stdout = _capture(lab_named, tmp_path / "cap", "--security", "ipsec")
    assert "ESP runs in userspace here" in stdout and "esp=null-sha256" in stdout
    stacks = protocols(pcap, options)
    # IKE may rekey and ARP may ask; every IP packet else is ESP
    data = {p for p in stacks if "isakmp" not in p and ":arp" not in p}
    assert data and all(p.endswith(":esp") for p in data), stacks
    assert PATIENT not in pcap.read_bytes()
    types, _ = dicom_view(pcap, options)
    assert types == []


def test_esp_null_shows_dicom_inside_esp(lab_named: str, tmp_path: Path) -> None:
    pcap, options, stdout = _capture(lab_named, tmp_path / "cap", "--security",
                                     "ipsec,esp=null-sha256")
    assert "ESP uses the NULL cipher" in stdout
    stacks = protocols(pcap, [])
    assert all(":esp" in p or "isakmp" in p or ":arp" in p for p in stacks), stacks
    types, detail = dicom_view(pcap, options)
    assert "0x04" in types and NAME.decode() in detail


def test_named_interfaces_for_some_seconds_show_both_sides_of_the_tunnel(
        lab_named: str, tmp_path: Path) -> None:
    """gw-a's tunnel device carries the DICOM in clear, its WAN interface only ESP: one file,
    two interfaces, captured for --seconds while a store runs in another process."""
    teleradlab("up", "ipv4", "--name", lab_named, "--no-check", "--security", "ipsec")
    out = tmp_path / "cap"
    proc = subprocess.Popen([sys.executable, "-m", "lab", "capture", "--lab", lab_named,
                             "--node", "gw-a:ipsec0,wan", "--seconds", "6", "--out", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "capturing on gw-a:ipsec0,wan" in proc.stderr.readline()
        study = generate_study("CT", tmp_path / "ct", objects=2)
        teleradlab("exec", "--lab", lab_named, "modality", "--", sys.executable, "-m",
                   "lab.dicom.scu", "store", "--host=198.18.2.10", "--port=11112",
                   *map(str, study.files), timeout=120)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "gw-a:" in stdout
    pcap = out / f"{lab_named}-gw-a.pcapng"
    options = ["-d", "tcp.port==11112,dicom"]
    inside = dicom_view(pcap, options, 'frame.interface_name == "ipsec0"')
    assert "0x04" in inside[0] and NAME.decode() in inside[1]
    wan = protocols(pcap, ["-Y", 'frame.interface_name == "wan" && ip'])
    assert wan and all(":esp" in p or "isakmp" in p for p in wan), wan
