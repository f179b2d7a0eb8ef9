"""Tidy results: one row per operation and repetition (results.csv), plus provenance (run.json).

Columns are fixed and documented here so that every later tool (report, sweeps) reads the same
schema whatever produced the rows.
"""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from lab.host import files
from lab.model.topology import Wan


@dataclass(frozen=True)
class Row:
    """One timed DICOM operation."""

    topology: str
    family: str  # ipv4 | ipv6 ('' for the courier: no network)
    backend: str  # netns | docker
    security: str  # none | ipsec | tls
    operation: str  # echo | store | find | move | courier (secure media, no network)
    modality: str  # CT, MR, ... ('' for echo)
    pdu: int  # maximum PDU length asked for (0 = unlimited)
    repetition: int
    objects: int
    bytes: int
    seconds: float  # the operation itself, association setup excluded
    mbytes_per_s: float  # bytes / seconds / 1e6 (0 when nothing was moved)
    setup_seconds: float  # association (and later handshake) setup
    verified: str  # 'yes' | 'no' | '' (not applicable); integrity + authenticity at the receiver
    ok: bool
    detail: str  # status codes, mismatches or the error
    # How the C-STORE used the path (store rows; 1 and 1 for the other operations):
    window: int = 1  # requests outstanding granted per association (PS3.7 D.3.3.3; 0 = no limit)
    associations: int = 1  # associations the study was spread over at once
    # Resume and Storage Commitment (lab.dicom.sender, PS3.4 Annex J), store rows:
    retries: int = 0  # associations made again after one broke
    recover_seconds: float = 0.0  # longest time from a break to the next acknowledged object
    committed: int = 0  # objects the archive committed (0 when commitment was not asked)
    complete: bool = False  # store: every object acknowledged; move: every object moved
    # What protected and shaped the path (filled in by the security and WAN layers):
    security_profile: str = ""  # TLS profile name, or the IPsec proposal (e.g. aes256gcm16-...)
    esp_path: str = ""  # kernel | libipsec ('' without IPsec)
    handshake_seconds: float = 0.0  # TLS handshake, or IKE_SA + CHILD_SA setup for IPsec
    tls_version: str = ""  # e.g. TLSv1.3 ('' without TLS)
    cipher: str = ""  # negotiated TLS cipher suite, or ESP algorithms
    sa_bytes: int = 0  # ESP bytes counted by the SA during the operation (0 without IPsec)
    wan_profile: str = ""  # WAN preset or profile name ('' = unimpaired)
    wan_path: str = ""  # netem | userspace ('' = unimpaired)
    # The WAN's numbers as applied (forward direction: PACS-bound; 0 = not impaired), so that
    # tables and figures need not parse the profile's name back:
    wan_delay_ms: float = 0.0  # one-way delay (the RTT adds the reverse direction's)
    wan_rtt_ms: float = 0.0  # configured round trip: forward + reverse delay
    wan_jitter_ms: float = 0.0
    wan_loss_pct: float = 0.0
    wan_rate_mbit: float = 0.0  # bottleneck rate (0 = none)
    # Object security (PS3.15 Annexes C, E) and secure media (Annex D), lab.study.objects; each
    # time summed over the study's objects, reading and writing the files included (0 = not done):
    object_security: str = "none"  # none | sign | deid | sign+deid
    sign_seconds: float = 0.0  # sending site: sign every object (store and courier rows)
    deid_seconds: float = 0.0  # sending site: de-identify every object (store and courier rows)
    verify_seconds: float = 0.0  # receiving site: verify every signature (store and move rows)
    reid_seconds: float = 0.0  # PACS's site: re-identify every object (store rows)
    export_seconds: float = 0.0  # courier: write the secure file-set at the modality's site
    import_seconds: float = 0.0  # courier: verify, decrypt and import it at the PACS's site
    # A fault injected during the C-STORE (run --fault, lab.study.faults; store rows only):
    fault: str = ""  # as scheduled, KIND@WHEN[,...] ('' = none)
    fault_node: str = ""  # the node it hit
    fault_at_s: float = 0.0  # seconds after the C-STORE started that it was injected
    fault_seconds: float = 0.0  # from the fault to the lab seen recovered (lab.runtime.faults)
    fault_observed: str = ""  # what was seen, or why it was not injected


COLUMNS = tuple(f.name for f in fields(Row))


def wan_columns(wan: Wan, path: str) -> dict[str, Any]:
    """The Row's WAN columns for ``wan`` applied by ``path`` (netem | userspace): its name and
    its numbers in the direction the data of a C-STORE flows (first site to second), so that
    tables and figures need not parse names back. Empty for an unimpaired WAN."""
    if not wan.impaired:
        return {}
    fwd, rev = wan.forward, wan.reverse
    return {"wan_profile": wan.name, "wan_path": path, "wan_delay_ms": fwd.delay_ms,
            "wan_rtt_ms": fwd.delay_ms + rev.delay_ms, "wan_jitter_ms": fwd.jitter_ms,
            "wan_loss_pct": fwd.loss_pct, "wan_rate_mbit": fwd.rate_mbit}


def write_csv(path: Path, rows: list[Row]) -> None:
    with files.open_atomic(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


#: The lock of every Python package the scripts install (scripts/lock, scripts/lib.sh).
LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements.lock"


def lock_digest(path: Path = LOCK_FILE) -> str:
    """sha256 of the lock file the environment was installed from, so that a result names the
    exact package set behind it; 'no requirements.lock' when the lab runs from elsewhere than
    a checkout (as git_revision says 'unknown' there)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return f"no {path.name}"


def provenance(extra: dict[str, Any]) -> dict[str, Any]:
    """What produced a result: software versions, the package lock's digest, kernel, machine,
    and the caller's details."""
    return {
        "teleradlab": _version("teleradlab"),
        "git_revision": _git_revision(),
        "requirements_lock_sha256": lock_digest(),
        "python": platform.python_version(),
        "packages": {d: _version(d) for d in ("pydicom", "pynetdicom", "pyroute2", "numpy",
                                              "cryptography")},
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        **extra,
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    files.write_json(path, doc, default=str)
