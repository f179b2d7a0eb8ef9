"""What this machine offers teleradlab, and how to install what it lacks (``teleradlab doctor``).

Every program of the registry (:mod:`lab.host.programs`) is looked for where the lab runs it
from, and a missing one names the features it disables and its ``apt-get install`` line; the
docker engine is asked for its version; kernel features are checked by really using them,
because a module list or a kernel config file can lie (modules may be built in, absent, or not
loadable in a container). Those probes run only inside a throwaway network namespace named like
a lab node (``tl-doctor<pid>.probe``), so the host is never touched and ``teleradlab clean``
removes the namespace should the doctor be killed half-way."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.errors import CommandError, LabError
from lab.host import programs, shell
from lab.model import proposals
from lab.model.names import netns_name
from lab.security.ipsec import charon
from lab.security.ipsec.charon import IPSEC_DIRS

TIMEOUT = 5.0
NEEDS_ROOT = "not checked (needs root)"
IPSEC_PLUGINS = ("kernel-libipsec", "kernel-netlink", "kdf")
TUN_DEVICE = Path("/dev/net/tun")
# An ESP SA between two RFC 2544 benchmarking addresses (IPv6: RFC 3849); keys are dummies.
_ENC_KEY = "0x0102030405060708090a0b0c0d0e0f10"
_AUTH_KEY = "0x" + "0102030405060708" * 4


@dataclass(frozen=True)
class Check:
    """One thing the lab may use: is it here, what the lab does without it, how to get it.

    ``ok`` is None when the check could not be made (kernel probes need root). ``install`` is
    the exact command (or step) that provides it; ``packages`` are the Debian/Ubuntu apt packages
    within it, so that one ``apt-get install`` line can cover everything missing."""

    name: str
    ok: bool | None
    detail: str
    meaning: str
    install: str
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """Every check, in the order they are shown."""

    checks: tuple[Check, ...]

    @property
    def missing(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is False)

    @property
    def unchecked(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is None)


# ---- pure parts: document, combined apt command, text for missing items ----


def cannot_build(report: Report) -> bool:
    """No lab can be built at all: no root, or a program of the registry's ``core`` missing."""
    essential = {"root", *(p.name for p in programs.programs_for(["core"]))}
    return any(c.name in essential and c.ok is False for c in report.checks)


def apt_command(checks: Sequence[Check]) -> str | None:
    """The single ``apt-get install`` line covering every missing check (None if nothing to do).

    Packages keep the order of their checks; duplicates are dropped."""
    wanted = [p for c in checks if c.ok is False for p in c.packages]
    packages = list(dict.fromkeys(wanted))
    return f"apt-get install {' '.join(packages)}" if packages else None


def missing_text(check: Check) -> str:
    """What a missing (or unchecked) item means for the lab, then how to provide it."""
    return f"{check.meaning}\ninstall: {check.install}"


def as_document(report: Report) -> dict[str, Any]:
    """A JSON-serialisable document of the report (``teleradlab doctor --json``)."""
    return {
        "checks": [asdict(c) | {"packages": list(c.packages)} for c in report.checks],
        "missing": [c.name for c in report.missing],
        "unchecked": [c.name for c in report.unchecked],
        "apt_install": apt_command(report.checks),
    }


def print_report(report: Report, console: Console) -> None:
    """A table of every check; missing ones say what they mean and how to install them."""
    table = Table(title="teleradlab doctor", title_justify="left")
    for col in ("check", "status", "detail", "if missing: meaning / install"):
        table.add_column(col)
    for check in report.checks:
        if check.ok:
            status, extra = Text("✓", style="green"), Text("")
        elif check.ok is None:
            status, extra = Text("?", style="yellow"), Text(missing_text(check), style="dim")
        else:
            status, extra = Text("✗", style="red"), Text(missing_text(check))
        table.add_row(check.name, status, Text(check.detail), extra, end_section=True)
    console.print(table)
    command = apt_command(report.checks)
    missing = "nothing is missing" if not report.missing else "nothing to install with apt"
    console.print(Text(f"to install every missing package: {command}" if command else missing))


# ---- running the checks ----


def run_checks() -> Report:
    """Check everything, host programs first, then the kernel (in a throwaway namespace)."""
    is_root = os.geteuid() == 0
    checks = [
        Check(
            "root",
            is_root,
            "euid 0" if is_root else f"euid {os.geteuid()}",
            "labs cannot be built: network and mount namespaces need root",
            "run teleradlab as root (sudo teleradlab ...)",
        ),
        *program_checks(),
        *(_kernel_checks() if is_root else _kernel_unchecked(NEEDS_ROOT)),
        _tun_check(),
        _docker_check(),
        _strongswan_plugins_check(),
        _ipsec_algorithms_check(is_root),
    ]
    checks.append(wan_path_check(checks))
    return Report(tuple(checks))


