"""The ``wan.profile`` and ``wan.links.SITE.profile`` keys of a topology file, turned into the
model's :class:`~lab.model.topology.Wan` (one profile per direction of the site-to-site path).

A packet from the first site to the second crosses the WAN-wide profile, the first site's link
upwards (into the WAN) and the second site's link downwards; lab.model.wan.compose adds them.
"""

from __future__ import annotations

from lab.model.topology import Wan, WanProfile
from lab.model.wan import ProfileError, compose, parse_link, parse_profile
from lab.topology.schema import TopologySpec


def wan_of(spec: TopologySpec) -> tuple[Wan, list[str]]:
    """The WAN impairments a spec asks for, and the problems found (field path and value)."""
    problems: list[str] = []
    whole = WanProfile()
    name = ""
    if spec.wan is None:  # a site attached to a real network: no lab WAN to impair
        return Wan(), problems
    if spec.wan.profile is not None:
        try:
            whole = parse_profile(spec.wan.profile, "wan.profile")
        except ProfileError as exc:
            problems += exc.problems
        name = spec.wan.profile if isinstance(spec.wan.profile, str) else "custom"
    links: dict[str, tuple[WanProfile, WanProfile]] = {}
    for site, link in spec.wan.links.items():
        if link.profile is None:
            continue
        try:
            links[site] = parse_link(link.profile, f"wan.links.{site}.profile")
        except ProfileError as exc:
            problems += exc.problems
    if problems:
        return Wan(), problems
    if links:
        name = "custom"
    first, second = list(spec.sites)[:2]
    none = (WanProfile(), WanProfile())
    up_a, down_a = links.get(first, none)
    up_b, down_b = links.get(second, none)
    wan = Wan(name, compose([whole, up_a, down_b]), compose([whole, up_b, down_a]))
    return (wan if wan.impaired else Wan()), []
