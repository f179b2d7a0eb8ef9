"""The topology file schema: pydantic models (strict, unknown keys refused), a YAML loader that
refuses duplicate keys, and the name rules. Problems are reported as ``field.path: message``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.errors import IpsecError
from lab.model import proposals
from lab.model.dicom import TLS_PORT
from lab.model.tls_profiles import DEFAULT_PROFILE, PROFILES
from lab.model.topology import Family

#: Linux limits interface names to 15 bytes (IFNAMSIZ - 1). Node names become interface names
#: (a host's interface is named after its gateway, a gateway's bridge ports after its hosts).
IFNAME_MAX = 15
NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
SITE_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
#: Interface names the lab uses itself inside nodes.
RESERVED_NAMES = frozenset({"lo", "lan", "uplink"})

FamilyChoice = Literal["ipv4", "ipv6", "dual"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LanSpec(_Strict):
    family: FamilyChoice
    ipv4: str | None = None
    ipv6: str | None = None
    mtu: int = Field(1500, ge=68, le=65535)


class UplinkSpec(_Strict):
    """A host interface that joins the gateway to a real network (see lab.topology.attached)."""

    interface: str
    mode: Literal["macvlan", "move"] = "macvlan"
    address: str
    gateway: str
    mtu: int = Field(1500, ge=68, le=65535)


class GatewaySpec(_Strict):
    name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    uplink: UplinkSpec | None = None


class HostSpec(_Strict):
    name: str
    role: Literal["modality", "pacs", "workstation"] = "workstation"
    ipv4: str | None = None
    ipv6: str | None = None


class SiteSpec(_Strict):
    description: str = ""
    lan: LanSpec
    gateway: GatewaySpec = GatewaySpec()
    hosts: list[HostSpec] = Field(min_length=1)


#: A WAN profile as written: a preset name or a mapping of keys (checked by lab.topology.wanspec).
ProfileSpec = str | dict[str, Any] | None


class WanLinkSpec(_Strict):
    ipv4: str | None = None
    ipv6: str | None = None
    profile: ProfileSpec = None


class WanSpec(_Strict):
    family: FamilyChoice
    router: str = "wan"
    mtu: int = Field(1500, ge=68, le=65535)
    links: dict[str, WanLinkSpec] = {}
    profile: ProfileSpec = None


class RemoteSpec(_Strict):
    """A real IKE peer in place of the lab's second site (see lab.topology.attached)."""

    address: str
    identity: str = Field(min_length=1)
    local_identity: str | None = Field(None, min_length=1)
    auth: Literal["psk", "cert"] = "psk"
    psk: str | None = Field(None, min_length=8)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    remote_ts: list[str] = Field(min_length=1)


class IpsecSpec(_Strict):
    scope: Literal["site-to-site", "host-to-host"] = "site-to-site"
    auth: Literal["psk", "cert"] = "psk"
    ike: str = "aes256-sha256-modp2048"
    esp: str = "aes256gcm16"
    psk: str | None = Field(None, min_length=8)
    remote: RemoteSpec | None = None


class TlsSpec(_Strict):
    profile: str = DEFAULT_PROFILE
    port: int = Field(TLS_PORT, ge=1, le=65535)
    cipher: str | None = None


class SecuritySpec(_Strict):
    mode: Literal["none", "ipsec", "tls"] = "none"
    ipsec: IpsecSpec = IpsecSpec()
    tls: TlsSpec = TlsSpec()


class ArchiveSpec(_Strict):
    sync: Literal["none", "object"] = "none"


class TopologySpec(_Strict):
    description: str = ""
    sites: dict[str, SiteSpec]
    wan: WanSpec | None = None  # required, unless the one site is attached to a remote peer
    security: SecuritySpec = SecuritySpec()
    archive: ArchiveSpec = ArchiveSpec()


