"""Render a report in headless Chromium and say which of its images really loaded.

A copy of the HTML gets a small script (the template ``mark-images.html``) that, once the page
has loaded, writes each image's natural size onto it; Chromium's ``--dump-dom`` then prints the
DOM, marks included. An image the browser could not decode has a natural size of 0x0. Chromium
runs with a throwaway profile and no network features (background networking, component
updates, sync all off).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.host import programs
from lab.report import pages

_IMG = re.compile(r"<img\b[^>]*>")
_NATURAL = re.compile(r'data-natural="(\d+)x(\d+)"')
_ALT = re.compile(r'alt="([^"]*)"')
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000")


@dataclass(frozen=True)
class Rendered:
    alt: str
    width: int
    height: int


def chromium() -> str | None:
    return programs.locate(programs.BY_NAME["chromium"])


def render_dom(html_file: Path, timeout: float = 120) -> str:
    """The DOM of ``html_file`` once Chromium has loaded it, each image marked with its
    natural size (``data-natural="WxH"``)."""
    exe = chromium()
    if exe is None:
        raise LabError("Chromium is not installed "
                       f"({programs.install_command([programs.BY_NAME['chromium']])})")
    with tempfile.TemporaryDirectory(prefix="teleradlab-chromium-") as tmp:
        page = Path(tmp) / "page.html"
        mark = pages.render("mark-images.html")
        page.write_text(html_file.read_text(encoding="utf-8").replace("</body>", mark + "</body>"),
                        encoding="utf-8")
        profile = Path(tmp) / "profile"
        res = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              page.as_uri()], capture_output=True, text=True, timeout=timeout,
                             check=False)
    if 'data-checked="yes"' not in res.stdout:
        raise LabError(f"Chromium did not finish loading {html_file} (status {res.returncode}):"
                       f"\n{res.stderr[-2000:]}")
    return res.stdout


def render_images(html_file: Path, timeout: float = 120) -> list[Rendered]:
    """Every image of ``html_file`` as Chromium loaded it (natural width and height)."""
    out = []
    for tag in _IMG.findall(render_dom(html_file, timeout)):
        size = _NATURAL.search(tag)
        alt = _ALT.search(tag)
        out.append(Rendered(alt.group(1) if alt else "", int(size.group(1)) if size else 0,
                            int(size.group(2)) if size else 0))
    return out
