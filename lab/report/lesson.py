"""The handout of ``teleradlab lesson``: ``lesson.html`` beside the ``lesson.json`` the lesson
wrote (:mod:`lab.study.lesson`), from the template ``lesson.html`` in the report's style, with
autoescaping (every text of the steps stays text) and the lesson's topology drawn
(:mod:`lab.report.drawings`) and embedded, so the page needs no other file to show."""

from __future__ import annotations

from pathlib import Path

from lab import topology as topology_file
from lab.host import files
from lab.report import pages
from lab.report.drawings import draw
from lab.study.lesson import TOPOLOGY, read_lesson

HANDOUT = "lesson.html"


def write_handout(folder: Path) -> Path:
    """Write ``folder/lesson.html`` (and ``folder/figures/TOPOLOGY.png``, ``.svg``) from
    ``folder/lesson.json``; return the page's path."""
    lesson = read_lesson(folder)
    topology = topology_file.load(topology_file.resolve_path(TOPOLOGY))
    _, png = draw(topology, folder / "figures")
    path = folder / HANDOUT
    files.write_text(path, pages.render("lesson.html", lesson=lesson, drawing=png.read_bytes(),
                                        topology=topology.name))
    return path.absolute()
