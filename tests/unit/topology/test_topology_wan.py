"""The WAN profile keys of topology files: every shipped topology accepts every preset, links
compose into the two directions, and bad values are refused naming file, field and value."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from conftest import side_effects

from lab.errors import TopologyError
from lab.model.topology import Wan, WanProfile
from lab.model.wan import PRESETS
from lab.topology import parse, shipped, shipped_dir

SOURCE = "tests/wan-example.yaml"


def _doc(name: str = "ipv4") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((shipped_dir() / f"{name}.yaml").read_text())
    return doc


def _parse(doc: dict[str, Any]) -> Wan:
    return parse(yaml.safe_dump(doc), SOURCE).wan


@pytest.mark.parametrize("topology", shipped())
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_shipped_topology_accepts_every_preset(topology: str, preset: str) -> None:
    doc = _doc(topology)
    doc["wan"]["profile"] = preset
    wan = _parse(doc)
    assert wan == Wan(preset, PRESETS[preset][1], PRESETS[preset][1])
    # and as a per-link profile, which composes into the same path delay twice
    doc = _doc(topology)
    for link in doc["wan"].setdefault("links", {"a": {}, "b": {}}).values():
        link["profile"] = preset
    wan = _parse(doc)
    assert wan.forward.delay_ms == 2 * PRESETS[preset][1].delay_ms
    assert wan.forward.rate_mbit == PRESETS[preset][1].rate_mbit


def test_shipped_topologies_are_unimpaired() -> None:
    for name in shipped():
        assert _parse(_doc(name)) == Wan()


def test_links_compose_per_direction() -> None:
    doc = _doc()
    doc["wan"]["profile"] = {"delay": "10ms"}
    doc["wan"]["links"]["a"]["profile"] = {"up": {"delay": "1ms", "loss": "1%"},
                                           "down": {"delay": "2ms"}}
    doc["wan"]["links"]["b"]["profile"] = {"up": {"rate": "5mbit"}, "down": {"delay": "4ms"}}
    wan = _parse(doc)
    assert wan.name == "custom"
    # a -> b: whole path, a's uplink, b's downlink
    assert wan.forward == WanProfile(delay_ms=15, loss_pct=1)
    # b -> a: whole path, b's uplink, a's downlink
    assert wan.reverse == WanProfile(delay_ms=12, rate_mbit=5)


@pytest.mark.parametrize(("where", "value", "path", "fragment"), [
    ("wan", {"delay": "ten"}, "wan.profile.delay", "'ten'"),
    ("wan", "dialup", "wan.profile", "'dialup'"),
    ("a", {"up": {"loss": "200%"}}, "wan.links.a.profile.up.loss", "'200%'"),
    ("b", {"jitterr": "1ms"}, "wan.links.b.profile.jitterr", "unknown key"),
])
def test_bad_profiles_name_file_field_and_value(where: str, value: Any, path: str,
                                                fragment: str) -> None:
    doc = _doc()
    if where == "wan":
        doc["wan"]["profile"] = value
    else:
        doc["wan"]["links"][where]["profile"] = value
    with side_effects() as seen, pytest.raises(TopologyError) as info:
        _parse(doc)
    assert seen == [], "a refused file creates nothing"
    assert info.value.source == SOURCE
    assert SOURCE in str(info.value)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:") and fragment in problem


def test_profile_of_wrong_type_is_refused() -> None:
    doc = _doc()
    doc["wan"]["profile"] = ["delay", "10ms"]
    with pytest.raises(TopologyError) as info:
        _parse(doc)
    assert any(p.startswith("wan.profile") for p in info.value.problems)
