"""Turn off the offloads that distort WAN emulation, on interfaces of the node this runs in:
``python -m lab.wan.offloads IFNAME...`` (what ``ethtool -K IF tso off gso off gro off tx off``
does, through the SIOCETHTOOL ioctl, so that no ethtool binary is needed).

Why: with TSO/GSO a gateway hands the WAN 64 KiB super-packets, which a shaper, a loss model or a
delay line would treat as one packet (one loss = 45 segments lost); GRO merges packets on receive
for the same effect; with TX checksum offload a packet crosses a veth with its checksum unfilled,
which a packet socket would forward as is. Off, every packet on the WAN is an MTU-sized,
checksummed IP packet, as on a real line. Measured: with the gateways' offloads left on, TCP
through the userspace emulator failed outright (iperf3 could not connect: its segments arrived
with unfilled checksums) while ping worked; with them off, 1217 Mbit/s.
"""

from __future__ import annotations

import array
import fcntl
import socket
import struct
import sys

SIOCETHTOOL = 0x8946
#: ethtool commands (linux/ethtool.h): set TX checksum, TSO, GSO, GRO.
ETHTOOL_STXCSUM = 0x17
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24
ETHTOOL_SGRO = 0x2C
COMMANDS = (ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO, ETHTOOL_STXCSUM)
IFREQ_SIZE = 40


def ifreq(ifname: str, data_address: int) -> bytes:
    """``struct ifreq`` with ``ifr_data`` pointing at an ethtool command buffer."""
    packed = struct.pack("16sP", ifname.encode(), data_address)
    return packed + bytes(IFREQ_SIZE - len(packed))


def offloads_off(ifname: str) -> None:
    """Every command in COMMANDS with value 0 on ``ifname``; OSError if one is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for cmd in COMMANDS:
            buf = array.array("I", [cmd, 0])  # struct ethtool_value {cmd, data}
            fcntl.ioctl(sock, SIOCETHTOOL, ifreq(ifname, buf.buffer_info()[0]))


def main(argv: list[str]) -> int:
    for ifname in argv:
        try:
            offloads_off(ifname)
        except OSError as exc:
            print(f"{ifname}: cannot turn offloads off: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
