"""The lesson's handout (lab.report.lesson) from a lesson.json written here: every step's
commands, numbers, captures and question are on the page, its text stays text, it needs no other
file to show, and it renders in headless Chromium with its topology drawing loaded."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.report import browser
from lab.report.lesson import write_handout
from lab.study.lesson import LESSON_FILE, Lesson, Step, read_lesson


def _lesson(folder: Path) -> Lesson:
    steps = [Step(f"Title {n} <&>", f"goal {n}", [f"teleradlab cmd-{n} --x"],
                  [(f"label {n}", f"{n}.{n} MB/s")], [f"{n}-cap/lab-wan.pcapng"] if n % 2 else [],
                  f"Question {n}?") for n in range(1, 9)]
    lesson = Lesson("lesson", 3, 20, 80.0, "2026-12-03 22:00:00 UTC", 57.5, steps)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LESSON_FILE).write_text(json.dumps(asdict(lesson)), encoding="utf-8")
    return lesson


def test_every_step_is_on_the_page(tmp_path: Path) -> None:
    lesson = _lesson(tmp_path)
    assert read_lesson(tmp_path) == lesson
    html = write_handout(tmp_path).read_text(encoding="utf-8")
    for n, step in enumerate(lesson.steps, start=1):
        assert f"Step {n}: Title {n} &lt;&amp;&gt;" in html
        assert step.commands[0] in html and step.question in html
        assert f"<th>label {n}</th><td>{n}.{n} MB/s</td>" in html
        for cap in step.captures:
            assert f'<a href="{cap}">' in html
    assert "<&>" not in html  # escaped
    assert "57.5 s" in html and "3 CT objects" in html


def test_a_folder_without_a_lesson_is_named(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=f"{tmp_path / LESSON_FILE}: not a lesson"):
        write_handout(tmp_path)


def test_handout_renders_in_chromium(tmp_path: Path) -> None:
    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing under CI (scripts/lib.sh installs it)")
        pytest.skip("needs Chromium (apt-get install chromium)")
    _lesson(tmp_path / "lesson")
    page = write_handout(tmp_path / "lesson")
    images = browser.render_images(page)
    assert [i.alt for i in images] == ["Topology ipv4"]
    assert images[0].width > 300 and images[0].height > 100, images
    dom = browser.render_dom(page)
    assert dom.count('class="question"') == 8 and "8.8 MB/s" in dom
