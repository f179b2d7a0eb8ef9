"""The one registry of programs outside Python that teleradlab and its tests run.

Each entry names the program as the code runs it (argv[0]), the Debian package that provides
it, further packages the lab's use of it needs (strongSwan's plugins, python3's venv), and the
features that need it. Everything that installs, checks or refuses reads this table and nothing
else:

- ``scripts/lib.sh`` installs ``python3 -m lab.host.programs apt-packages [--feature F ...]``;
- ``lab/backends/docker/images.py`` hands each docker image the packages of its role's features
  (build argument ``PACKAGES``), so a changed entry rebuilds the images that install it;
- ``teleradlab doctor`` checks every entry and prints the ``apt-get install`` line;
- ``up``, ``run`` and ``sweep`` refuse, before creating anything, a lab whose features need a
  missing program (:func:`require`);
- ``tests/unit/test_programs.py`` finds every program the code and the tests hand to a
  subprocess and fails when one is not registered here.

DICOM TLS (Python's ssl) and the kernel WAN path (netem through pyroute2) run no outside program,
so they are no features here. This module uses the standard library alone and imports nothing of
the lab but its errors: the install scripts run it with the system's python3, before the lab's
environment exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lab.errors import LabError, MissingProgramError


@dataclass(frozen=True)
class Feature:
    """Something the lab (or its test suite) does that needs outside programs.

    ``default`` features are installed by ``scripts/demo``, ``scripts/test`` and
    ``scripts/bench``; the others only when asked for (the docker engine, git)."""

    name: str
    what: str
    default: bool = True


@dataclass(frozen=True)
class Program:
    """One outside program: found on PATH under ``name`` (or one of ``aliases``), or, when
    ``places`` is given, only at those absolute paths (charon is not on PATH; DCMTK's programs
    are shadowed on PATH by pynetdicom's namesakes in the lab's environment)."""

    name: str
    package: str
    features: tuple[str, ...]
    purpose: str
    also: tuple[str, ...] = ()  # further packages the lab needs with it (plugins)
    aliases: tuple[str, ...] = ()
    places: tuple[str, ...] = ()

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.package, *self.also)


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("core", "building any lab and working inside its nodes, reachability pings, "
            "the doctor's kernel probes"),
    Feature("node", "what every lab node runs inside itself: its setup script, the lab's "
            "Python programs, pings; the docker runtime image installs it (netns nodes run the "
            "host's programs)"),
    Feature("ipsec", "security mode ipsec (and TLS through a tunnel on the mixed topologies): "
            "strongSwan's charon per IKE peer, nftables guards against cleartext"),
    Feature("wan-userspace", "WAN impairments where the kernel has no sch_netem: the userspace "
            "emulator, compiled from lab/wan/wanemu.c"),
    Feature("wan-measure", "the WAN's fidelity measured by 'run' on an impaired WAN "
            "(RTT by ping, rate by iperf3)"),
    Feature("interop-tests", "independent peers the tests and the store benchmark check the lab "
            "against: DCMTK's DICOM programs, GDCM's gdcmanon, openssl on the lab's "
            "certificates and secure files"),
    Feature("capture", "packet captures that prove what crossed the wire (tests, teleradlab "
            "capture and lesson)"),
    Feature("report-render", "the report's figures loaded in a headless browser (test)"),
    Feature("bench", "scripts/bench: listeners found by ss, DCMTK and iperf3 beside the lab"),
    Feature("docker", "the docker backend: the engine and its client, the base image made "
            "with debootstrap", default=False),
    Feature("compose", "the files 'teleradlab compose' writes, brought up by hand",
            default=False),
    Feature("provenance", "the git revision recorded with every result ('unknown' without "
            "git)", default=False),
)}


def _dcmtk(name: str, purpose: str) -> Program:
    places = tuple(f"{d}/{name}" for d in ("/usr/bin", "/usr/local/bin", "/bin"))
    return Program(name, "dcmtk", ("interop-tests", "bench"), purpose, places=places)


_STRONGSWAN_PLUGINS = ("libcharon-extra-plugins", "libstrongswan-standard-plugins",
                       "libstrongswan-extra-plugins")

PROGRAMS: tuple[Program, ...] = (
    Program("python3", "python3", ("core", "node"),
            "the lab's own programs in the nodes (python -m lab.dicom.scu, lab.wan.offloads), "
            "in a venv (scripts/lib.sh; the docker runtime image)", also=("python3-venv",)),
    Program("ip", "iproute2", ("core", "ipsec", "node"),
            "the doctor's probes, the ESP path probe in gateways, docker interface release"),
    Program("tc", "iproute2", ("core",), "the doctor's qdisc probes and the netem probe"),
    Program("ss", "iproute2", ("bench", "interop-tests"), "waiting for a listener in a node"),
    Program("nsenter", "util-linux", ("core", "docker"), "every command run inside a node"),
    Program("unshare", "util-linux", ("core", "ipsec"),
            "a node's own mount and UTS namespaces; throwaway charon and netem probes"),
    Program("mountpoint", "util-linux", ("core",), "a node's setup script"),
    Program("setsid", "util-linux", ("docker",), "scripts/docker-engine starts dockerd"),
    Program("mount", "mount", ("core",), "the private namespace directory, a node's /run, /sys"),
    Program("umount", "mount", ("core",), "a node's setup script"),
    Program("hostname", "hostname", ("core",), "a node's setup script names the node"),
    Program("sh", "dash", ("core", "node"),
            "node setup scripts, kernel forwarding in the WAN router"),
    Program("cat", "coreutils", ("wan-userspace", "node"),
            "the gateways' MAC addresses for the userspace WAN emulator"),
    Program("env", "coreutils", ("core", "node", "ipsec", "bench"),
            "a daemon's environment in a node (STRONGSWAN_CONF, TCP_NODELAY)"),
    Program("sleep", "coreutils", ("core", "node"),
            "a docker node's first process idles; a long-lived process in a node (tests)"),
    Program("touch", "coreutils", ("core", "node"),
            "a node's ready mark; a node's own /run, seen from the tests"),
    Program("test", "coreutils", ("core",), "a node's own /run, seen from the tests"),
    Program("true", "coreutils", ("core",), "exec into a node that does not exist (tests)"),
    Program("timeout", "coreutils", ("capture", "docker"), "bounded captures, engine checks"),
    Program("cut", "coreutils", ("docker",), "docker interface release without its note"),
    Program("awk", "mawk", ("docker", "node"),
            "a docker node's setup script finds its interfaces; their release without its note"),
    Program("ping", "iputils-ping", ("core", "node", "wan-measure"),
            "reachability proved after 'up'; the WAN's RTT"),
    Program("charon", "strongswan-charon", ("ipsec",),
            "the IKE daemon in each IKE peer, configured through VICI", also=_STRONGSWAN_PLUGINS,
            places=("/usr/lib/ipsec/charon", "/usr/libexec/ipsec/charon")),
    Program("swanctl", "strongswan-swanctl", ("ipsec",),
            "inspecting a lab's SAs by hand (teleradlab exec ... swanctl --list-sas)"),
    Program("dpkg-query", "dpkg", ("core",), "tells doctor which packages are installed"),
    Program("nft", "nftables", ("ipsec",), "the guards that drop cleartext for the far site"),
    # libc6-dev: the C library's headers, only a Recommends of gcc, which apt leaves out with
    # --no-install-recommends (a new machine could not build the emulator without it).
    Program("gcc", "gcc", ("wan-userspace",), "compiles the userspace WAN emulator",
            aliases=("cc",), also=("libc6-dev",)),
    Program("iperf3", "iperf3", ("wan-measure", "bench"), "the WAN's bottleneck rate"),
    _dcmtk("storescu", "DCMTK's C-STORE SCU as an independent peer"),
    _dcmtk("storescp", "DCMTK's C-STORE SCP as an independent peer"),
    _dcmtk("echoscu", "DCMTK's C-ECHO SCU as an independent peer"),
    _dcmtk("findscu", "DCMTK's C-FIND SCU as an independent peer"),
    _dcmtk("movescu", "DCMTK's C-MOVE SCU as an independent peer"),
    _dcmtk("dcmqrscp", "DCMTK's Query/Retrieve SCP as an independent peer of the lab's SCU"),
    _dcmtk("dcmsign", "DCMTK's digital signature tool: an independent signer and verifier "
           "(PS3.15 Annex C)"),
    Program("openssl", "openssl", ("interop-tests",),
            "checks the lab's certificates as a TLS or IKE peer would; opens and verifies the "
            "lab's secure DICOM files (openssl cms, PS3.15 Annex D)"),
    Program("gdcmanon", "libgdcm-tools", ("interop-tests",),
            "GDCM's de-identifier: an independent peer of the lab's attribute confidentiality "
            "(PS3.15 E.1.1 de-identify, E.1.2 re-identify)"),
    Program("tshark", "tshark", ("capture",), "captures decoded (ESP, TLS, DICOM PDUs)"),
    Program("dumpcap", "wireshark-common", ("capture",), "what tshark captures with"),
    Program("editcap", "wireshark-common", ("capture",), "embeds TLS secrets in a capture "
            "(teleradlab capture)"),
    Program("tcpdump", "tcpdump", ("capture",), "captures in the docker WAN router (its image "
            "has it; on the host it captures by hand)"),
    Program("chromium", "chromium", ("report-render",), "loads the report's figures",
            aliases=("chromium-browser",)),
    Program("docker", "docker.io", ("docker",), "the engine's client (scripts, tests)"),
    Program("dockerd", "docker.io", ("docker",), "the engine (scripts/docker-engine)"),
    Program("docker-compose", "docker-compose", ("compose",),
            "runs 'teleradlab compose' files (and their test)"),
    Program("debootstrap", "debootstrap", ("docker",), "the base image (scripts/docker-base)"),
    Program("tar", "tar", ("docker",), "the base image's root into 'docker import'"),
    Program("git", "git", ("provenance",), "the revision recorded with results"),
)
BY_NAME: dict[str, Program] = {p.name: p for p in PROGRAMS}


def known_names() -> frozenset[str]:
    """Every name under which a registered program may be run (names and aliases)."""
    return frozenset(n for p in PROGRAMS for n in (p.name, *p.aliases))


def check_features(features: Iterable[str]) -> list[str]:
    """``features`` as a list; LabError naming the unknown ones."""
    wanted = list(features)
    unknown = [f for f in wanted if f not in FEATURES]
    if unknown:
        raise LabError(f"unknown feature(s) {', '.join(unknown)} "
                       f"(known: {', '.join(FEATURES)})")
    return wanted


def programs_for(features: Iterable[str]) -> tuple[Program, ...]:
    """The programs needed by any of ``features``, in registry order."""
    wanted = set(check_features(features))
    return tuple(p for p in PROGRAMS if wanted & set(p.features))


def default_features() -> list[str]:
    return [f.name for f in FEATURES.values() if f.default]


def apt_packages(features: Iterable[str] | None = None) -> list[str]:
    """The Debian packages of ``features`` (the default features when None), without repeats."""
    chosen = default_features() if features is None else features
    return list(dict.fromkeys(pkg for p in programs_for(chosen) for pkg in p.packages))


def install_command(programs: Iterable[Program]) -> str:
    """The one ``apt-get install`` line providing ``programs``."""
    packages = dict.fromkeys(pkg for p in programs for pkg in p.packages)
    return "apt-get install " + " ".join(packages)


def locate(program: Program, path: str | None = None) -> str | None:
    """Where ``program`` is: its first place that is an executable file, else the first of its
    names on ``path`` (default: PATH); None when absent."""
    if program.places:
        return next((p for p in program.places if os.path.isfile(p) and os.access(p, os.X_OK)),
                    None)
    return next((found for n in (program.name, *program.aliases)
                 if (found := shutil.which(n, path=path))), None)


def missing(needs: Mapping[str, str], path: str | None = None) -> list[tuple[Program, list[str]]]:
    """The programs that ``needs`` (feature -> why it is needed) lacks, each with the needed
    features it serves."""
    wanted = check_features(needs)
    return [(p, [f for f in wanted if f in p.features]) for p in programs_for(wanted)
            if locate(p, path) is None]


def require(needs: Mapping[str, str], path: str | None = None) -> None:
    """MissingProgramError naming every missing program, the features (and why they are
    needed) and the exact install command; nothing when all are present."""
    lacking = missing(needs, path)
    if not lacking:
        return
    lines = [f"{p.name} (Debian package {p.package}) is missing; needed for "
             + "; ".join(f"{f}: {needs[f]}" for f in features) for p, features in lacking]
    command = install_command(p for p, _ in lacking)
    raise MissingProgramError([p.name for p, _ in lacking], command,
                              "this lab cannot be built here:\n  " + "\n  ".join(lines)
                              + f"\ninstall: {command}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m lab.host.programs apt-packages [--feature F ...] | features | list``."""
    parser = argparse.ArgumentParser(prog="python3 -m lab.host.programs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    apt = sub.add_parser("apt-packages", help="Debian packages, one a line (default features "
                         "when no --feature is given)")
    apt.add_argument("--feature", action="append", choices=sorted(FEATURES))
    sub.add_parser("features", help="the features: name, installed by default?, what")
    sub.add_parser("list", help="the programs: name, package(s), features")
    args = parser.parse_args(argv)
    if args.command == "apt-packages":
        print("\n".join(apt_packages(args.feature)))
    elif args.command == "features":
        for f in FEATURES.values():
            print(f"{f.name}\t{'default' if f.default else 'optional'}\t{f.what}")
    else:
        for p in PROGRAMS:
            print(f"{p.name}\t{' '.join(p.packages)}\t{','.join(p.features)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
