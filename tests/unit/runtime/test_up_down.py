"""``up``, ``down`` and ``clean`` on the fake backend (lab.backends.fake), without root: the order
of the steps, the security plan kept in the lab's record, the rollback of a failed ``up``, and
``clean`` finding what an orchestrator killed half-way left behind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from lab.backends.fake import FakeBackend
from lab.errors import LabError, LabExistsError
from lab.model.names import LabPaths
from lab.model.plan import EspPath
from lab.runtime import cleanup, lifecycle, state
from lab.security.plan import FixedMachine, resolve
from lab.topology import load, shipped_dir

IPV6 = shipped_dir() / "ipv6.yaml"
TLS = {"security": {"mode": "tls", "tls": {"profile": "extended"}}}


def build(tmp_path: Path, backend: FakeBackend, name: str = "u1",
          **options: object) -> lifecycle.Built:
    return lifecycle.build(IPV6, name, backend=backend, root=tmp_path / "run",
                           data_root=tmp_path / "data", machine=FixedMachine(), **options)


def alive(backend: FakeBackend) -> list[int]:
    return [s.proc.pid for s in backend.spawned if s.proc.poll() is None]


def test_up_builds_then_checks_then_starts_services_and_records_the_plan(
        tmp_path: Path) -> None:
    backend = FakeBackend()
    built = build(tmp_path, backend)
    lab = built.lab
    try:
        kinds = [c[0] for c in backend.calls]
        assert kinds[0] == "up" and set(kinds[1:]) == {"spawn"}
        started = {c[2]: c[3:] for c in backend.calls if c[0] == "spawn"}
        assert set(started) == {"pacs", "modality", "workstation"}
        assert any("lab.dicom.pacs" in a for a in started["pacs"])
        assert len(alive(backend)) == 3
        # the pings of the reachability check: every pair the routing says reaches the other
        assert built.probes and all(r.ok for r in built.probes)
        record, topology = state.read("u1", tmp_path / "run")
        assert record.plan == lab.plan and record.backend == "fake"
        assert topology.name == "ipv6"
        again = lifecycle.attach("u1", tmp_path / "run", tmp_path / "data", backend)
        assert again.plan == lab.plan and again.paths == lab.paths
    finally:
        lifecycle.down("u1", tmp_path / "run", backend, tmp_path / "data")
    assert alive(backend) == [] and backend.labs == {}
    assert not LabPaths("u1", tmp_path / "run", tmp_path / "data").state_dir.exists()


def test_the_plan_is_resolved_once_against_the_machine_and_read_back_typed(
        tmp_path: Path) -> None:
    backend = FakeBackend()
    lab = build(tmp_path, backend, "u2", overrides=TLS).lab
    try:
        assert lab.plan.tls is not None and lab.plan.tls.port == 2762 and lab.plan.ipsec is None
        assert not lab.plan.tls.rsa  # no pinned RSA suite: ECDSA certificates do
        for call in (c for c in backend.calls if c[0] == "spawn"):
            assert "--tls-profile=extended" in call and "--port=2762" in call
        record, _ = state.read("u2", tmp_path / "run")
        assert record.plan == lab.plan
    finally:
        lifecycle.down("u2", tmp_path / "run", backend, tmp_path / "data")


def test_a_profile_the_machine_cannot_do_stops_up_before_anything_is_made(
        tmp_path: Path) -> None:
    backend = FakeBackend()
    with pytest.raises(LabError, match="'extended' cannot be used here"):
        lifecycle.build(IPV6, "u3", backend=backend, root=tmp_path / "run",
                        data_root=tmp_path / "data", overrides=TLS,
                        machine=FixedMachine(tls=("bcp195-rfc8996",)))
    assert backend.calls == []
    assert lifecycle.running(tmp_path / "run", tmp_path / "data") == []


def test_ipsec_is_planned_with_the_machine_s_esp_path() -> None:
    topology = load(IPV6, {"security": {"mode": "ipsec"}})
    ipsec = resolve(topology, FixedMachine(esp=EspPath.KERNEL)).ipsec
    assert ipsec is not None and ipsec.esp_path is EspPath.KERNEL
    assert (ipsec.initiator.node, ipsec.responder.node) == ("gw-a", "gw-b")
    with pytest.raises(LabError, match=r"security.ipsec.ike: the installed strongSwan cannot do "
                       "aes256, modp2048"):
        resolve(topology, FixedMachine(algorithms={"integrity": ["HMAC_SHA2_256_128"]}))


@pytest.mark.parametrize("where", ["pacs", "wan"])
def test_a_failed_up_leaves_nothing(tmp_path: Path, where: str) -> None:
    backend = FakeBackend(fail_up_at=where)
    with pytest.raises(LabError, match=f"creating node {where} failed"):
        build(tmp_path, backend, "u4")
    assert backend.labs == {} and alive(backend) == []
    assert lifecycle.running(tmp_path / "run", tmp_path / "data") == []


def test_a_service_that_dies_fails_up_with_its_log_and_everything_is_stopped(
        tmp_path: Path) -> None:
    def stand_in(argv: Sequence[str]) -> list[str]:
        # the PACS exits at once; the receivers run
        return ["false"] if "--ae=PACS" in argv else ["sleep", "600"]

    backend = FakeBackend(stand_in=stand_in)
    with pytest.raises(LabError, match=r"pacs on pacs exited \(port 11112\); its log"):
        build(tmp_path, backend, "u5")
    assert backend.labs == {} and alive(backend) == []
    assert lifecycle.running(tmp_path / "run", tmp_path / "data") == []


def test_a_name_in_use_is_refused_and_the_running_lab_kept(tmp_path: Path) -> None:
    backend = FakeBackend()
    build(tmp_path, backend, "u6", start_services=False)
    try:
        with pytest.raises(LabExistsError):
            build(tmp_path, backend, "u6", start_services=False)
        assert backend.list_owned() == ["u6"]
        assert state.read("u6", tmp_path / "run")[0].pid > 0
    finally:
        lifecycle.down("u6", tmp_path / "run", backend, tmp_path / "data")


def test_clean_after_a_crash_finds_everything_by_name(tmp_path: Path) -> None:
    """The orchestrator is gone (its handles with it): the record and what the backend holds
    are all that is left, and ``clean`` removes both; a second ``clean`` finds nothing."""
    backend = FakeBackend()
    build(tmp_path, backend, "u7")
    build(tmp_path, backend, "u8", start_services=False)
    pids = alive(backend)
    assert len(pids) == 3
    removed = cleanup.clean(tmp_path / "run", [backend], tmp_path / "data")
    assert any("u7: process" in line for line in removed)
    assert "u7: record of lab u7" in removed and "u8: record of lab u8" in removed
    assert backend.labs == {} and alive(backend) == []
    assert lifecycle.running(tmp_path / "run", tmp_path / "data") == []
    assert cleanup.clean(tmp_path / "run", [backend], tmp_path / "data") == []


def test_clean_of_one_lab_leaves_the_others(tmp_path: Path) -> None:
    """``clean --lab NAME``: that lab's processes, backend state and record go, another's stay."""
    backend = FakeBackend()
    build(tmp_path, backend, "u9")
    build(tmp_path, backend, "u10", start_services=False)
    removed = cleanup.clean(tmp_path / "run", [backend], tmp_path / "data", only="u9")
    assert "u9: record of lab u9" in removed and not any(r.startswith("u10") for r in removed)
    assert list(backend.labs) == ["u10"]
    assert lifecycle.running(tmp_path / "run", tmp_path / "data") == ["u10"]
    assert cleanup.clean(tmp_path / "run", [backend], tmp_path / "data", only="u9") == []
    cleanup.clean(tmp_path / "run", [backend], tmp_path / "data", only="u10")
    assert lifecycle.running(tmp_path / "run", tmp_path / "data") == []
