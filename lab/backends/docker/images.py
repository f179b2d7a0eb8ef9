"""The docker backend's images, built from ``images/*/Dockerfile`` and cached by their inputs.

Each image is tagged ``teleradlab/<name>:<digest>`` where the digest covers everything its build
reads (its Dockerfile, its build context, its Debian packages, and the image it builds FROM), so
an image is rebuilt only when one of those changed, and an unchanged tree costs one ``image
inspect`` per image.

Packages: an image installs the Debian packages of its role's features in the registry of
outside programs (:mod:`lab.host.programs`), handed to its Dockerfile as the build argument
``PACKAGES``; the Dockerfiles name no package themselves (one list, not two). Which features a
role needs follows from what the lab runs there: every node its setup script, the lab's Python
and pings (``node``, in the runtime); gateways charon and nft (``ipsec``) and the ends of the
WAN measurement, ping and iperf3 (``wan-measure``); the WAN router tcpdump for captures
(``capture``; its impairments are tc, pyroute2 and the userspace emulator, staged from the
host, and the offloads go off through an ioctl, :mod:`lab.wan.offloads`). A site host runs the
lab's DICOM programs, which are Python: nothing beyond the runtime.

Base: the Dockerfiles build FROM ``debian:bookworm``. No registry is reachable on the lab's
machines, so when that image is missing ``scripts/docker-base`` makes it with debootstrap and
``docker import`` under the same name; the Dockerfiles never change.
"""

from __future__ import annotations

import hashlib
import io
import platform
import re
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.backends.base import Progress, no_progress
from lab.errors import LabError
from lab.host import programs, shell
from lab.model.topology import Role

REPO = Path(__file__).resolve().parents[3]
IMAGES_DIR = REPO / "images"
BASE_IMAGE = "debian:bookworm"
REPOSITORY = "teleradlab"
INPUTS_LABEL = "teleradlab.inputs"
BUILD_TIMEOUT = 1800
WHEEL_CACHE = Path("/var/cache/teleradlab/wheels")
# Locked packages the nodes never import, left out of the images: the probe's TLS scanner and
# what only it needs (the probe runs on the host, against peers outside any lab). sslyze is also
# published as a source archive only, and the images install wheels only.
HOST_ONLY = frozenset({"sslyze", "nassl", "tls-parser"})


@dataclass(frozen=True)
class ImageSpec:
    name: str
    parent: str | None  # another spec's name (build argument RUNTIME), or None: the base image
    code: bool  # its build context carries the lab's package (lab/)
    features: tuple[str, ...] = ()  # of lab.host.programs: its packages (build arg PACKAGES)


SPECS = (
    ImageSpec("runtime", None, code=False, features=("node",)),
    ImageSpec("host", "runtime", code=True),
    ImageSpec("gateway", "runtime", code=True, features=("ipsec", "wan-measure")),
    ImageSpec("wan", "runtime", code=True, features=("capture",)),
)
ROLE_IMAGES = ("host", "gateway", "wan")


def image_for(role: Role) -> str:
    """The image a node of ``role`` runs."""
    return {Role.GATEWAY: "gateway", Role.WAN: "wan"}.get(role, "host")


def requirements() -> str:
    """The nodes' Python packages: requirements.lock (scripts/lock), exact versions with the
    sha256 of every file, the same the host's environment installs (scripts/lib.sh), but for
    those only the host uses (HOST_ONLY)."""
    lock = REPO / "requirements.lock"
    if not lock.is_file():
        raise LabError(f"missing {lock}: the docker backend installs the locked versions")
    kept: list[str] = []
    keep = True
    for line in lock.read_text(encoding="utf-8").splitlines(keepends=True):
        if line[:1].isalnum():  # a pin opens a block; its hashes follow, indented
            keep = re.split(r"[=<>!~; \\]", line, maxsplit=1)[0].lower() not in HOST_ONLY
        if keep:
            kept.append(line)
    return "".join(kept)


def packages(spec: ImageSpec) -> list[str]:
    """The Debian packages ``spec`` installs: those of its features in the registry."""
    return programs.apt_packages(spec.features) if spec.features else []


def buildargs(spec: ImageSpec, parent: str | None) -> dict[str, str]:
    """The build arguments of ``spec``: the image it builds FROM (``parent``, a tag, for the
    role images; the base image for the runtime) and, when it installs any, its packages."""
    if spec.parent and parent is None:
        raise LabError(f"image {spec.name} builds FROM {spec.parent}: its tag is needed")
    args = {"RUNTIME": parent} if parent is not None else {"BASE": BASE_IMAGE}
    wanted = packages(spec)
    if wanted:
        args["PACKAGES"] = " ".join(wanted)
    return args


