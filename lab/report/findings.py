"""The report's tables (shaped like the paper's: transfer time and rate per modality, per
configuration) and its generated findings, stated with the numbers they rest on.

Tables are data (:class:`Table`: caption, header, rows of plain text); the HTML is written by
the report's template (lab/report/templates, autoescaped), never here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lab.report.data import (
    Summary,
    by_repetition,
    config_label,
    failed_cases,
    family_label,
    group,
    measured,
    summarise,
)

Records = list[dict[str, Any]]
NONE = "-"  # an empty cell


@dataclass(frozen=True)
class Table:
    """A table of text cells. Without rows the report says it has no data, unless ``empty``
    says what no row means (no failed case is a result, not missing data)."""

    head: list[str]
    rows: list[list[str]]
    caption: str
    empty: str = ""


def _columns(rows: Records) -> list[tuple[str, str]]:
    return sorted({(r["family"], config_label(r)) for r in rows})


def modality_table(records: Records, operation: str) -> Table:
    """Rows: modality (objects, study size); columns: family x configuration; cells: seconds
    (mean ± 95% half-width) and MB/s, as the paper tabulates transfer times per image type."""
    rows = measured(records, operation)
    cols = _columns(rows)
    out = []
    for mod, rs in sorted(group(rows, lambda r: r["modality"]).items()):
        size = max(int(r["bytes"]) for r in rs) / 1e6
        line = [f"{mod} ({max(int(r['objects']) for r in rs)} objects, {size:.1f} MB)"]
        for fam, cfg in cols:
            sel = [r for r in rs if (r["family"], config_label(r)) == (fam, cfg)]
            t = summarise(float(r["seconds"]) for r in sel)
            rate = summarise(float(r["mbytes_per_s"]) for r in sel)
            line.append(f"{t.text} s, {rate.mean:.1f} MB/s" if t and rate else NONE)
        out.append(line)
    head = ["modality"] + [f"{family_label(f)} {c}" for f, c in cols]
    return Table(head, out, f"Table: C-{operation.upper()} time per study (mean ± 95% "
                  "interval) and rate, by modality and configuration")


def pdu_table(records: Records) -> Table:
    rows = measured(records, "store")
    cols = _columns(rows)
    out = []
    for pdu, rs in sorted(group(rows, lambda r: int(r["pdu"])).items(),
                          key=lambda kv: kv[0] or math.inf):
        line = ["unlimited" if pdu == 0 else str(pdu)]
        for fam, cfg in cols:
            s = by_repetition(r for r in rs if (r["family"], config_label(r)) == (fam, cfg))
            line.append(f"{s.text} Mbit/s" if s else NONE)
        out.append(line)
    return Table(["max PDU"] + [f"{family_label(f)} {c}" for f, c in cols], out,
                  "Table: C-STORE throughput by maximum PDU length")


def setup_table(records: Records) -> Table:
    out = []
    for (fam, cfg), rs in sorted(group(measured(records, "store"),
                                       lambda r: (r["family"], config_label(r))).items()):
        a = summarise(float(r["setup_seconds"]) * 1000 for r in rs)
        h = summarise(float(r["handshake_seconds"]) * 1000 for r in rs
                      if float(r["handshake_seconds"]) > 0)
        out.append([family_label(fam), cfg, f"{a.text} ms" if a else NONE,
                    f"{h.text} ms" if h else "not measured"])
    return Table(["family", "configuration", "association setup", "TLS handshake / IKE setup"],
                  out, "Table: setup times per C-STORE")


def failures_table(records: Records) -> Table:
    return Table(["case", "error"], [[c, e] for c, e in failed_cases(records)],
                 "Table: cases that failed (recorded, not measured)",
                 empty="none, every case ran")


def provenance_table(records: Records, meta: dict[str, Any]) -> Table:
    """What produced the results, from their rows and from the sweep's (or run's) record
    ``meta``: the digest of the package lock the environment was installed from."""
    keys = ("host", "backend", "data_path_esp", "data_path_wan", "esp_path", "wan_path",
            "teleradlab_version", "git_revision", "python", "kernel", "pydicom", "pynetdicom",
            "cryptography")
    rows = [[k, ", ".join(sorted({str(r.get(k, "")) for r in records} - {""})) or NONE]
            for k in keys]
    rows.append(["requirements.lock sha256", str(meta.get("requirements_lock_sha256") or NONE)])
    return Table(["what", "values in these results"], rows, "Table: provenance")


def _store_summaries(records: Records) -> dict[tuple[str, str, str, str], Summary]:
    """(family, topology, WAN, security label without WAN) -> C-STORE Mbit/s."""
    out: dict[tuple[str, str, str, str], Summary] = {}
    for key, rs in group(measured(records, "store"), lambda r: (
            r["family"], r["case_topology"], r["case_wan"], config_label(r, wan=False))).items():
        s = by_repetition(rs)
        if s:
            out[key] = s
    return out


def _handshake_ms(records: Records, key: tuple[str, str, str, str]) -> float | None:
    """Mean TLS handshake or IKE setup (ms) of the C-STOREs of one configuration, if measured."""
    vals = [float(r["handshake_seconds"]) * 1000 for r in measured(records, "store")
            if (r["family"], r["case_topology"], r["case_wan"], config_label(r, wan=False)) == key
            and float(r["handshake_seconds"]) > 0]
    return sum(vals) / len(vals) if vals else None


def _store_rows(records: Records) -> dict[tuple[str, str, str, str], Records]:
    """The measured C-STORE rows of each configuration (the keys of :func:`_store_summaries`)."""
    return group(measured(records, "store"), lambda r: (
        r["family"], r["case_topology"], r["case_wan"], config_label(r, wan=False)))


def _machine(r: dict[str, Any]) -> str:
    return f"{r.get('host') or 'this host'} (kernel {r.get('kernel') or '?'})"


def mixed_paths(rows: Records, protected: Records | None = None) -> str:
    """Why the rows of one comparison are not from one machine and one data path ('' when they
    are): several hosts or kernels (a sweep spread over Dask workers), several WAN emulation
    paths (netem, userspace), or, among the ``protected`` rows, several ESP paths (kernel,
    libipsec) — each changes the numbers by itself, so a difference may be the machine's."""
    why = []
    machines = sorted({_machine(r) for r in rows})
    if len(machines) > 1:
        why.append(f"machines {', '.join(machines)}")
    wan = sorted({str(r.get("data_path_wan") or "") for r in rows} - {""})
    if len(wan) > 1:
        why.append(f"WAN paths {', '.join(wan)}")
    esp = sorted({str(r.get("data_path_esp") or "") for r in protected or []} - {""})
    if len(esp) > 1:
        why.append(f"ESP paths {', '.join(esp)}")
    return "; ".join(why)


