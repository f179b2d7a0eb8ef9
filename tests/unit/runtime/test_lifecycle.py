"""What programs a lab needs, decided once from its topology and options, and the refusal of
``up`` and ``sweep`` before anything is created when one is missing. No root: the root check,
the backend and the lab record are replaced by stand-ins that fail if they are reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from lab import topology as topology_file
from lab.backends.fake import FakeBackend
from lab.errors import MissingProgramError
from lab.host import programs
from lab.model.topology import Wan
from lab.model.wan import parse_option
from lab.runtime import lifecycle
from lab.study.sweep import runner, spec

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
DSL = parse_option("dsl-20m-30ms")


def load(name: str, mode: str = "none") -> Any:
    return topology_file.load(TOPOLOGIES / f"{name}.yaml", {"security": {"mode": mode}})


def never() -> bool:
    raise AssertionError("the emulator question is asked only for an impaired WAN")


def test_a_plain_lab_needs_the_core_alone() -> None:
    assert set(lifecycle.lab_needs(load("ipv4"), "netns", Wan(), emulator=never)) == {"core"}


def test_ipsec_and_tls_through_a_tunnel_need_strongswan_and_nftables() -> None:
    assert "ipsec" in lifecycle.lab_needs(load("ipv4", "ipsec"), "netns", Wan(), emulator=never)
    assert "ipsec" not in lifecycle.lab_needs(load("ipv4", "tls"), "netns", Wan(),
                                              emulator=never)
    tunnelled = lifecycle.lab_needs(load("mixed-4over6", "tls"), "netns", Wan(), emulator=never)
    assert "tunnel" in tunnelled["ipsec"]


def test_the_docker_backend_needs_docker() -> None:
    assert set(lifecycle.lab_needs(load("ipv6"), "docker", Wan(), emulator=never)) == {
        "core", "docker"}


def test_an_impaired_wan_needs_gcc_only_without_netem_and_a_built_emulator() -> None:
    topology = load("ipv4")
    assert "wan-userspace" in lifecycle.lab_needs(topology, "netns", DSL, emulator=lambda: True)
    assert "wan-userspace" not in lifecycle.lab_needs(topology, "netns", DSL,
                                                      emulator=lambda: False)
    measured = lifecycle.lab_needs(topology, "netns", DSL, measured=True, emulator=lambda: False)
    assert "wan-measure" in measured
    assert "wan-measure" not in lifecycle.lab_needs(topology, "netns", Wan(), measured=True,
                                                    emulator=never)


@pytest.fixture
def nothing_may_be_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root is granted; anything that would build, record or probe fails the test."""

    def reached(*_: Any, **__: Any) -> Any:
        raise AssertionError("reached a step that creates something")

    class Untouchable(FakeBackend):
        needs: ClassVar[dict[str, str]] = {"core": "every lab"}  # as the netns backend

        def up(self, *_: Any, **__: Any) -> None:
            reached()

        def list_owned(self) -> list[str]:
            return reached()  # type: ignore[no-any-return]

    monkeypatch.setattr(lifecycle.backends, "get", lambda *_: Untouchable())
    monkeypatch.setattr(lifecycle.state, "claim", reached)
    monkeypatch.setattr(lifecycle.security_plan, "resolve", reached)
    monkeypatch.setattr(lifecycle, "emulator_to_build", lambda: True)


def path_with(tmp_path: Path, features: list[str], but: str) -> str:
    """A PATH directory holding (dummy) every program of ``features`` except ``but``."""
    for p in programs.programs_for(features):
        if p.name != but:
            (tmp_path / p.name).write_text("#!/bin/sh\n")
            (tmp_path / p.name).chmod(0o755)
    return str(tmp_path)


@pytest.mark.usefixtures("nothing_may_be_created")
def test_up_refuses_an_ipsec_lab_without_nft_before_creating_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path_with(tmp_path, ["core", "ipsec"], but="nft"))
    with pytest.raises(MissingProgramError) as exc:
        lifecycle.up(TOPOLOGIES / "ipv4.yaml", "reg-x", overrides={"security": {"mode": "ipsec"}})
    assert exc.value.programs == ("nft",)
    assert "needed for ipsec: security mode ipsec" in str(exc.value)
    assert exc.value.install == "apt-get install nftables"


@pytest.mark.usefixtures("nothing_may_be_created")
def test_up_refuses_an_impaired_wan_without_gcc_where_the_emulator_is_needed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path_with(tmp_path, ["core", "wan-userspace"], but="gcc"))
    with pytest.raises(MissingProgramError, match=r"gcc \(Debian package gcc\) is missing; "
                       "needed for wan-userspace: WAN profile dsl-20m-30ms"):
        lifecycle.up(TOPOLOGIES / "ipv4.yaml", "reg-x", wan=DSL)


@pytest.mark.usefixtures("nothing_may_be_created")
def test_sweep_refuses_before_its_output_folder_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.lifecycle, "require_root", lambda: None)
    monkeypatch.setenv("PATH", path_with(tmp_path, ["core", "ipsec", "wan-measure",
                                                    "wan-userspace"], but="nft"))
    quick = spec.load(spec.resolve_path("quick"))
    needs = runner.sweep_needs(quick, "netns")
    assert {"core", "ipsec", "wan-measure", "wan-userspace"} <= set(needs)
    out = tmp_path / "out"
    with pytest.raises(MissingProgramError, match="nftables"):
        runner.run_sweep(quick, out)
    assert not out.exists()
