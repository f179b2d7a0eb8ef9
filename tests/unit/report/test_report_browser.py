"""The report renders in a real browser (headless Chromium): every figure loads as an image with
a nonzero natural size, both for a full synthetic sweep and for one whose figures have no data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lab.report import browser, render
from lab.study.sweep import table

from . import synthetic


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing under CI (scripts/lib.sh installs it)")
        pytest.skip("needs Chromium (apt-get install chromium)")


@pytest.mark.parametrize("records", [synthetic.records(), synthetic.failed_only()],
                         ids=["full", "no-data"])
def test_every_figure_loads_in_chromium(records: list[dict[str, Any]], tmp_path: Path) -> None:
    table.write(tmp_path, records)
    images = browser.render_images(render.write_report(tmp_path))
    topologies = sorted({r["case_topology"] for r in records})
    assert [i.alt for i in images] == [
        "Throughput by security configuration and family", "Effect of the PDU size",
        "Handshake and IKE setup times", "Throughput against RTT and loss, with the TCP bounds",
        "Time of a study against the window and parallel associations",
        *(f"Topology {t}" for t in topologies)]
    for img in images:
        assert img.width > 300 and img.height > 200, img


def test_a_broken_image_is_seen_as_broken(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img alt='x' src='data:image/png;base64,AAAA'>"
                    "</body></html>")
    assert browser.render_images(page) == [browser.Rendered("x", 0, 0)]
