"""Findings of a sweep spread over Dask workers: rows from machines with different kernels, or
measured over different WAN or ESP paths, are said to be mixed in every comparison they enter,
and only there."""

from __future__ import annotations

from typing import Any

from lab.report.findings import findings, mixed_paths

from . import synthetic


def _cost(sentences: list[str], cfg: str, label: str, fam: str) -> str:
    start = f"{cfg} on {label} ({fam}, WAN none) cost "
    found = [s for s in sentences if s.startswith(start)]
    assert len(found) == 1, (start, sentences)
    return found[0]


def _on_host(r: dict[str, Any], host: str, kernel: str) -> dict[str, Any]:
    return {**r, "worker": f"tcp://{host}:4000", "host": host, "kernel": kernel}


def test_one_machine_adds_no_caution() -> None:
    recs = [_on_host(r, "lab1", "6.1.0") for r in synthetic.records()]
    text = " ".join(findings(recs))
    assert "Caution" not in text and "machines" not in text


def test_a_comparison_across_kernels_says_so_and_the_others_do_not() -> None:
    recs = [_on_host(r, "lab2", "6.12.0") if r["family"] == "ipv4" and
            r["case_security"] == "ipsec" else _on_host(r, "lab1", "6.1.0")
            for r in synthetic.records()]
    out = findings(recs)
    assert out[0] == ("These results come from 2 machines (lab1 (kernel 6.1.0), lab2 (kernel "
                      "6.12.0)); comparisons that mix them say so.")
    mixed = _cost(out, "ipsec aes128gcm16-ecp256", "IPv4", "ipv4")
    assert mixed.endswith("Caution: this comparison mixes machines lab1 (kernel 6.1.0), lab2 "
                          "(kernel 6.12.0)."), mixed
    for cfg, label, fam in (("ipsec aes128gcm16-ecp256", "IPv6", "ipv6"),
                            ("tls bcp195-rfc8996 ECDHE-ECDSA-AES128-GCM-SHA256", "IPv4", "ipv4")):
        assert "Caution" not in _cost(out, cfg, label, fam)
    ipsec_v6_v4 = [s for s in out if s.startswith("IPv6 against IPv4 (ipsec")]
    assert ipsec_v6_v4 and all("mixes machines" in s for s in ipsec_v6_v4)


def test_esp_and_wan_paths_count_too() -> None:
    rows = [{"host": "a", "kernel": "6.1", "data_path_wan": w, "data_path_esp": e}
            for w, e in (("netem", "kernel"), ("userspace", "libipsec"))]
    assert mixed_paths(rows, rows) == "WAN paths netem, userspace; ESP paths kernel, libipsec"
    assert mixed_paths(rows[:1], rows[:1]) == ""
    assert mixed_paths(rows) == "WAN paths netem, userspace"  # ESP only among protected rows
