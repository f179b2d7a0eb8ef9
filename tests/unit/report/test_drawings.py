"""``teleradlab graph``: every shipped topology drawn as SVG (with its text kept as text) and PNG,
showing every node, every address, the security mode and the WAN profile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lab.model.topology import Security, SecurityMode
from lab.report.drawings import draw
from lab.topology import load, resolve_path, shipped

from .test_report import png_size


@pytest.mark.parametrize("name", shipped())
def test_every_shipped_topology_is_drawn(name: str, tmp_path: Path) -> None:
    topology = load(resolve_path(name))
    svg, png = draw(topology, tmp_path, wan="dsl-20m-30ms")
    assert (svg.name, png.name) == (f"{name}.svg", f"{name}.png")
    w, h = png_size(png.read_bytes())
    assert w > 800 and h > 200
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for node in topology.nodes:
        assert f"{node.name} ({node.role.value})" in text
        for addr in node.addresses():
            assert str(addr) in text, (node.name, addr)
    for seg in topology.segments:
        for prefix in seg.prefixes:
            assert str(prefix) in text
    assert "WAN profile: dsl-20m-30ms" in text and "security: none" in text


@pytest.mark.parametrize(("mode", "words"), [
    (SecurityMode.IPSEC, "IPsec ESP tunnel (gateway to gateway)"),
    (SecurityMode.TLS, "DICOM TLS (PS3.15 Annex B), end to end"),
])
def test_security_is_drawn_where_it_acts(mode: SecurityMode, words: str, tmp_path: Path) -> None:
    topology = replace(load(resolve_path("ipv4")), security=Security(mode))
    svg, _ = draw(topology, tmp_path)
    text = svg.read_text()
    assert words in text and f"security: {mode.value}" in text
    assert "WAN profile: unimpaired" in text


def test_the_graph_command_needs_no_root_and_says_where(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "lab", "graph", "dualstack", "--out",
                          str(tmp_path), "--wan", "lossy-4g-20m-50ms-1pct"],
                         capture_output=True, text=True, check=True, timeout=120)
    assert str(tmp_path / "dualstack.svg") in " ".join(res.stdout.split()).replace(" ", "") or \
        "dualstack.svg" in res.stdout
    assert "lossy-4g-20m-50ms-1pct" in (tmp_path / "dualstack.svg").read_text()
    assert png_size((tmp_path / "dualstack.png").read_bytes())[0] > 800
