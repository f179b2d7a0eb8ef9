"""WAN emulation: impairments (delay, jitter, loss, rate, reordering, duplication, corruption)
on the path between the two sites, applied in the WAN router node.

- ``profiles``: presets, the profile keys of topology files and ``--wan``, composition, queue limit;
- ``netem``: the kernel path (netem, tbf for the rate) as rtnetlink requests, via pyroute2;
- ``userspace``: the emulator used where the kernel has no sch_netem (``wanemu.c``);
- ``offloads``: TSO/GSO/GRO/TX-checksum off on the WAN interfaces (they distort shaping);
- ``apply``: choose the path, apply, reset, record, detect a dead emulator;
- ``measure``: fidelity — RTT by ping, bottleneck rate by iperf3 — beside configured values.

Kept free of imports here: ``lab.topology`` imports ``lab.model.wan`` alone.
"""
