"""Reproducible installs: requirements.lock (scripts/lock) pins every Python package the scripts
install, each with sha256 hashes, and covers pyproject.toml; the environment these tests run in
was installed from it (scripts/lib.sh tl_venv), version for version; and every result records
the lock's digest (lab.study.results.provenance)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lab.study import results

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"


def parse_lock(text: str) -> dict[str, tuple[str, Marker | None, list[str]]]:
    """name -> (version, marker, hashes) of the entries that apply to this interpreter (a
    universal lock may pin one name twice, under exclusive markers)."""
    out: dict[str, tuple[str, Marker | None, list[str]]] = {}
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        req = Requirement(re.sub(r"\s*--hash=\S+", "", line))
        (spec,) = req.specifier
        assert spec.operator == "==", f"not pinned exactly: {line}"
        if req.marker is None or req.marker.evaluate():
            name = canonicalize_name(req.name)
            assert name not in out, f"{name} pinned twice for this interpreter"
            out[name] = (spec.version, req.marker, hashes)
    return out


@pytest.fixture(scope="module")
def lock() -> dict[str, tuple[str, Marker | None, list[str]]]:
    return parse_lock(LOCK.read_text(encoding="utf-8"))


def test_every_pin_has_hashes(lock: dict[str, tuple[str, Marker | None, list[str]]]) -> None:
    assert len(lock) > 40
    assert [n for n, (_, _, hashes) in lock.items() if not hashes] == []
    assert {"pip", "setuptools", "uv", "jinja2", "scipy"} <= set(lock)


def test_the_lock_covers_pyproject(lock: dict[str, tuple[str, Marker | None, list[str]]]) -> None:
    """Every dependency (and [dev] extra) of pyproject.toml is locked at a version it allows:
    an edit of pyproject.toml without scripts/lock fails here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for text in (*project["dependencies"], *project["optional-dependencies"]["dev"]):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is not in requirements.lock: run scripts/lock"
        assert req.specifier.contains(lock[name][0], prereleases=True), (text, lock[name][0])


def test_installed_versions_equal_the_lock(
        lock: dict[str, tuple[str, Marker | None, list[str]]]) -> None:
    """The environment running the tests has exactly the locked version of every package."""
    wrong = {}
    for name, (version, _, _) in lock.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = "not installed"
        if have != version:
            wrong[name] = (have, version)
    assert wrong == {}, f"installed vs locked (rerun scripts/lib.sh tl_venv): {wrong}"


def test_results_record_the_locks_digest(tmp_path: Path) -> None:
    doc = results.provenance({"sweep": "x"})
    assert doc["requirements_lock_sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert doc["sweep"] == "x"
    other = tmp_path / "requirements.lock"
    other.write_text("pip==1.0 --hash=sha256:" + "0" * 64 + "\n")
    assert results.lock_digest(other) == hashlib.sha256(other.read_bytes()).hexdigest()
    assert results.lock_digest(tmp_path / "missing.lock") == "no missing.lock"
