"""The report's data: a sweep's (or a run's) results table read back into typed records, grouped
into configurations, and summarised as means with 95% confidence intervals.

Both tables share lab.study.results.Row's columns; a sweep's adds the requested configuration
(``case_*``) and provenance. A run folder's table is read as one sweep whose cases all succeeded.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lab.errors import LabError
from lab.study.results import read_csv
from lab.study.sweep.table import TYPES

T = TypeVar("T")

#: The confidence level of every interval in the report.
CONFIDENCE = 0.95


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (scipy.stats;
    imported here so that commands which compute no interval do not load scipy)."""
    from scipy import stats

    return float(stats.t.ppf((1 + CONFIDENCE) / 2, df))


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` values with the half-width of its 95% interval (None when n < 2)."""

    n: int
    mean: float
    half: float | None

    @property
    def text(self) -> str:
        return f"{self.mean:.3g}" + (f" ± {self.half:.2g}" if self.half is not None else "")


def summarise(values: Iterable[float]) -> Summary | None:
    """Mean and Student's t 95% interval (scipy.stats: the t quantile times the standard
    error of the mean, sample standard deviation over the square root of n)."""
    from scipy import stats

    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return None
    if len(vals) < 2:
        return Summary(1, vals[0], None)
    half = t95(len(vals) - 1) * float(stats.sem(vals))
    return Summary(len(vals), statistics.fmean(vals), half)


def _cast(column: str, value: str) -> Any:
    kind = TYPES.get(column, str)
    if kind is bool:
        return value == "True"
    if kind is str:
        return value
    try:
        return kind(value) if value != "" else (math.nan if kind is float else 0)
    except ValueError:
        return math.nan if kind is float else 0


def _fill_case(rec: dict[str, Any]) -> dict[str, Any]:
    """A run's row seen as a case: its requested configuration is what it ran with."""
    rec.setdefault("case_status", "done")
    rec.setdefault("case_error", "")
    rec.setdefault("case_id", f"{rec.get('topology', '')}-run")
    rec.setdefault("case_topology", rec.get("topology", ""))
    rec.setdefault("case_security", rec.get("security", "none"))
    rec.setdefault("case_profile", rec.get("security_profile", ""))
    rec.setdefault("case_cipher", rec.get("cipher", ""))
    rec.setdefault("case_wan", rec.get("wan_profile") or "none")
    return rec


def load(folder: Path) -> list[dict[str, Any]]:
    path = folder / "results.csv"
    if not path.exists():
        raise LabError(f"{folder}: no results.csv (run 'teleradlab sweep' or 'teleradlab run' "
                       "with --out there first)")
    return [_fill_case({k: _cast(k, v) for k, v in row.items()}) for row in read_csv(path)]


def config_label(rec: dict[str, Any], wan: bool = True, objects: bool = True,
                 fault: bool = True) -> str:
    """'none', 'ipsec aes128gcm16-ecp256', 'tls bcp195-rfc8996 ECDHE-...', plus '@ WAN', plus
    '+ sign' (or deid, sign+deid) when the objects were protected too, plus '! FAULT' when a
    fault was injected (lab.study.faults), so that runs with and without object security or
    a fault are never pooled."""
    parts = [rec["case_security"], rec["case_profile"], rec["case_cipher"]]
    label = " ".join(p for p in parts if p)
    if wan and rec["case_wan"] not in ("", "none"):
        label += f" @ {rec['case_wan']}"
    if objects and rec.get("object_security") not in (None, "", "none"):
        label += f" + {rec['object_security']}"
    if fault and rec.get("fault"):
        label += f" ! {rec['fault']}"
    return label


def family_label(family: str) -> str:
    return {"ipv4": "IPv4", "ipv6": "IPv6"}.get(family, family or "?")


def measured(records: list[dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    """Successful rows of ``operation`` that moved data (or, for echo/find, took time)."""
    return [r for r in records if r["operation"] == operation and r["ok"]
            and r["case_status"] == "done" and not math.isnan(r["seconds"])]


def group(records: Iterable[T], key: Callable[[T], Any]) -> dict[Any, list[T]]:
    out: dict[Any, list[T]] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def failed_cases(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(case id, error) of every case that failed, once each, in table order."""
    seen: dict[str, str] = {}
    for r in records:
        if r["case_status"] == "failed":
            seen.setdefault(r["case_id"], " ".join(str(r["case_error"]).split()))
    return list(seen.items())


def throughput_mbit(rec: dict[str, Any]) -> float:
    return float(rec["mbytes_per_s"]) * 8.0


def by_repetition(rows: Iterable[dict[str, Any]]) -> Summary | None:
    """Throughput (Mbit/s) of a configuration: per repetition, all its bytes over all its
    seconds (every modality and PDU size of that repetition together), then the mean and 95%
    interval over repetitions, so that the spread is the repetitions' and not the modalities'."""
    reps = group(rows, lambda r: int(r["repetition"]))
    values = [sum(float(r["bytes"]) for r in rs) * 8 / 1e6 / sum(float(r["seconds"]) for r in rs)
              for rs in reps.values() if sum(float(r["seconds"]) for r in rs) > 0]
    return summarise(values)