def _inputs(spec: ImageSpec) -> Iterator[tuple[str, bytes | Path]]:
    """What the build reads, as (name in the build context, content or file), in a stable
    order; the runtime's wheels are left out: they follow from its requirements."""
    dockerfile = IMAGES_DIR / spec.name / "Dockerfile"
    if not dockerfile.is_file():
        raise LabError(f"missing {dockerfile}: the docker backend needs the repository's images/")
    yield "Dockerfile", dockerfile
    if spec.parent is None:
        yield "requirements.txt", requirements().encode()
    if spec.code:
        for f in sorted((REPO / "lab").rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                yield f.relative_to(REPO).as_posix(), f


def digest(spec: ImageSpec, parent: str) -> str:
    """A digest of every input of the image's build (``parent``: the image it builds FROM)."""
    h = hashlib.sha256(f"{spec.name}\0{parent}\0".encode())
    h.update(b"PACKAGES\0" + " ".join(packages(spec)).encode() + b"\0")
    for name, src in _inputs(spec):
        data = src if isinstance(src, bytes) else src.read_bytes()
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def wheelhouse(progress: Progress = no_progress) -> Path:
    """Wheels of the runtime's dependencies for the image's Python (Debian bookworm: CPython
    3.11), downloaded once on the host, where the package index is known to work."""
    reqs = requirements()
    where = WHEEL_CACHE / hashlib.sha256(reqs.encode()).hexdigest()[:16]
    if (where / ".complete").exists():
        return where
    progress("downloading the runtime's Python wheels (once)")
    where.mkdir(parents=True, exist_ok=True)
    (where / "requirements.txt").write_text(reqs)
    machine = platform.machine()
    shell.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--dest", str(where), "--only-binary=:all:", "--python-version", "3.11",
               "--implementation", "cp", "--platform", f"manylinux2014_{machine}",
               "--platform", f"manylinux_2_28_{machine}", "--require-hashes",
               "-r", str(where / "requirements.txt")],
              timeout=BUILD_TIMEOUT)
    (where / ".complete").touch()
    return where


def _context_tar(spec: ImageSpec, wheels: Path | None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries = list(_inputs(spec))
        if wheels is not None:
            entries += [(f"wheels/{w.name}", w) for w in sorted(wheels.glob("*.whl"))]
        for name, src in entries:
            data = src if isinstance(src, bytes) else src.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        if wheels is not None and not any(n.startswith("wheels/") for n, _ in entries):
            info = tarfile.TarInfo("wheels")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    buf.seek(0)
    return buf


def ensure_base(client: Any, progress: Progress = no_progress) -> str:
    """The base image's id, making it with ``scripts/docker-base`` when it is missing."""
    import docker.errors

    try:
        return str(client.images.get(BASE_IMAGE).id)
    except docker.errors.ImageNotFound:
        pass
    progress(f"making the base image {BASE_IMAGE} with debootstrap (once)")
    shell.run([str(REPO / "scripts" / "docker-base"), BASE_IMAGE], timeout=BUILD_TIMEOUT)
    return str(client.images.get(BASE_IMAGE).id)


def ensure_images(client: Any, progress: Progress = no_progress) -> dict[str, str]:
    """Build whichever image is missing or out of date; returns image name -> tag to run."""
    import docker.errors

    tags: dict[str, str] = {}
    base_id = ensure_base(client, progress)
    for spec in SPECS:
        parent = tags[spec.parent] if spec.parent else base_id
        tag = f"{REPOSITORY}/{spec.name}:{digest(spec, parent)}"
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            progress(f"building image {tag} (only when its inputs change)")
            wheels = wheelhouse(progress) if spec.parent is None else None
            _build(client, spec, tag, tags.get(spec.parent or ""), wheels)
        tags[spec.name] = tag
    return tags


def _build(
    client: Any, spec: ImageSpec, tag: str, parent: str | None, wheels: Path | None
) -> None:
    """Build with the host's network (apt and pip inside the build; the engine may have no
    default bridge); keep the log and show its tail when the build fails."""
    import docker.errors

    try:
        client.images.build(
            fileobj=_context_tar(spec, wheels),
            custom_context=True,
            tag=tag,
            buildargs=buildargs(spec, parent),
            network_mode="host",
            labels={INPUTS_LABEL: tag.rsplit(":", 1)[1]},
            rm=True,
            forcerm=True,
            timeout=BUILD_TIMEOUT,
        )
    except docker.errors.BuildError as exc:
        lines = [str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log]
        tail = "".join(lines)[-3000:]
        raise LabError(
            f"building image {tag} from {IMAGES_DIR / spec.name} failed:\n{tail}"
        ) from None
    client.images.get(tag).tag(f"{REPOSITORY}/{spec.name}", "latest")
