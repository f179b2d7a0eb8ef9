"""``teleradlab lesson`` for real (about a minute): every step's numbers come from its own run
— tshark reads the patient's name in clear and with the TLS keys, never under IPsec or in the TLS
capture as the wire saw it; the delay slows one-at-a-time C-STOREs and the window brings the
throughput back — and the handout renders in headless Chromium with those numbers."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from lab.report import browser

from ..conftest import teleradlab

NAME = "TELERAD^SYNTH0"


def _typed(command: str, folder: Path) -> str:
    """What the tshark ``command`` prints, run as a reader of the handout would (in its
    folder)."""
    program, *args = shlex.split(command)
    assert program == "tshark", command
    return subprocess.run(["tshark", *args], cwd=folder, capture_output=True, text=True,
                          check=True, timeout=120).stdout


def _rate(text: str) -> float:
    found = re.match(r"([\d.]+) MB/s", text)
    assert found, text
    return float(found.group(1))


def test_lesson_measures_every_step_and_renders(tmp_path: Path) -> None:
    out = tmp_path / "lesson"
    for kind in ("clear", "ipsec", "tls"):
        teleradlab("down", f"tch-les-{kind}", check=False)
    res = teleradlab("lesson", "--name", "tch-les", "--objects", "2", "--wan-objects", "12",
                     "--out", str(out), timeout=600)
    assert "handout:" in res.stdout
    steps = json.loads((out / "lesson.json").read_text())["steps"]
    assert len(steps) == 8
    m = [dict(step["measured"]) for step in steps]
    assert all(step["commands"] and step["question"].endswith("?") for step in steps)
    assert m[1]["replies"] == "5 of 5"
    # clear: the name readable; IPsec: only ESP; TLS on the wire: only TLS; with the keys: DICOM
    assert m[2]["patient names readable"] == NAME and int(m[2]["P-DATA PDUs seen"]) > 0
    assert m[3]["patient names readable"] == "none" and m[3]["DICOM frames dissected"] == "0"
    assert int(m[3]["ESP frames"]) > 100
    assert m[3]["IP frames outside IPsec (neither ESP nor IKE)"] == "0"  # ARP may cross
    assert m[4]["patient names readable"] == "none" and int(m[4]["TLS frames"]) > 0
    assert m[4]["DICOM frames dissected"] == "0"
    assert m[5]["patient names readable"] == NAME and int(m[5]["P-DATA PDUs seen"]) > 0
    for step in steps[2:6]:
        assert all((out / cap).is_file() for cap in step["captures"]) and step["captures"]
    # the delay (80 ms measured) slows one request at a time; the window brings it back
    assert 75 < float(m[6]["round trip measured"].split()[0]) < 95
    assert _rate(m[6]["C-STORE with 80 ms"]) < _rate(m[6]["C-STORE without delay"]) / 4
    assert _rate(m[7]["window of 16"]) > 1.5 * _rate(m[7]["one at a time"])
    assert _rate(m[7]["4 associations"]) > 1.5 * _rate(m[7]["one at a time"])
    # the handout's tshark commands, typed in the lesson's folder, show what the step says
    shown = {n: [_typed(c, out) for c in steps[n]["commands"] if c.startswith("tshark")]
             for n in (2, 3, 4, 5)}
    assert "P-DATA" in shown[2][0] and "P-DATA" in shown[5][0]
    assert "esp" in shown[3][0] and "dicom" not in shown[3][0] and "P-DATA" not in shown[3][1]
    assert "TLSv1.3" in shown[4][0] and "P-DATA" not in shown[4][1]
    page = out / "lesson.html"
    images = browser.render_images(page)
    assert [i.alt for i in images] == ["Topology ipv4"] and images[0].width > 300
    dom = browser.render_dom(page)
    for values in m:
        for value in values.values():
            assert value.replace("&", "&amp;") in dom, value
