"""The view of ``teleradlab watch``: a snapshot's numbers as the terminal shows them (the
samples built from injected readers, as in tests/unit/runtime/test_watch.py)."""

from __future__ import annotations

from pathlib import Path

from fakes import fake_lab, shipped
from rich.console import Console

from lab.backends.base import Lab
from lab.cli.watch import view
from lab.runtime import watch
from lab.runtime.services import dicom_services


def _link(node: str, iface: str, rx: int) -> watch.LinkSample:
    return watch.LinkSample(node, iface, rx, 0, 1, 0, 0, 0, 0, 0)


def _sa(node: str, bytes_in: int) -> watch.SaSample:
    return watch.SaSample(node, "teleradlab", "INSTALLED", "c1", "c2", bytes_in, 0, 1, 1,
                          "AES_GCM_16")


def _services_logged(lab: Lab) -> None:
    for svc in dicom_services(lab):
        svc.log.parent.mkdir(parents=True, exist_ok=True)
        svc.log.write_text("x INFO stored 2.25.9 (525638 bytes)\nx INFO stored 2.25.8 (1000 "
                           "bytes)\n" if svc.name == "pacs" else "", encoding="utf-8")


def test_view_shows_the_numbers(tmp_path: Path) -> None:
    lab = fake_lab(shipped("ipv4", "ipsec"), tmp_path)
    _services_logged(lab)
    before = watch.sample(lab, links=lambda _l, n: [_link(n, "x", 0)],
                          sas=lambda _l, n: [_sa(n, 0)], clients=lambda _l, n: [])
    after = watch.sample(lab, links=lambda _l, n: [_link(n, "x", 1_000_000)],
                         sas=lambda _l, n: [_sa(n, 2_000_000)],
                         clients=lambda _l, n: [watch.ClientSample(n, 42, "scu", "store")]
                         if n == "modality" else [])
    after.time = before.time + 1.0
    console = Console(record=True, width=200)
    console.print(view(watch.document(before, after)))
    text = console.export_text()
    assert "lab t" in text and "WAN: unimpaired" in text
    assert "wan:x" in text and "8.0" in text  # 1 MB in one second
    assert "16.0" in text and "AES_GCM_16" in text  # the SA's 2 MB in one second
    assert "pacs on pacs" in text and "525.6 kB" not in text and "526.6 kB" in text
    assert "scu store on modality (pid 42)" in text
