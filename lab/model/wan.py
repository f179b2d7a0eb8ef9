"""WAN profiles: the named presets, the ``key: value`` form of topology files and of ``--wan``,
composition of per-link profiles into the two directions of the path, and the default queue limit.

Keys (every one optional; values as tc writes them, or bare numbers in the unit shown):

    delay: 30ms          one-way delay (RTT = 2 x delay); bare number = ms
    jitter: 2ms          uniform +- around the delay (packets are never reordered by jitter)
    loss: 1%             random loss; bare number = percent
    loss_correlation: 25%  lag-1 correlation of losses (long-run loss stays ``loss``)
    rate: 20mbit         bottleneck rate (kbit, mbit, gbit); bare number = Mbit/s; 0 = none
    reorder: 1%          packets sent at once, ahead of delayed ones (as netem's reorder)
    duplicate: 1%        packets sent twice
    corrupt: 0.1%        packets with one random bit flipped
    limit: 1000          packets the emulated link holds (default: from rate x delay, see below)
    preset: NAME         start from a preset and change some keys
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from lab.errors import LabError
from lab.model.topology import Wan, WanProfile

#: Named presets: (description, profile). Names say rate, one-way delay and loss.
PRESETS: dict[str, tuple[str, WanProfile]] = {
    "lan-1g": ("campus LAN, 1 Gbit/s", WanProfile(rate_mbit=1000)),
    "metro-100m-5ms": ("metropolitan fibre", WanProfile(delay_ms=5, rate_mbit=100)),
    "dsl-20m-30ms": ("DSL to a small practice", WanProfile(delay_ms=30, rate_mbit=20)),
    "transcontinental-100m-80ms": (
        "across a continent", WanProfile(delay_ms=80, rate_mbit=100)),
    "satellite-10m-300ms": ("geostationary satellite", WanProfile(delay_ms=300, rate_mbit=10)),
    "lossy-4g-20m-50ms-1pct": (
        "mobile 4G, 1% loss, 5 ms jitter",
        WanProfile(delay_ms=50, jitter_ms=5, loss_pct=1, rate_mbit=20)),
}

#: The smallest default queue (netem's own default limit) and the largest, in packets.
MIN_LIMIT = 1000
MAX_LIMIT = 65536
#: Rate assumed when sizing the queue of a link without a rate (Mbit/s).
SIZING_RATE_MBIT = 1000.0
#: Packet size assumed when sizing queues (bytes).
SIZING_PACKET = 1500

_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*$", re.IGNORECASE)
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(bit|kbit|mbit|gbit)?\s*$", re.IGNORECASE)
_PCT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%)?\s*$")
_TIME_SCALE = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_RATE_SCALE = {"bit": 1e-6, "kbit": 1e-3, "mbit": 1.0, "gbit": 1000.0}


class ProfileError(LabError):
    """A WAN profile is malformed; ``problems`` are ``field.path: message (got value)`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid WAN profile:\n" + "\n".join(f"  {p}" for p in self.problems))


def _number(value: Any, pattern: re.Pattern[str], scale: Mapping[str, float], unit: str) -> float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        return float(value)
    m = pattern.match(str(value))
    if not m:
        raise ValueError
    return float(m.group(1)) * scale[(m.group(2) or unit).lower()]


def _time(v: Any) -> float:
    return _number(v, _TIME, _TIME_SCALE, "ms")


def _rate(v: Any) -> float:
    return _number(v, _RATE, _RATE_SCALE, "mbit")


def _pct(v: Any) -> float:
    x = _number(v, _PCT, {"%": 1.0}, "%")
    if x > 100:
        raise ValueError
    return x


def _limit(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).isdigit():
        raise ValueError
    n = int(v)
    if not 1 <= n <= MAX_LIMIT:
        raise ValueError
    return n


#: key -> (WanProfile field, parser, what a good value looks like)
KEYS: dict[str, tuple[str, Any, str]] = {
    "delay": ("delay_ms", _time, "a time such as 30ms"),
    "jitter": ("jitter_ms", _time, "a time such as 2ms"),
    "loss": ("loss_pct", _pct, "a percentage such as 1%"),
    "loss_correlation": ("loss_corr_pct", _pct, "a percentage such as 25%"),
    "rate": ("rate_mbit", _rate, "a rate such as 20mbit (0: unlimited)"),
    "reorder": ("reorder_pct", _pct, "a percentage such as 1%"),
    "duplicate": ("duplicate_pct", _pct, "a percentage such as 1%"),
    "corrupt": ("corrupt_pct", _pct, "a percentage such as 0.1%"),
    "limit": ("limit", _limit, f"a whole number of packets, 1 to {MAX_LIMIT}"),
}


def preset(name: str, path: str = "preset") -> WanProfile:
    if name not in PRESETS:
        raise ProfileError([f"{path}: unknown preset {name!r} (presets: {', '.join(PRESETS)})"])
    return PRESETS[name][1]


def parse_profile(value: Any, path: str) -> WanProfile:
    """A profile from a preset name or a mapping of keys; ProfileError names ``path`` and value."""
    if isinstance(value, str):
        return preset(value, path)
    if not isinstance(value, Mapping):
        raise ProfileError([f"{path}: expected a preset name or a mapping of keys "
                            f"(got {type(value).__name__})"])
    problems: list[str] = []
    base = WanProfile()
    if "preset" in value:
        try:
            base = preset(str(value["preset"]), f"{path}.preset")
        except ProfileError as exc:
            problems += exc.problems
    changes: dict[str, Any] = {}
    for key, raw in value.items():
        if key == "preset":
            continue
        if key not in KEYS:
            problems.append(f"{path}.{key}: unknown key (keys: preset, {', '.join(KEYS)})")
            continue
        attr, parse, good = KEYS[key]
        try:
            changes[attr] = parse(raw)
        except ValueError:
            problems.append(f"{path}.{key}: expected {good} (got {raw!r})")
    if problems:
        raise ProfileError(problems)
    return replace(base, **changes)


def parse_link(value: Any, path: str) -> tuple[WanProfile, WanProfile]:
    """A link's profile: the same both ways, or ``{up: ..., down: ...}`` (up: from the site into
    the WAN). Returns (up, down)."""
    if isinstance(value, Mapping) and set(value) & {"up", "down"}:
        extra = sorted(set(value) - {"up", "down"})
        if extra:
            raise ProfileError([f"{path}.{extra[0]}: unknown key next to up/down "
                                "(a per-direction profile has only up and down)"])
        problems: list[str] = []
        out = []
        for key in ("up", "down"):
            try:
                out.append(parse_profile(value.get(key, {}), f"{path}.{key}"))
            except ProfileError as exc:
                problems += exc.problems
        if problems:
            raise ProfileError(problems)
        return out[0], out[1]
    p = parse_profile(value, path)
    return p, p


def parse_option(text: str) -> Wan:
    """``--wan``: a preset name, ``none``, or ``key=value,...`` (the same keys as the file)."""
    text = text.strip()
    if text in ("none", ""):
        return Wan()
    if "=" not in text:
        p = preset(text, "--wan")
        return Wan(text, p, p)
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise ProfileError([f"--wan: expected key=value, got {bad[0]!r}"])
    p = parse_profile({k.strip(): v.strip() for k, v in pairs}, "--wan")
    return Wan(text, p, p)


def parse_measured(doc: Any, source: str) -> Wan:
    """The WAN profile ``teleradlab probe`` measured (its JSON document's ``wan``: the keys of
    this module, e.g. delay and jitter), for ``--wan @probe.json``. The profile is named as
    ``--wan`` would write it (``delay=12.5ms,jitter=0.3ms``), so that a results row's WAN can
    be parsed again without the file (:mod:`lab.report.bounds`). ProfileError names
    ``source`` when the document holds no profile (the probe did not reach its peer)."""
    wan = doc.get("wan") if isinstance(doc, Mapping) else None
    if not isinstance(wan, Mapping) or not wan:
        raise ProfileError([f"{source}: wan: no measured WAN profile in it (a probe writes one "
                            "when it reached the peer)"])
    p = parse_profile(dict(wan), f"{source}: wan")
    return Wan(",".join(f"{k}={v}" for k, v in wan.items()), p, p)


def compose(parts: Sequence[WanProfile]) -> WanProfile:
    """One direction of the path through several impaired links: delays and jitters add, the
    slowest rate and the smallest explicit limit rule, probabilities combine as independent."""

    def either(pcts: list[float]) -> float:
        return round(100 * (1 - math.prod(1 - p / 100 for p in pcts)), 6)

    rates = [p.rate_mbit for p in parts if p.rate_mbit > 0]
    limits = [p.limit for p in parts if p.limit > 0]
    return WanProfile(
        delay_ms=sum(p.delay_ms for p in parts),
        jitter_ms=sum(p.jitter_ms for p in parts),
        loss_pct=either([p.loss_pct for p in parts]),
        loss_corr_pct=max((p.loss_corr_pct for p in parts), default=0.0),
        rate_mbit=min(rates, default=0.0),
        reorder_pct=either([p.reorder_pct for p in parts]),
        duplicate_pct=either([p.duplicate_pct for p in parts]),
        corrupt_pct=either([p.corrupt_pct for p in parts]),
        limit=min(limits, default=0),
    )


def queue_limit(p: WanProfile) -> int:
    """Packets the link may hold: the explicit limit, else twice the bandwidth-delay product
    (rate x (delay + jitter), at 1 Gbit/s when no rate is set) in 1500-byte packets, at least
    netem's default of 1000 — the sizing CORE applies to netem's limit."""
    if p.limit:
        return p.limit
    rate = p.rate_mbit or SIZING_RATE_MBIT
    bdp = rate * 1e6 * (p.delay_ms + p.jitter_ms) / 1000 / 8 / SIZING_PACKET
    return int(min(MAX_LIMIT, max(MIN_LIMIT, math.ceil(2 * bdp))))


def describe(p: WanProfile) -> str:
    """``delay 30ms, rate 20mbit`` (only what is set), or ``unimpaired``."""
    parts = []
    for key, (attr, _, _) in KEYS.items():
        v = getattr(p, attr)
        if not v:
            continue
        unit = {"delay": "ms", "jitter": "ms", "rate": "mbit", "limit": ""}.get(key, "%")
        parts.append(f"{key} {v:g}{unit}")
    return ", ".join(parts) or "unimpaired"


def as_dict(wan: Wan) -> dict[str, Any]:
    return {"name": wan.name,
            **{d: {f.name: getattr(getattr(wan, d), f.name) for f in fields(WanProfile)}
               for d in ("forward", "reverse")}}


def from_dict(doc: Mapping[str, Any]) -> Wan:
    return Wan(str(doc.get("name", "")), WanProfile(**doc["forward"]),
               WanProfile(**doc["reverse"]))