def _mixed_note(rows: Records, protected: Records | None = None) -> str:
    why = mixed_paths(rows, protected)
    return f" Caution: this comparison mixes {why}." if why else ""


def _ci(s: Summary) -> str:
    if s.half is None:
        return f"{s.mean:.1f} Mbit/s (n=1, no interval)"
    low, high = s.mean - s.half, s.mean + s.half
    return f"{s.mean:.1f} Mbit/s (95% CI {low:.1f} to {high:.1f}, n={s.n})"


def findings(records: Records) -> list[str]:
    """Sentences, each with its numbers: fastest per family, cost of each protection, IPv6
    against IPv4, and what failed."""
    stats = _store_summaries(records)
    rows_of = _store_rows(records)
    out: list[str] = []
    machines = sorted({_machine(r) for r in measured(records, "store")})
    if len(machines) > 1:
        out.append(f"These results come from {len(machines)} machines ({', '.join(machines)}); "
                   "comparisons that mix them say so.")
    for fam in sorted({k[0] for k in stats}):
        best = max(((k, s) for k, s in stats.items() if k[0] == fam), key=lambda ks: ks[1].mean)
        (_, topo, wan, cfg), s = best
        out.append(f"{family_label(fam)}: the fastest configuration was {cfg} on {topo} "
                   f"(WAN {wan}), C-STORE at {_ci(s)}.")
    for (fam, topo, wan, cfg), s in sorted(stats.items()):
        base = stats.get((fam, topo, wan, "none"))
        if cfg == "none" or base is None:
            continue
        cost = (1 - s.mean / base.mean) * 100
        hand = _handshake_ms(records, (fam, topo, wan, cfg))
        out.append(f"{cfg} on {family_label(fam)} ({topo}, WAN {wan}) cost {cost:.0f}% of the "
                   f"C-STORE throughput: {s.mean:.1f} against {base.mean:.1f} Mbit/s without "
                   "protection" + (f", plus {hand:.1f} ms of handshake/IKE setup." if hand
                                   else ".")
                   + _mixed_note(rows_of[fam, topo, wan, cfg] + rows_of[fam, topo, wan, "none"],
                                 rows_of[fam, topo, wan, cfg]))
    v4 = {(k[2], k[3]): s for k, s in stats.items() if k[0] == "ipv4"}
    for (wan, cfg), s6 in sorted((k[2:], s) for k, s in stats.items() if k[0] == "ipv6"):
        if (wan, cfg) in v4:
            s4 = v4[wan, cfg]
            pair = [r for k, rs in rows_of.items() if k[2:] == (wan, cfg) for r in rs]
            out.append(f"IPv6 against IPv4 ({cfg}, WAN {wan}): {s6.mean:.1f} against "
                       f"{s4.mean:.1f} Mbit/s ({(s6.mean / s4.mean - 1) * 100:+.0f}%)."
                       + _mixed_note(pair, pair if cfg != "none" else None))
    protected = [k for k in stats if k[3] != "none"]
    asked = {config_label(r, wan=False) for r in records if r["case_security"] != "none"}
    if asked and not protected:
        out.append(f"No protected configuration was measured: {', '.join(sorted(asked))} "
                   "were asked for and failed (see the failed cases), so the cost of protection "
                   "cannot be stated from these results.")
    fails = failed_cases(records)
    if fails:
        out.append(f"{len(fails)} case(s) failed and are listed with their errors below.")
    if not stats:
        out.append("No C-STORE succeeded: there is nothing to compare.")
    return out
