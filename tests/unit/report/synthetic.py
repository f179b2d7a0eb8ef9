"""A realistic synthetic sweep table: what a full sweep with working IPsec, TLS and WAN profiles
would write, with known means, so the report's numbers can be checked against them."""

from __future__ import annotations

import random
from typing import Any

from lab.model.wan import parse_option
from lab.study.results import wan_columns
from lab.study.sweep.table import TABLE_COLUMNS, TYPES

FAMILIES = {"ipv4": 400.0, "ipv6": 380.0}  # unimpaired plain C-STORE, Mbit/s
SECURITY = {("none", "", ""): 1.0, ("ipsec", "aes128gcm16-ecp256", ""): 0.15,
            ("tls", "bcp195-rfc8996", "ECDHE-ECDSA-AES128-GCM-SHA256"): 0.6}
WAN_CAP = {"none": None, "dsl-20m-30ms": 18.0, "lossy-4g-20m-50ms-1pct": 2.4}
SIZES = {"CT": 5_257_000, "MR": 2_100_000}


def _blank() -> dict[str, Any]:
    return {c: {str: "", int: 0, float: 0.0, bool: False}[TYPES[c]] for c in TABLE_COLUMNS}


def _wan(wan: str) -> dict[str, Any]:
    """The row's WAN columns, as a run writes them."""
    return ({} if wan == "none" else wan_columns(parse_option(wan), "userspace"))


def records(repetitions: int = 3, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    index = 0
    for fam, base in FAMILIES.items():
        for (mode, profile, cipher), factor in SECURITY.items():
            for wan, cap in WAN_CAP.items():
                for pdu in (0, 16384):
                    for mod, size in SIZES.items():
                        index += 1
                        case = f"{fam}_{mode}_{wan}_pdu{pdu}_{mod}"
                        for rep in range(1, repetitions + 1):
                            for op in ("store", "move"):
                                mbit = base * factor * (0.9 if pdu else 1.0)
                                mbit = min(mbit, cap) if cap else mbit
                                mbit *= 1 + rng.uniform(-0.05, 0.05)
                                r = _blank()
                                r.update(
                                    sweep="synthetic", case_id=case, case_index=index,
                                    case_status="done", case_topology=fam, case_security=mode,
                                    case_profile=profile, case_cipher=cipher, case_wan=wan,
                                    case_pdu=pdu, case_modality=mod, topology=fam, family=fam,
                                    backend="netns", security=mode, operation=op, modality=mod,
                                    pdu=pdu, repetition=rep, objects=10, bytes=size,
                                    seconds=size * 8 / (mbit * 1e6),
                                    mbytes_per_s=mbit / 8, setup_seconds=0.004,
                                    handshake_seconds=0.0 if mode == "none" else 0.02,
                                    verified="yes", ok=True, security_profile=profile,
                                    # the concurrency figure gets two windows to compare
                                    window=16 if pdu == 0 else 1, associations=1,
                                    cipher=cipher, **_wan(wan),
                                    esp_path="libipsec" if mode == "ipsec" else "",
                                    lab=f"syn-{fam}", git_revision="0" * 40)
                                out.append(r)
    out.append({**_blank(), "sweep": "synthetic", "case_id": "ipv6_ipsec-3des_none_pdu0_CT",
                "case_status": "failed", "case_security": "ipsec", "case_profile": "3des-sha1",
                "case_error": "IKE negotiation failed: NO_PROPOSAL_CHOSEN", "case_wan": "none",
                "case_topology": "ipv6", "operation": "", "topology": "ipv6", "security": "ipsec",
                "detail": "IKE negotiation failed: NO_PROPOSAL_CHOSEN"})
    return out


def failed_only() -> list[dict[str, Any]]:
    return [{**_blank(), "sweep": "failing", "case_id": f"ipv4_ipsec_{i}", "case_index": i,
             "case_status": "failed", "case_security": "ipsec", "case_profile": "aes128gcm16",
             "case_wan": "dsl-20m-30ms", "case_topology": "ipv4", "topology": "ipv4",
             "case_error": "security.mode: 'ipsec' is not available in this version"}
            for i in range(3)]
