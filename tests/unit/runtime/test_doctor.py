"""The pure parts of ``teleradlab doctor``: the JSON document, the combined apt command and the
text shown for missing items. No root, no commands run."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from lab.host import programs
from lab.model.names import check_lab_name, split_netns_name
from lab.runtime.doctor import (
    Check,
    Report,
    apt_command,
    as_document,
    cannot_build,
    missing_text,
    print_report,
    probe_netns_name,
    program_check,
    program_checks,
)

PRESENT = Check(
    "iproute2", True, "iproute2-6.1.0", "no lab", "apt-get install iproute2", ("iproute2",)
)
NO_DCMTK = Check(
    "dcmtk",
    False,
    "storescu: program not found",
    "no DCMTK peer",
    "apt-get install dcmtk",
    ("dcmtk",),
)
NO_NSENTER = Check(
    "nsenter", False, "not found", "no exec", "apt-get install util-linux", ("util-linux",)
)
NO_UNSHARE = Check(
    "unshare", False, "not found", "no mount ns", "apt-get install util-linux", ("util-linux",)
)
NO_NETEM = Check(
    "sch_netem",
    False,
    "Error: Specified qdisc kind is unknown.",
    "WAN delay uses the userspace emulator",
    "modprobe sch_netem",
)
UNCHECKED_ESP = Check(
    "kernel-esp4", None, "not checked (needs root)", "IPsec via libipsec", "modprobe esp4"
)
NO_DOCKER = Check(
    "docker",
    False,
    "engine not answering",
    "no docker backend",
    "apt-get install docker.io, then start dockerd",
    ("docker.io",),
)


def render(report: Report) -> str:
    console = Console(record=True, width=240, color_system=None)
    print_report(report, console)
    return console.export_text()


def test_apt_command_lists_packages_of_missing_checks_in_order_without_duplicates() -> None:
    checks = [PRESENT, NO_NSENTER, NO_DCMTK, NO_UNSHARE, NO_NETEM, UNCHECKED_ESP]
    assert apt_command(checks) == "apt-get install util-linux dcmtk"


def test_apt_command_is_none_when_nothing_apt_can_install_is_missing() -> None:
    assert apt_command([PRESENT]) is None
    assert apt_command([PRESENT, NO_NETEM, UNCHECKED_ESP]) is None
    assert apt_command([]) is None


def test_missing_text_says_what_it_means_then_how_to_install() -> None:
    assert missing_text(NO_DCMTK) == "no DCMTK peer\ninstall: apt-get install dcmtk"


def test_document_is_json_and_lists_missing_and_unchecked() -> None:
    report = Report((PRESENT, NO_DCMTK, NO_NETEM, UNCHECKED_ESP))
    doc = json.loads(json.dumps(as_document(report)))
    assert [c["name"] for c in doc["checks"]] == ["iproute2", "dcmtk", "sch_netem", "kernel-esp4"]
    assert doc["checks"][0] == {
        "name": "iproute2",
        "ok": True,
        "detail": "iproute2-6.1.0",
        "meaning": "no lab",
        "install": "apt-get install iproute2",
        "packages": ["iproute2"],
    }
    assert doc["checks"][3]["ok"] is None
    assert doc["missing"] == ["dcmtk", "sch_netem"]
    assert doc["unchecked"] == ["kernel-esp4"]
    assert doc["apt_install"] == "apt-get install dcmtk"


def test_document_of_a_complete_machine_has_nothing_to_install() -> None:
    doc = as_document(Report((PRESENT,)))
    assert doc["missing"] == [] and doc["unchecked"] == [] and doc["apt_install"] is None


def test_table_marks_each_check_and_explains_only_what_is_missing() -> None:
    text = render(Report((PRESENT, NO_NETEM, NO_DOCKER, UNCHECKED_ESP)))
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "✓" in lines["iproute2"] and "apt-get install iproute2" not in text
    assert (
        "✗" in lines["sch_netem"] and "WAN delay uses the userspace emulator" in lines["sch_netem"]
    )
    assert "?" in lines["kernel-esp4"] and "not checked (needs root)" in lines["kernel-esp4"]
    assert "install: modprobe sch_netem" in text
    assert text.rstrip().endswith("to install every missing package: apt-get install docker.io")


def test_table_closing_line_when_nothing_or_nothing_apt_can_fix_is_missing() -> None:
    assert render(Report((PRESENT,))).rstrip().endswith("nothing is missing")
    assert render(Report((PRESENT, NO_NETEM))).rstrip().endswith("nothing to install with apt")


def test_detail_with_brackets_is_shown_verbatim_not_as_markup() -> None:
    odd = Check(
        "tshark", False, "error [bold]x[/bold] [", "m", "apt-get install tshark", ("tshark",)
    )
    assert "error [bold]x[/bold] [" in render(Report((odd,)))


def test_probe_namespace_is_named_like_a_lab_node_so_clean_finds_it() -> None:
    name = probe_netns_name(4194304)  # the largest pid Linux hands out
    assert name == "tl-doctor4194304.probe"
    assert split_netns_name(name) == ("doctor4194304", "probe")
    assert check_lab_name("doctor4194304") == "doctor4194304"


def test_a_missing_registry_program_names_its_features_and_install_line(tmp_path: Path) -> None:
    check = program_check(programs.BY_NAME["nft"], path=str(tmp_path))
    assert check.ok is False and check.detail == "not found on PATH"
    assert check.install == "apt-get install nftables" and check.packages == ("nftables",)
    assert "ipsec: security mode ipsec" in check.meaning
    assert apt_command([PRESENT, check]) == "apt-get install nftables"


def test_every_registry_program_is_a_check_and_core_ones_are_essential(tmp_path: Path) -> None:
    checks = program_checks(path=str(tmp_path))
    assert [c.name for c in checks] == [p.name for p in programs.PROGRAMS]
    root = Check("root", True, "euid 0", "", "")
    nft = next(c for c in checks if c.name == "nft")
    ip = next(c for c in checks if c.name == "ip")
    assert not cannot_build(Report((root, nft)))
    assert cannot_build(Report((root, ip)))


def test_a_program_without_the_packages_it_needs_fails_its_check() -> None:
    """gcc without libc6-dev builds nothing: a program found on PATH still fails its check when
    a further package the lab needs of it is not installed (asked of dpkg, which Debian has)."""
    present = programs.Program("sh", "dash", ("core",), "a shell",
                               also=("teleradlab-no-such-package",))
    check = program_check(present)
    assert not check.ok
    assert "teleradlab-no-such-package" in check.detail
    assert "apt-get install dash teleradlab-no-such-package" in check.install
    assert program_check(programs.Program("sh", "dash", ("core",), "a shell")).ok
