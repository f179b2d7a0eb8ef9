"""The docker images' cache keys: a tag changes exactly when something its build reads changes,
so an unchanged tree never rebuilds and an edit of the lab's code never redoes the runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.backends import images

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what the builds read: images/, lab/ and pyproject.toml."""
    shutil.copytree(REPO / "images", tmp_path / "images")
    shutil.copytree(REPO / "lab", tmp_path / "lab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.setattr(images, "REPO", tmp_path)
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    return tmp_path


def _digests() -> dict[str, str]:
    spec = {s.name: s for s in images.SPECS}
    runtime = images.digest(spec["runtime"], "sha256:base")
    return {"runtime": runtime, **{n: images.digest(spec[n], f"teleradlab/runtime:{runtime}")
                                   for n in images.ROLE_IMAGES}}


def test_unchanged_inputs_keep_every_tag(tree: Path) -> None:
    before = _digests()
    (tree / "lab" / "__pycache__").mkdir(exist_ok=True)
    (tree / "lab" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    assert _digests() == before


def test_lab_code_changes_the_role_images_only(tree: Path) -> None:
    before = _digests()
    with (tree / "lab" / "model.py").open("a") as f:
        f.write("\n# an edit\n")
    after = _digests()
    assert after["runtime"] == before["runtime"]
    assert all(after[n] != before[n] for n in images.ROLE_IMAGES)


def test_dependencies_change_the_runtime_and_so_everything(tree: Path) -> None:
    before = _digests()
    text = (tree / "pyproject.toml").read_text().replace('"numpy>=1.26"', '"numpy>=2"')
    (tree / "pyproject.toml").write_text(text)
    after = _digests()
    assert "numpy>=2" in images.requirements()
    assert all(after[n] != before[n] for n in after)


def test_a_dockerfile_changes_its_own_image(tree: Path) -> None:
    before = _digests()
    with (tree / "images" / "wan" / "Dockerfile").open("a") as f:
        f.write("RUN true\n")
    after = _digests()
    assert after["wan"] != before["wan"]
    assert {n: after[n] for n in after if n != "wan"} == {n: before[n] for n in before
                                                          if n != "wan"}


def test_roles_run_their_images() -> None:
    from lab.model import Role

    assert images.image_for(Role.GATEWAY) == "gateway" and images.image_for(Role.WAN) == "wan"
    assert {images.image_for(r) for r in (Role.MODALITY, Role.PACS, Role.WORKSTATION)} == {"host"}
