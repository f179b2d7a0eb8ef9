"""DCMTK's Query/Retrieve side by side with the lab's, for ``scripts/bench --only wan-dicom``.

DCMTK's ``dcmqrscp`` runs in the PACS node of the bench's lab (one read-write storage area,
forking per association as it does by default) and is given the study by ``storescu``;
``movescu`` in the modality node asks it to move the study to ``movescu`` itself (its own
storage SCP on :data:`MOVESCU_PORT`, dcmqrscp's host table naming it), and ``findscu`` asks the
lab's PACS and dcmqrscp the same C-FIND. Every time is read from the programs' own log
timestamps (as :class:`lab.bench.store.StoreBench` does for storescu), so it covers the DICOM
exchange, not the programs' start. DCMTK 3.6.7 speaks IPv4 only (the bench's lab is IPv4).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.bench.store import (
    STORE_PDU,
    StoreBench,
    _dcmtk_events,
    _first,
    _node,
    dcmtk_tool,
    listener,
)
from lab.dicom import MODALITY_AE, PACS_AE, PACS_PORT
from lab.errors import LabError
from lab.model.topology import Family, Role

QR_PORT = 11116  # dcmqrscp, beside the lab's PACS (11112) and storescp (11114) in the PACS node
QR_AE = "DCMQR"
MOVESCU_PORT = 11117  # movescu's own storage SCP in the modality node
MOVESCU_AE = "MOVESCU"


@dataclass(frozen=True)
class Exchange:
    """One DICOM exchange timed from a DCMTK program's log: ``seconds`` from the association
    request to its release (C-MOVE) or from the request to the final response (C-FIND);
    ``answers``: objects received or C-FIND matches."""

    seconds: float
    answers: int


def _config(folder: Path, modality_ip: str) -> Path:
    """dcmqrscp's configuration (the format of DCMTK's dcmqrscp.cfg): one storage area, the
    bench's movescu as the only move destination, any caller allowed."""
    db = folder / "db"
    db.mkdir(parents=True, exist_ok=True)
    cfg = folder / "dcmqrscp.cfg"
    cfg.write_text(
        f"NetworkTCPPort = {QR_PORT}\nMaxPDUSize = {STORE_PDU}\nMaxAssociations = 16\n"
        f"HostTable BEGIN\nmodality = ({MOVESCU_AE}, {modality_ip}, {MOVESCU_PORT})\n"
        "HostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\n{QR_AE} {db} RW (1000, 4096mb) ANY\nAETable END\n")
    return cfg


@contextmanager
def dcmqrscp(bench: StoreBench, folder: Path) -> Iterator[None]:
    """dcmqrscp listening in the PACS node and holding the bench's study (stored by storescu);
    stopped by process id afterwards."""
    lab = bench.lab
    modality_ip = str(lab.topology.node(bench.modality).addresses(Family.IPV4)[0].ip)
    cfg = _config(folder, modality_ip)
    argv = ["env", "TCP_NODELAY=1", dcmtk_tool("dcmqrscp"), "-c", str(cfg)]
    with listener(lab, _node(lab, Role.PACS), argv, QR_PORT, folder / "dcmqrscp.log"):
        bench.storescu(QR_PORT, called=QR_AE)
        yield


class DcmtkQR:
    """movescu and findscu run in the modality node of the bench's lab."""

    def __init__(self, bench: StoreBench, out_dir: Path) -> None:
        self.bench = bench
        self.out_dir = out_dir

    def _log(self, argv: list[str], what: str) -> list[tuple[float, str]]:
        _, res = self.bench._run(["env", "TCP_NODELAY=1", *argv])
        if res.returncode != 0:
            raise LabError(f"{what} failed (status {res.returncode}):\n"
                           f"{(res.stderr + res.stdout)[-2000:]}")
        return _dcmtk_events(res.stderr + res.stdout)

    def move(self, study_uid: str) -> Exchange:
        """movescu -> dcmqrscp -> movescu of the whole study; every object must arrive."""
        shutil.rmtree(self.out_dir, ignore_errors=True)
        self.out_dir.mkdir(parents=True)
        events = self._log([
            dcmtk_tool("movescu"), "-lc", str(self.bench.log_config), "-S",
            "-aet", MOVESCU_AE, "-aem", MOVESCU_AE, "-aec", QR_AE,
            "--port", str(MOVESCU_PORT), "--max-pdu", str(STORE_PDU), "-od", str(self.out_dir),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
            self.bench.host, str(QR_PORT)], "movescu")
        got = sum(1 for _ in self.out_dir.iterdir())
        if got != len(self.bench.files):
            raise LabError(f"movescu received {got} of {len(self.bench.files)} objects")
        return Exchange(_first(events, "Releasing Association")
                        - _first(events, "Requesting Association"), got)

    def find(self, uids: tuple[str, str], level: str, archive: str) -> Exchange:
        """findscu's C-FIND (study root, ``level`` STUDY or IMAGE) against ``archive``: "lab"
        (the lab's PACS) or "dcmqrscp". ``uids``: the study's and its series' instance UIDs (a
        hierarchical query names the unique key of every level above its own, PS3.4
        C.4.1.2.2)."""
        called, port = (PACS_AE, PACS_PORT) if archive == "lab" else (QR_AE, QR_PORT)
        keys = ["-k", f"QueryRetrieveLevel={level}", "-k", f"StudyInstanceUID={uids[0]}"]
        if level == "IMAGE":
            keys += ["-k", f"SeriesInstanceUID={uids[1]}", "-k", "SOPInstanceUID",
                     "-k", "InstanceNumber"]
        events = self._log([
            dcmtk_tool("findscu"), "-lc", str(self.bench.log_config), "-S", "-aet", MODALITY_AE,
            "-aec", called, "--max-pdu", str(STORE_PDU), *keys, self.bench.host, str(port)],
            f"findscu -> {archive}")
        answers = sum(1 for _, msg in events if msg.startswith("Find Response:"))
        return Exchange(_first(events, "Received Final Find Response")
                        - _first(events, "Sending Find Request"), answers)