def duplicate_key_problems(
    node: yaml.Node | None, loc: tuple[int | str, ...] = (), seen: set[int] | None = None
) -> list[str]:
    """Every repeated mapping key in a composed YAML document, named by its field path (the
    constructor above only knows the line). ``seen`` guards against recursive aliases."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return []
    seen.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if (key_node.tag, key) in first:
                problems.append(
                    f"{format_path((*loc, key))}: duplicate key {key!r} at line {line} "
                    f"(first at line {first[key_node.tag, key]})"
                )
            else:
                first[key_node.tag, key] = line
            problems += duplicate_key_problems(value_node, (*loc, key), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += duplicate_key_problems(item, (*loc, i), seen)
    return problems


def format_path(loc: tuple[int | str, ...]) -> str:
    """``('sites', 'a', 'hosts', 0, 'name')`` -> ``sites.a.hosts[0].name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def pydantic_problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        value = e.get("input")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            problems.append(f"{format_path(loc)}: required key is missing")
            continue
        shown = value if not isinstance(value, Mapping | list) else type(value).__name__
        problems.append(f"{format_path(loc)}: {msg} (got {shown!r})")
    return problems


def name_problems(spec: TopologySpec) -> list[str]:
    """Site and node names: patterns, interface-name length, uniqueness, reserved words."""
    problems: list[str] = []
    remote = spec.security.ipsec.remote
    if remote is None and len(spec.sites) != 2:
        problems.append(
            f"sites: exactly two sites are needed, got {len(spec.sites)} "
            f"({', '.join(spec.sites) or 'none'})"
        )
    if remote is None and spec.wan is None:
        problems.append("wan: required key is missing (only a site attached to a remote peer, "
                        "security.ipsec.remote, has no lab WAN)")
    seen: dict[str, str] = {}
    named: list[tuple[str, str]] = [("wan.router", spec.wan.router)] if spec.wan else []
    for site, s in spec.sites.items():
        if not SITE_RE.match(site):
            problems.append(
                f"sites.{site}: site names are a lower-case letter then up to 11 "
                f"letters or digits (got {site!r})"
            )
        named.append((f"sites.{site}.gateway.name", s.gateway.name or f"gw-{site}"))
        named += [(f"sites.{site}.hosts[{i}].name", h.name) for i, h in enumerate(s.hosts)]
    for path, name in named:
        if len(name) > IFNAME_MAX:
            problems.append(
                f"{path}: {name!r} is {len(name)} characters; node names become "
                f"interface names, which Linux limits to {IFNAME_MAX}"
            )
        elif not NAME_RE.match(name):
            problems.append(
                f"{path}: {name!r} is not a valid node name (a lower-case letter, "
                f"then lower-case letters, digits or '-')"
            )
        elif name in RESERVED_NAMES:
            problems.append(f"{path}: {name!r} is reserved for the lab's own interfaces")
        if name in seen:
            problems.append(f"{path}: duplicate node name {name!r} (also {seen[name]})")
        else:
            seen[name] = path
    for key in spec.wan.links if spec.wan else {}:
        if key not in spec.sites:
            problems.append(
                f"wan.links.{key}: no site named {key!r} (sites: {', '.join(spec.sites)})"
            )
    families = {site: set(families_of(s.lan.family)) for site, s in spec.sites.items()}
    if len(families) == 2 and not set.intersection(*families.values()):
        a, b = families
        problems.append(
            f"sites.{b}.lan.family: {spec.sites[b].lan.family!r} shares no address family with "
            f"sites.{a}.lan.family {spec.sites[a].lan.family!r}; hosts of the two sites could "
            "never talk to each other, even through a tunnel"
        )
    problems += security_problems(spec.security)
    return problems


def families_of(choice: str) -> tuple[Family, ...]:
    """The families a segment's ``family: ipv4 | ipv6 | dual`` carries."""
    return (Family.IPV4, Family.IPV6) if choice == "dual" else (Family(choice),)


def security_problems(sec: SecuritySpec) -> list[str]:
    """Proposal shapes and TLS profile names (what this machine supports is checked at ``up``)."""
    problems = []
    for field, protocol in (("ike", "ike"), ("esp", "esp")):
        try:
            proposals.parse(getattr(sec.ipsec, field), protocol, f"security.ipsec.{field}")
        except IpsecError as exc:
            problems.append(str(exc))
    if sec.tls.profile not in PROFILES:
        problems.append(f"security.tls.profile: unknown profile {sec.tls.profile!r} (profiles: "
                        f"{', '.join(PROFILES)})")
    elif sec.tls.cipher is not None:
        suites = PROFILES[sec.tls.profile].tls12_ciphers
        if sec.tls.cipher not in suites:
            problems.append(f"security.tls.cipher: {sec.tls.cipher!r} is not a cipher suite of "
                            f"profile {sec.tls.profile!r} (its TLS 1.2 suites: "
                            f"{', '.join(suites)})")
    return problems
