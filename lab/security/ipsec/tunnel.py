"""Bringing IPsec up in a running lab, through VICI only: firewall guards first (fail closed),
then a charon per IKE peer, credentials (``load_shared`` or ``load_cert``/``load_key``), the
connection (``load_conn``) and ``initiate`` on one side, timed; what was negotiated is read back
with ``list_sas`` and kept beside the lab's record for ``run`` to report."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from lab.backends import probes
from lab.backends.base import Lab, Progress, no_progress
from lab.errors import IpsecError, LabError
from lab.host import files
from lab.model.names import LabPaths
from lab.model.plan import Endpoint, EspPath, IpsecPlan
from lab.model.topology import IpsecAuth, IpsecScope, Probe, RemotePeer, Topology
from lab.security.ipsec.charon import VICI_SOCKET, Charon, connect, vici_error
from lab.security.ipsec.plan import CONNECTION, guard_ruleset
from lab.security.pki.authority import Credential
from lab.security.pki.lab_pki import ensure_lab_pki

INITIATE_TIMEOUT_S = 15.0
REKEY_RETRY_S = 5.0
STATE_FILE = "ipsec.json"


@dataclass(frozen=True)
class Credentials:
    """What each IKE peer authenticates with: its pre-shared key, or its key pair and the CA
    certificate it trusts. Tests pass their own to prove that wrong ones fail."""

    psk: dict[str, str] = field(default_factory=dict)
    certs: dict[str, Credential] = field(default_factory=dict)
    trusted: Path | None = None


class IpsecState(BaseModel):
    """What came up, beside the plan (which says what was asked, where and how): recorded in
    ``/run/teleradlab/labs/LAB/ipsec.json`` (this model is its one schema, for the writer and
    every reader) and in result rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ike_algorithms: str  # as negotiated, strongSwan's names joined by '/'
    esp_algorithms: str
    setup_seconds: float  # VICI initiate: IKE_SA_INIT + IKE_AUTH with the first CHILD_SA


def lab_credentials(lab: Lab, plan: IpsecPlan) -> Credentials:
    """The lab's own: one random PSK per lab (unless the topology sets one), or certificates
    for the two IKE peers from the lab CA, naming the peer and its IKE address."""
    topology, paths = lab.topology, lab.paths
    if topology.remote is not None:
        return remote_credentials(topology.remote, plan)
    pki = ensure_lab_pki(paths, topology)
    if plan.auth is IpsecAuth.PSK:
        key = topology.security.ipsec.psk or _lab_psk(paths.data_dir / "pki" / "ipsec.psk")
        return Credentials(psk={e.node: key for e in plan.endpoints})
    certs = {}
    for end in plan.endpoints:
        cert_name = f"ike-{end.node}"
        d = paths.data_dir / "pki"
        if (d / f"{cert_name}.crt").exists():
            certs[end.node] = Credential(cert_name, d / f"{cert_name}.key", d / f"{cert_name}.crt")
        else:
            certs[end.node] = pki.ca.issue(cert_name, dns=[end.identity], ips=[str(end.address)],
                                           usages={"ipsec"})
    return Credentials(certs=certs, trusted=pki.ca_cert)


def remote_credentials(remote: RemotePeer, plan: IpsecPlan) -> Credentials:
    """What the lab's gateway shows a real remote peer: the key the remote has, or the
    gateway's certificate and key and the CA that signed the remote's, all from the topology."""
    me = plan.initiator.node
    if remote.auth is IpsecAuth.PSK:
        assert remote.psk is not None  # the topology's checks require it
        return Credentials(psk={me: remote.psk})
    assert remote.cert is not None and remote.key is not None and remote.ca is not None
    return Credentials(certs={me: Credential(f"ike-{me}", Path(remote.key), Path(remote.cert))},
                       trusted=Path(remote.ca))


