"""``teleradlab run`` stores with Storage Commitment (PS3.4 Annex J) between the lab's own SCU and
archive: on a real lab, every store row says every object was acknowledged and committed by the
archive, with no retry needed. The labs are named ``cmt-...`` (other people's labs run here)."""

from __future__ import annotations

import json
from pathlib import Path

from lab.study.results import read_csv

from ..conftest import teleradlab
from .test_run import own_lab_named, run


def test_run_commits_every_stored_object(tmp_path: Path) -> None:
    with own_lab_named("cmt-commit", "dualstack") as lab:
        out = tmp_path / "out"
        run("--lab", lab, "--modality", "CT,MR", "--objects", "3", "--out", str(out))
        rows = read_csv(out / "results.csv")
    stores = [r for r in rows if r["operation"] == "store"]
    print(json.dumps([{k: r[k] for k in ("family", "modality", "objects", "seconds", "committed",
                                         "complete", "retries")} for r in stores]))
    assert len(stores) == 4  # two families x two modalities
    for row in stores:
        assert row["ok"] == "True" and row["verified"] == "yes", row
        assert int(row["committed"]) == int(row["objects"]) == 3, row
        assert row["complete"] == "True" and int(row["retries"]) == 0, row
        assert float(row["recover_seconds"]) == 0.0, row
        assert json.loads(row["detail"])["statuses"] == {"0x0000": 3}, row
    for row in rows:
        if row["operation"] == "move":
            assert row["complete"] == "True", row


def test_run_commits_over_dicom_tls(tmp_path: Path) -> None:
    """The commitment rides the same TLS association as the C-STOREs (PS3.15 Annex B)."""
    lab = "cmt-tls"
    teleradlab("down", lab, check=False)  # left by an interrupted earlier run
    teleradlab("up", "ipv4", "--name", lab, "--security", "tls")
    try:
        out = tmp_path / "out"
        run("--lab", lab, "--objects", "4", "--out", str(out))
        rows = read_csv(out / "results.csv")
    finally:
        teleradlab("down", lab)
    (store,) = [r for r in rows if r["operation"] == "store"]
    assert store["security"] == "tls" and store["tls_version"] == "TLSv1.3", store
    assert store["ok"] == "True" and int(store["committed"]) == int(store["objects"]) == 4
    assert store["complete"] == "True", store
