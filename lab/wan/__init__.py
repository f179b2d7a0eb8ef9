"""WAN emulation: impairments (delay, jitter, loss, rate, reordering, duplication, corruption)
on the path between the two sites, applied in the WAN router node. What can be asked for (the
profiles, presets and their composition) is data in :mod:`lab.model.wan`; this package applies
it:

- ``netem``: the kernel path (netem, tbf for the rate) as rtnetlink requests, via pyroute2;
- ``userspace``: the emulator used where the kernel has no sch_netem (``wanemu.c``);
- ``offloads``: TSO/GSO/GRO/TX-checksum off on the WAN interfaces (they distort shaping);
- ``apply``: choose the path, apply, reset, record, detect a dead emulator;
- ``measure``: fidelity — RTT by ping, bottleneck rate by iperf3 — beside configured values.

The ``teleradlab wan`` commands live in :mod:`lab.cli.wan`, the WAN benchmark in
:mod:`lab.bench.wan`. Kept free of imports here: ``python -m lab.wan.offloads`` runs in nodes.
"""