def wan_path_check(checks: Sequence[Check]) -> Check:
    """The path WAN impairments take here, decided as lab.wan.apply decides it per lab: netem
    where the kernel has it, else the userspace emulator, which is built with gcc."""
    netem = next((c.ok for c in checks if c.name == "sch_netem"), None)
    gcc = programs.locate(programs.BY_NAME["gcc"])
    if netem:
        ok: bool | None = True
        detail = "netem (kernel qdiscs; tbf above netem for the rate)"
    else:
        ok = gcc is not None if netem is False else (True if gcc else None)
        known = "no sch_netem" if netem is False else "netem not checked"
        detail = (f"userspace emulator ({known}; built with {gcc})" if gcc
                  else f"userspace emulator ({known}), but no gcc to build it")
    return Check("wan-path", ok, detail,
                 "WAN impairments cannot be applied: no sch_netem, and no gcc to build the "
                 "userspace emulator", programs.install_command([programs.BY_NAME["gcc"]]),
                 programs.BY_NAME["gcc"].packages)


def program_check(program: programs.Program, path: str | None = None) -> Check:
    """Is ``program`` where the lab runs it from, with the further packages the lab needs of it
    (gcc's C headers, python3's venv, charon's plugins); if not, which features cannot work."""
    found = programs.locate(program, path)
    where = " or ".join(program.places) if program.places else "PATH"
    features = "; ".join(f"{f}: {programs.FEATURES[f].what}" for f in program.features)
    detail = found or f"not found on {where}"
    absent = uninstalled(program.also) if found else []
    if absent:
        detail = f"{found}, but without the package(s) {', '.join(absent)}"
    return Check(program.name, found is not None and not absent, detail,
                 f"{program.purpose}. Cannot work without it: {features}",
                 programs.install_command([program]), program.packages)


def uninstalled(packages: Sequence[str]) -> list[str]:
    """Those of the Debian ``packages`` that dpkg does not have installed ([] where there is no
    dpkg to ask: the check is then the program's presence alone)."""
    if not packages or shutil.which("dpkg-query") is None:
        return []
    result = shell.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *packages],
                       check=False, timeout=TIMEOUT)
    installed = {line.split()[0] for line in result.stdout.splitlines()
                 if line.endswith("install ok installed")}
    return [p for p in packages if p not in installed]


def program_checks(path: str | None = None) -> list[Check]:
    """One check per program of the registry, in its order."""
    return [program_check(p, path) for p in programs.PROGRAMS]


def _first_line(text: str) -> str:
    return next((line.strip(" $") for line in text.splitlines() if line.strip(" $")), "")


