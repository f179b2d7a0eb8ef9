"""Integration tests build real labs (network namespaces, processes, pings): they need root.

Without root they are skipped on a developer's machine and fail under CI (CI runs as root, so a
missing prerequisite there is a real failure, not something to skip)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "topologies"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
    # Expensive variants run only when asked for (pytest -m slow); their reduced forms always do.
    if "slow" not in (config.option.markexpr or ""):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("integration tests must run as root under CI")
        pytest.skip("integration tests build labs: needs root")


def teleradlab(
    *args: str, check: bool = True, timeout: float = 120, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run the real command line (``python -m lab``) and capture its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        **kw,
    )  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(
            f"teleradlab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc  # type: ignore[no-any-return]


def netns_names(prefix: str = "tl-") -> list[str]:
    run = Path("/run/netns")
    return (
        sorted(p.name for p in run.iterdir() if p.name.startswith(prefix)) if run.is_dir() else []
    )


def leftovers(lab: str | None = None) -> dict[str, list[str]]:
    """Everything the lab (or any lab) could have left: namespaces, mounts, processes, state."""
    prefix = f"tl-{lab}." if lab else "tl-"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounts = [
            line.split()[4]
            for line in f
            if prefix in line or (lab is None and "/run/teleradlab" in line)
        ]
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if prefix in cmd and "pytest" not in cmd:
                procs.append(f"{entry.name}: {cmd}")
    state = Path("/run/teleradlab") / "labs" / lab if lab else Path("/run/teleradlab")
    data = Path("/var/lib/teleradlab") / lab if lab else Path("/var/lib/teleradlab")
    return {
        "netns": netns_names(prefix),
        "mounts": mounts,
        "processes": procs,
        "state": [str(d) for d in (state, data) if d.exists()],
    }


def host_links() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()}


@pytest.fixture
def clean_host() -> Iterator[None]:
    """Start and end with no lab on the machine; fail if a test left anything behind."""
    teleradlab("clean", "-q")
    links = host_links()
    yield
    left = {k: v for k, v in leftovers().items() if v}
    extra_links = host_links() - links
    teleradlab("clean", "-q")
    assert not left, f"left behind: {left}"
    assert not extra_links, f"interfaces left in the host namespace: {extra_links}"


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process the test started, by its id: SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
