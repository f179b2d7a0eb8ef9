"""The docker images' cache keys: a tag changes exactly when something its build reads changes
(its package list from the registry of outside programs included), so an unchanged tree never
rebuilds and an edit of the lab's code never redoes the runtime; and the images' Debian packages
come from that registry alone."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
from host.argv_scan import scan_tree  # tests/unit/host: pytest puts tests/unit on sys.path

from lab.backends.docker import images
from lab.errors import LabError
from lab.host import programs

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what the builds read: images/, lab/, pyproject.toml and requirements.lock."""
    shutil.copytree(REPO / "images", tmp_path / "images")
    shutil.copytree(REPO / "lab", tmp_path / "lab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(REPO / "requirements.lock", tmp_path / "requirements.lock")
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


def test_the_lock_changes_the_runtime_and_so_everything(tree: Path) -> None:
    """The images install requirements.lock: a new locked version is a new runtime image."""
    before = _digests()
    lock = (tree / "requirements.lock").read_text()
    pin = re.search(r"^numpy==[^ ]+", lock, re.M)
    assert pin is not None
    (tree / "requirements.lock").write_text(lock.replace(pin.group(0), "numpy==2.9.9", 1))
    after = _digests()
    assert "numpy==2.9.9" in images.requirements() and "--hash=sha256:" in images.requirements()
    assert all(after[n] != before[n] for n in after)


def test_without_a_lock_no_image_is_built(tree: Path) -> None:
    (tree / "requirements.lock").unlink()
    with pytest.raises(LabError, match=r"missing .*requirements\.lock"):
        _digests()


def test_a_dockerfile_changes_its_own_image(tree: Path) -> None:
    before = _digests()
    with (tree / "images" / "wan" / "Dockerfile").open("a") as f:
        f.write("RUN true\n")
    after = _digests()
    assert after["wan"] != before["wan"]
    assert {n: after[n] for n in after if n != "wan"} == {n: before[n] for n in before
                                                          if n != "wan"}


def test_roles_run_their_images() -> None:
    from lab.model.topology import Role

    assert images.image_for(Role.GATEWAY) == "gateway" and images.image_for(Role.WAN) == "wan"
    assert {images.image_for(r) for r in (Role.MODALITY, Role.PACS, Role.WORKSTATION)} == {"host"}


# --- the images' Debian packages come from the registry -----------------------------------


def _specs() -> dict[str, images.ImageSpec]:
    return {s.name: s for s in images.SPECS}


def test_each_image_installs_the_packages_of_its_features() -> None:
    args = {n: images.buildargs(s, None if s.parent is None else "teleradlab/runtime:x")
            for n, s in _specs().items()}
    wanted = {n: set(a.get("PACKAGES", "").split()) for n, a in args.items()}
    assert {"strongswan-charon", "strongswan-swanctl", "libcharon-extra-plugins", "nftables",
            "iperf3"} <= wanted["gateway"]
    assert {"python3", "python3-venv", "iproute2", "iputils-ping", "mawk"} <= wanted["runtime"]
    assert {"tcpdump", "tshark"} <= wanted["wan"]
    assert "PACKAGES" not in args["host"], "a site host runs Python alone"
    for name, spec in _specs().items():
        assert wanted[name] == set(programs.apt_packages(spec.features) if spec.features else [])
    assert args["runtime"]["BASE"] == images.BASE_IMAGE
    assert all(args[n]["RUNTIME"] == "teleradlab/runtime:x" for n in images.ROLE_IMAGES)
    with pytest.raises(LabError, match="builds FROM runtime"):
        images.buildargs(_specs()["gateway"], None)


def test_the_programs_run_inside_nodes_are_in_their_images() -> None:
    """What the code runs inside a node of each role is installed by that role's image or by
    the runtime below it: the node's setup script (lab/backends/docker/plan.py) and its Python
    in every node, charon and nft in gateways, iperf3 at the ends of the WAN measurement (the
    gateways), tc and tcpdump in the WAN router."""
    runtime = set(images.packages(_specs()["runtime"]))
    inside = {"runtime": ("sh", "ip", "awk", "touch", "sleep", "env", "cat", "ping", "python3"),
              "gateway": ("charon", "swanctl", "nft", "iperf3"), "wan": ("tc", "tcpdump")}
    for name, names in inside.items():
        have = runtime | set(images.packages(_specs()[name]))
        assert all(set(programs.BY_NAME[p].packages) <= have for p in names), name


def test_the_dockerfiles_name_no_package_of_their_own() -> None:
    """One list: every ``apt-get install`` of the Dockerfiles installs ``$PACKAGES`` alone, and
    an image takes PACKAGES exactly when the registry gives it some."""
    for name, spec in _specs().items():
        text = (images.IMAGES_DIR / name / "Dockerfile").read_text()
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        installs = re.findall(r"apt-get install((?:\s+-\S+)*)\s+([^\n\\&]+)", code)
        assert all(what.split() == ["$PACKAGES"] for _, what in installs), (name, installs)
        assert ("ARG PACKAGES" in code) == bool(images.packages(spec)) == bool(installs), name


def test_a_changed_package_list_rebuilds_the_images_that_install_it(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _digests()
    extra = programs.Program("frob", "frobnicate", ("ipsec",), "a program gateways would run")
    monkeypatch.setattr(programs, "PROGRAMS", (*programs.PROGRAMS, extra))
    assert "frobnicate" in images.buildargs(_specs()["gateway"], "t")["PACKAGES"].split()
    after = _digests()
    assert after["gateway"] != before["gateway"]
    assert {n: after[n] for n in after if n != "gateway"} == {
        n: before[n] for n in before if n != "gateway"}


def test_other_features_give_another_digest() -> None:
    spec = _specs()["wan"]
    other = dataclasses.replace(spec, features=("capture", "wan-measure"))
    assert images.packages(other) != images.packages(spec)
    assert images.digest(other, "teleradlab/runtime:x") != images.digest(spec,
                                                                         "teleradlab/runtime:x")


def test_every_program_the_code_runs_in_a_docker_node_is_in_an_image() -> None:
    """Read from the source (what a backend's exec/spawn/node_argv runs): every such program of
    the lab, and of the docker tests, is installed by some image. The benchmarks build netns
    labs only, and the other integration tests are netns tests: they run the host's programs."""
    def on_docker(site: str) -> bool:
        return (site.startswith("lab/") and not site.startswith("lab/bench")) or \
            site.startswith("tests/integration/backends/test_docker.py")

    inside = {name for name, sites in scan_tree(str(REPO)).in_nodes.items()
              if any(on_docker(s) for s in sites)}
    assert {"charon", "nft", "iperf3", "ping", "python3", "tcpdump"} <= inside
    installed = {p for spec in images.SPECS for p in images.packages(spec)}
    missing = {n: programs.BY_NAME[n].packages for n in inside
               if not set(programs.BY_NAME[n].packages) <= installed}
    assert not missing, f"give an image the feature of: {missing}"


def test_the_images_install_every_pin_but_the_hosts_own() -> None:
    """The nodes get every locked package with all its hashes, but for the probe's TLS scanner
    and what only it needs (sslyze is a source archive only; the images install wheels)."""
    lock = (images.REPO / "requirements.lock").read_text()
    image = images.requirements()

    def pins(text: str) -> set[str]:
        return {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9][\w.-]*)==", text, re.M)}

    assert pins(lock) >= images.HOST_ONLY
    assert pins(image) == pins(lock) - images.HOST_ONLY
    assert image.count("--hash=sha256:") == lock.count("--hash=sha256:") - sum(
        len(re.findall(r"--hash=sha256:", block))
        for block in re.findall(r"^(?:sslyze|nassl|tls-parser)==.*?(?=^\S)", lock, re.M | re.S))