def _run(argv: Sequence[str], timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Run ``argv``: (exit status 0?, first line of its output, or why it failed or did not run)."""
    try:
        result = shell.run(argv, check=False, timeout=timeout)
    except CommandError as exc:  # not found, or timed out
        if exc.returncode is None:
            return False, f"no answer within {timeout:g} s"
        return False, _first_line(exc.stderr) or str(exc)
    primary, secondary = (result.stdout, result.stderr)
    if not result.ok:
        primary, secondary = secondary, primary
    return result.ok, _first_line(primary) or _first_line(secondary)


# name -> (what the lab does without it, how to get it)
_KERNEL: dict[str, tuple[str, str]] = {
    "kernel-esp4": (
        "IPsec will run through strongSwan kernel-libipsec (userspace ESP over TUN, "
        "tunnel mode only)",
        "modprobe esp4 (or a kernel with CONFIG_INET_ESP)",
    ),
    "kernel-esp6": (
        "IPv6 IPsec will run through strongSwan kernel-libipsec (userspace ESP over TUN, "
        "tunnel mode only)",
        "modprobe esp6 (or a kernel with CONFIG_INET6_ESP)",
    ),
    "sch_netem": (
        "WAN delay/jitter/loss use the lab's userspace emulator",
        "modprobe sch_netem (Ubuntu: apt-get install linux-modules-extra-$(uname -r))",
    ),
    "sch_tbf": ("rate limiting cannot use tbf (htb or userspace instead)", "modprobe sch_tbf"),
    "sch_htb": ("rate limiting cannot use htb (tbf or userspace instead)", "modprobe sch_htb"),
}


def probe_netns_name(pid: int | None = None) -> str:
    """``tl-doctor<pid>.probe``: named like a lab node, so ``teleradlab clean`` finds strays."""
    return netns_name(f"doctor{os.getpid() if pid is None else pid}", "probe")


def _kernel_checks() -> list[Check]:
    """Try ESP and the qdiscs inside a throwaway namespace, deleted whatever happens.

    Only exit statuses are used (stderr becomes the detail); ``ip`` output is never parsed."""
    ns = probe_netns_name()
    try:
        try:
            shell.run(["ip", "netns", "add", ns], timeout=TIMEOUT)
        except CommandError as exc:
            reason = _first_line(exc.stderr) or str(exc)
            return _kernel_unchecked(f"not checked (cannot create a namespace: {reason})")
        return [
            _esp_probe(ns, "kernel-esp4", "198.18.0.1", "198.18.0.2", "esp4"),
            _esp_probe(ns, "kernel-esp6", "2001:db8::1", "2001:db8::2", "esp6"),
            _qdisc_probe(ns, "netem", ["delay", "1ms"]),
            _qdisc_probe(ns, "tbf", ["rate", "1mbit", "burst", "32kbit", "latency", "400ms"]),
            _qdisc_probe(ns, "htb", ["default", "1"]),
        ]
    finally:
        shell.run(["ip", "netns", "del", ns], check=False, timeout=TIMEOUT)


def _kernel_check(name: str, ok: bool | None, detail: str) -> Check:
    return Check(name, ok, detail, *_KERNEL[name])


def _kernel_unchecked(reason: str) -> list[Check]:
    return [_kernel_check(name, None, reason) for name in _KERNEL]


def _esp_probe(ns: str, name: str, src: str, dst: str, module: str) -> Check:
    """Add one ESP SA (RFC 4303) in ``ns``: the kernel accepts it only if it has ESP."""
    ok, detail = _run(
        ["ip", "-n", ns, "xfrm", "state", "add", "src", src, "dst", dst, "proto", "esp",
         "spi", "0x100", "mode", "tunnel", "enc", "cbc(aes)", _ENC_KEY,
         "auth", "hmac(sha256)", _AUTH_KEY]
    )  # fmt: skip
    return _kernel_check(name, ok, f"{module} available" if ok else detail)


def _qdisc_probe(ns: str, kind: str, args: list[str]) -> Check:
    """Attach a ``kind`` qdisc to lo in ``ns`` (then remove it, so the next probe can attach)."""
    tc = ["ip", "netns", "exec", ns, "tc", "qdisc"]
    ok, detail = _run([*tc, "add", "dev", "lo", "root", kind, *args])
    if ok:
        _run([*tc, "del", "dev", "lo", "root"])
    return _kernel_check(f"sch_{kind}", ok, f"{kind} qdisc available" if ok else detail)


def _tun_check() -> Check:
    """The TUN device kernel-libipsec carries ESP through (a file check, nothing is opened)."""
    ok = TUN_DEVICE.is_char_device()
    return Check(
        "tun",
        ok,
        str(TUN_DEVICE) if ok else f"{TUN_DEVICE} missing",
        "kernel-libipsec cannot make its TUN device: without kernel ESP there is no IPsec",
        "modprobe tun (and mknod /dev/net/tun c 10 200)",
    )


def _docker_check() -> Check:
    """An engine answering the docker client (the programs themselves are registry checks)."""
    ok, detail = False, "docker not on PATH"
    if shutil.which("docker"):
        ok, detail = _run(["docker", "info", "--format", "{{.ServerVersion}}"])
        detail = f"engine {detail}" if ok else detail
    install = programs.install_command(programs.programs_for(["docker"]))
    return Check(
        "docker-engine",
        ok,
        detail,
        "the docker backend is unavailable (the default netns backend does not need it)",
        f"{install}, then start dockerd (systemctl start docker, or scripts/docker-engine "
        "start: no firewall or forwarding changes on the host)",
    )


def _ipsec_algorithms_check(is_root: bool) -> Check:
    """The IKE/ESP algorithms the issue's comparison names that this strongSwan can do, asked
    of a real charon through VICI (get_algorithms) in throwaway namespaces."""
    meaning = "IPsec proposals naming other algorithms are refused before a lab is built"
    install = programs.install_command([programs.BY_NAME["charon"]])
    if not is_root:
        return Check("ipsec-algorithms", None, NEEDS_ROOT, meaning, install)
    try:
        available = charon.algorithms()
    except LabError as exc:
        return Check("ipsec-algorithms", False, _first_line(str(exc)), meaning, install)
    supported = set(proposals.supported_keywords(available))
    have = [k for k in proposals.SHOWN if k in supported]
    lack = [k for k in proposals.SHOWN if k not in supported]
    detail = "supported: " + " ".join(have) + (f"; not here: {' '.join(lack)}" if lack else "")
    return Check("ipsec-algorithms", not lack, detail, meaning, install)


def _strongswan_plugins_check() -> Check:
    """The plugins kernel-libipsec needs (charon and swanctl are registry checks)."""
    plugin_dirs = [d / "plugins" for d in IPSEC_DIRS]
    absent = [
        n
        for n in IPSEC_PLUGINS
        if not any((d / f"libstrongswan-{n}.so").is_file() for d in plugin_dirs)
    ]
    packages = programs.BY_NAME["charon"].also
    return Check(
        "strongswan-plugins",
        not absent,
        f"missing: {', '.join(absent)}" if absent else ", ".join(IPSEC_PLUGINS),
        "without kernel ESP, charon cannot run ESP in userspace (kernel-libipsec)",
        f"apt-get install {' '.join(packages)}",
        packages,
    )