def _lab_psk(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def conn_config(plan: IpsecPlan, me: Endpoint, creds: Credentials) -> dict[str, Any]:
    """The VICI ``load_conn`` message for ``me`` (strongSwan's swanctl.conf connection keys).
    Host to host uses transport mode (RFC 4301 4.1) with kernel ESP; kernel-libipsec can only
    do tunnel mode, so there it is tunnel mode with the two hosts as selectors."""
    peer = plan.peer(me.node)
    transport = plan.scope is IpsecScope.HOST_TO_HOST and plan.esp_path is EspPath.KERNEL
    local: dict[str, Any] = {"id": me.identity}
    remote: dict[str, Any] = {"id": peer.identity}
    if plan.auth is IpsecAuth.PSK:
        local["auth"] = remote["auth"] = "psk"
    else:
        local["auth"] = remote["auth"] = "pubkey"
        local["certs"] = [creds.certs[me.node].cert_path.read_bytes()]
        if creds.trusted is not None:
            remote["cacerts"] = [creds.trusted.read_bytes()]
    child = {
        "local_ts": [str(n) for n in me.selectors],
        "remote_ts": [str(n) for n in peer.selectors],
        "esp_proposals": [plan.esp.text],
        "mode": "transport" if transport else "tunnel",
        "start_action": "none",
        "dpd_action": "none",
    }
    return {CONNECTION: {
        "version": "2",
        "local_addrs": [str(me.address)],
        "remote_addrs": [str(peer.address)],
        "proposals": [plan.ike.text],
        "encap": "yes",
        "keyingtries": "1",
        "local": local,
        "remote": remote,
        "children": {CONNECTION: child},
    }}


def _load(charon: Charon, plan: IpsecPlan, me: Endpoint, creds: Credentials) -> None:
    """Credentials and the connection into ``charon``, through VICI."""
    session = charon.session()
    try:
        if plan.auth is IpsecAuth.PSK:
            owners = [e.identity for e in plan.endpoints]
            session.load_shared({"id": "lab-psk", "type": "IKE", "data": creds.psk[me.node],
                                 "owners": owners})
        else:
            if creds.trusted is not None:
                session.load_cert({"type": "X509", "flag": "CA",
                                   "data": creds.trusted.read_bytes()})
            session.load_key({"type": "any", "data": creds.certs[me.node].key_path.read_bytes()})
        session.load_conn(conn_config(plan, me, creds))
    except Exception as exc:  # vici raises its own exception types
        raise IpsecError(f"charon on {me.node} refused the configuration: {vici_error(exc)}\n"
                         f"{charon.log_tail()}") from None


def install_guards(lab: Lab, plan: IpsecPlan) -> None:
    for end in plan.local_endpoints:
        lab.exec(end.node, ["nft", "-f", "-"], input=guard_ruleset(plan, end.node))


def planned(lab: Lab) -> IpsecPlan:
    """The lab's IPsec plan; LabError if its security plan has none."""
    if lab.plan.ipsec is None:
        raise LabError(f"lab {lab.name} runs no IPsec (security {lab.plan.label})")
    return lab.plan.ipsec


def establish(lab: Lab, *, credentials: Credentials | None = None,
              progress: Progress = no_progress) -> IpsecState:
    """Guards, daemons, credentials, connection, initiate, as the lab's plan says; IpsecError
    with both daemons' logs if the SAs do not come up within INITIATE_TIMEOUT_S (the guards
    stay: nothing crosses)."""
    plan = planned(lab)
    local = plan.local_endpoints
    progress(f"IPsec: guards against cleartext, charon in {' and '.join(e.node for e in local)}"
             f" ({plan.esp_path.value} ESP)")
    install_guards(lab, plan)
    creds = credentials or lab_credentials(lab, plan)
    daemons = {e.node: Charon(lab, e.node) for e in local}
    for end in local:
        daemons[end.node].start()
        _load(daemons[end.node], plan, end, creds)
    progress(f"IPsec: IKEv2 {plan.initiator.node} -> {_peer_name(plan.responder)} "
             f"(ike {plan.ike.text}, esp {plan.esp.text}, {plan.auth.value})")
    start = time.monotonic()
    _initiate(daemons, plan)
    seconds = time.monotonic() - start
    ike, esp = negotiated(daemons[plan.initiator.node].session())
    state = IpsecState(ike_algorithms=ike, esp_algorithms=esp, setup_seconds=round(seconds, 6))
    _write_state(lab.paths, state)
    return state


def _peer_name(end: Endpoint) -> str:
    return end.node if end.local else f"remote gateway {end.identity} at {end.address}"


def _initiate(daemons: dict[str, Charon], plan: IpsecPlan) -> None:
    session = daemons[plan.initiator.node].session()
    messages: list[str] = []
    try:
        for log in session.initiate({"child": CONNECTION, "ike": CONNECTION,
                                     "timeout": str(int(INITIATE_TIMEOUT_S * 1000))}):
            if isinstance(log, dict) and "msg" in log:
                messages.append(_text(log["msg"]))
    except Exception as exc:  # vici raises its own exception types
        logs = "\n".join(f"--- charon on {node} ({d.log}):\n{d.log_tail(15)}"
                         for node, d in daemons.items())
        raise IpsecError(
            f"IPsec did not come up between {plan.initiator.node} and "
            f"{_peer_name(plan.responder)} "
            f"({vici_error(exc)}); no traffic crosses between them unprotected.\n{logs}"
        ) from None


def restart_daemon(lab: Lab, node: str, *, credentials: Credentials | None = None) -> None:
    """After the charon of ``node`` stopped: a fresh one there, its configuration loaded again,
    the peer's stale SAs deleted (forced: the new daemon knows none of them, RFC 7296 1.4.1
    would go unanswered) and the SAs initiated again from the initiator, as at ``up``. The
    guards stayed in place all along, so nothing crossed in cleartext meanwhile."""
    plan = planned(lab)
    end = next((e for e in plan.endpoints if e.node == node), None)
    if end is None:
        raise IpsecError(f"{node} runs no IKE daemon in lab {lab.name} (IKE peers: "
                         f"{', '.join(e.node for e in plan.endpoints)})")
    charon = Charon(lab, node)
    charon.start()
    _load(charon, plan, end, credentials or lab_credentials(lab, plan))
    peer = connect(Charon(lab, plan.peer(node).node).vici_path)
    # vici raises its own exception types; here only "no matching SAs": nothing left to delete
    with contextlib.suppress(Exception):
        for _ in peer.terminate({"ike": CONNECTION, "force": "yes", "timeout": "-1"}):
            pass
    _initiate({e.node: Charon(lab, e.node) for e in plan.endpoints}, plan)


def rekey(lab: Lab, node: str, sa: str) -> None:
    """Ask ``node``'s charon to rekey the ``sa`` (``ike``: without reauthentication, or
    ``child``) through VICI ``rekey`` (RFC 7296 2.8): new keys and SPIs, the traffic carried
    on meanwhile. While an earlier exchange is still finishing charon may find no SA of that
    name to rekey for a moment: asked again for up to REKEY_RETRY_S."""
    request = {"ike": CONNECTION, "reauth": "no"} if sa == "ike" else {"child": CONNECTION}
    deadline = time.monotonic() + REKEY_RETRY_S
    while True:
        try:
            connect(Charon(lab, node).vici_path).rekey(request)
            return
        except Exception as exc:  # vici raises its own exception types
            if "no matching" not in vici_error(exc) or time.monotonic() > deadline:
                raise IpsecError(f"charon on {node} refused to rekey the {sa} SA: "
                                 f"{vici_error(exc)}") from None
        time.sleep(0.1)


def sa_ids(lab: Lab, node: str) -> tuple[str, str] | None:
    """(IKE SA SPIs, inbound SPI of the installed CHILD_SA) as ``node``'s charon lists them
    (VICI ``list-sas``), or None while it has no established IKE SA with an installed CHILD_SA:
    a rekey (RFC 7296 2.8) changes both."""
    session = connect(Charon(lab, node).vici_path, timeout=5.0)
    for ike in _sas(session):
        if _text(ike.get("state", b"")) != "ESTABLISHED":
            continue
        for child in ike.get("child-sas", {}).values():
            if _text(child.get("state", b"")) == "INSTALLED":
                spis = (_text(ike.get("initiator-spi", b"")) + "_"
                        + _text(ike.get("responder-spi", b"")))
                return spis, _text(child.get("spi-in", b""))
    return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _algs(sa: dict[str, Any]) -> str:
    parts = []
    enc = sa.get("encr-alg")
    if enc is not None:
        size = sa.get("encr-keysize")
        parts.append(_text(enc) + (f"-{_text(size)}" if size is not None else ""))
    for key in ("integ-alg", "prf-alg", "dh-group"):
        if key in sa:
            parts.append(_text(sa[key]))
    return "/".join(parts)


def _sas(session: Any) -> list[dict[str, Any]]:
    found = []
    for entry in session.list_sas({"ike": CONNECTION}):
        if CONNECTION in entry:
            found.append(entry[CONNECTION])
    return found


def negotiated(session: Any) -> tuple[str, str]:
    """The IKE and ESP algorithms of the established SAs, as strongSwan names them."""
    for ike in _sas(session):
        for child in ike.get("child-sas", {}).values():
            if _text(child.get("state", b"")) == "INSTALLED":
                return _algs(ike), _algs(child)
    raise IpsecError("charon reports no installed CHILD_SA after initiate")


def sa_bytes(lab: Lab) -> int:
    """ESP bytes (in + out) counted by the initiator's CHILD_SAs so far; 0 without IPsec."""
    if lab.plan.ipsec is None:
        return 0
    session = connect(lab.paths.node_run(lab.plan.ipsec.initiator.node) / VICI_SOCKET)
    total = 0
    for ike in _sas(session):
        for child in ike.get("child-sas", {}).values():
            for key in ("bytes-in", "bytes-out"):
                total += int(_text(child.get(key, b"0")))
    return total


def _write_state(paths: LabPaths, state: IpsecState) -> None:
    files.write_json(paths.state_dir / STATE_FILE, state)


def read_state(paths: LabPaths) -> IpsecState | None:
    """What came up in the lab of ``paths``; None before IPsec is up (or without it)."""
    target = paths.state_dir / STATE_FILE
    if not target.exists():
        return None
    try:
        return IpsecState.model_validate_json(target.read_text(encoding="utf-8"))
    except (ValueError, ValidationError) as exc:
        raise LabError(f"{target} is damaged: {exc}") from None


def tunnel_probes(topology: Topology, plan: IpsecPlan) -> list[Probe]:
    """Pings that must pass through the tunnel: between the two sides' hosts, per inner family
    (for site-to-site every host pair across the sites, for host-to-host the two hosts). None
    towards a real remote peer: what answers pings behind it is not the lab's to know."""
    if plan.remote is not None:
        return []
    if plan.scope is IpsecScope.HOST_TO_HOST:
        a, b = (topology.node(e.node) for e in plan.endpoints)
        pairs = [(a, b)]
    else:
        first, second = ([topology.node(h) for h in s.hosts] for s in topology.sites)
        pairs = [(x, y) for x in first for y in second]
    out = []
    for family in plan.inner_families:
        for src, dst in pairs:
            for addr in dst.addresses(family):
                if src.addresses(family):
                    out.append(Probe(src.name, dst.name, addr.ip))
    return out


def hidden_by_tunnel(topology: Topology, plan: IpsecPlan, probe: Probe) -> bool:
    """Probes a site-to-site tunnel makes impossible: from a host of one site to an address of
    the far gateway outside its selectors (its WAN address). The far gateway routes its reply
    into the tunnel, whose selectors do not cover that source, so the reply is rightly dropped."""
    if plan.scope is not IpsecScope.SITE_TO_SITE:
        return False
    for end in plan.local_endpoints:
        far = plan.peer(end.node)
        site_hosts = next(s.hosts for s in topology.sites if s.gateway == end.node)
        if (probe.source in site_hosts and probe.destination == far.node
                and not any(probe.target in net for net in far.selectors)):
            return True
    return False


def check_tunnel(lab: Lab, progress: Progress = no_progress) -> list[probes.ProbeResult]:
    """Ping across the tunnel (:func:`tunnel_probes`); IpsecError naming each silent pair."""
    todo = tunnel_probes(lab.topology, planned(lab))
    progress(f"IPsec: {len(todo)} pings through the tunnel")
    results = probes.run_probes(lab, todo)
    failed = [r for r in results if not r.ok]
    if failed:
        raise IpsecError("the SAs are up but these pings through the tunnel got no reply: "
                         + "; ".join(f"{r.probe.source} -> {r.probe.target}" for r in failed))
    return results


