"""The report's view of object security (PS3.15 Annexes C, D, E) beside the channel's (IPsec,
DICOM TLS): what each object step cost per study in the results, and which threats each
measure covers.

The cost table reads the result rows' ``*_seconds`` columns (lab.study.results.Row): the sending
site's signing and de-identification on each C-STORE row, the receiving sites' verification and
re-identification on the C-STORE and C-MOVE rows, the courier's export and import on its own
rows; each as mean ± 95% interval (Student's t, :func:`lab.report.data.summarise`) per study,
and as a share of the network transfer it accompanies.

The threat table is data, not measured: it states what each mechanism is designed to protect
(RFC 4301/4303 for ESP, RFC 8446 and PS3.15 B.1 for TLS, PS3.15 C for signatures, E for
attribute confidentiality, D for secure media), so that a reader can set a cost against a cover.
"""

from __future__ import annotations

from typing import Any

from lab.report.data import config_label, group, summarise
from lab.report.findings import NONE, Table

Records = list[dict[str, Any]]

#: Step columns of the cost table: (result column, heading).
STEPS = (("sign_seconds", "sign (sender)"), ("deid_seconds", "de-identify (sender)"),
         ("verify_seconds", "verify (receiver)"), ("reid_seconds", "re-identify (PACS site)"),
         ("export_seconds", "export (courier)"), ("import_seconds", "import (courier)"))

#: The measures the threat table compares, in its column order.
MEASURES = ("IPsec (site to site)", "DICOM TLS", "sign", "deid", "secure media (courier)")

#: Threat -> one cell per measure. 'yes' covers it, 'no' does not, anything else says how far.
THREATS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("eavesdropping on the WAN", (
        "yes (ESP encrypts between the gateways)", "yes (end to end)", "no",
        "identities only (pixels and other attributes travel readable)",
        "yes (no WAN crossed; the files are encrypted to the recipient)")),
    ("tampering in transit", (
        "yes (ESP integrity, RFC 4303)", "yes (every record authenticated)",
        "detected per object and element at the receiver",
        "no (AES-CBC envelope without integrity)", "detected (SignedData), file refused")),
    ("tampering at rest, in the archive or a relay", (
        "no (protection ends at the gateway)", "no (protection ends at the PACS)",
        "detected by every later reader (after C-MOVE too)", "no",
        "detected until import, then as stored")),
    ("relay or PACS operator reading identities", (
        "no (clear on the LANs and in the archive)", "no (the PACS decrypts)", "no",
        "yes, for whoever lacks the receiving site's key", "no (the importer decrypts)")),
    ("disclosure on lost media", (
        "no (not a medium)", "no (not a medium)", "no", "identities only",
        "yes (only the named recipient decrypts)")),
    ("repudiation by the sender", (
        "no (gateways authenticated, not content)", "no (nothing kept after the session)",
        "yes (the signature and certificate stay in the object)", "no",
        "until import (SignedData on the medium)")),
    ("a forged sending site", (
        "yes (IKE authentication)", "yes (certificates, mutual when asked)",
        "yes (certificate chain to the lab CA)", "no", "yes (signer's chain checked)")),
)


def threats_table() -> Table:
    """Which threat each measure covers: channel security vs object security."""
    return Table(["threat", *MEASURES], [[name, *cells] for name, cells in THREATS],
                 "Table: threats covered by channel security (IPsec, TLS) and object security "
                 "(PS3.15 signatures, de-identification, secure media); design, not measured")


def _mean(rows: Records, column: str) -> str:
    s = summarise(float(r.get(column) or 0.0) for r in rows)
    return f"{s.text} s" if s and s.mean > 0 else NONE


def _share(rows: Records) -> str:
    """The object steps' time as a share of the transfer's own (courier: of nothing: '-')."""
    steps = sum(float(r.get(c) or 0.0) for r in rows for c, _ in STEPS)
    transfer = sum(float(r["seconds"]) for r in rows if r["operation"] != "courier")
    return f"{100 * steps / transfer:.0f}%" if steps and transfer else NONE


#: The label of courier rows: they cross no network, so the lab's transport does not apply.
COURIER = "secure media (courier)"


def cost_table(records: Records) -> Table:
    """Per transport configuration and object security (the plain runs of the same results as
    the baseline, the courier pooled whatever lab carried it): the C-STORE, C-MOVE and courier
    time per study and each object step's, mean ± 95% interval, and the steps' share."""
    rows = [r for r in records if r.get("ok") and r["operation"] in ("store", "move", "courier")]
    if not any(r["operation"] == "courier" or r.get("object_security") not in (None, "", "none")
               for r in rows):
        rows = []
    order = {mode: i for i, mode in enumerate(("none", "sign", "deid", "sign+deid"))}
    keyed = group(rows, lambda r: (
        r["operation"] == "courier",
        COURIER if r["operation"] == "courier" else config_label(r, objects=False),
        order.get(str(r.get("object_security") or "none"), 9), r["operation"]))
    out = []
    for (_, cfg, _, op), rs in sorted(keyed.items()):
        transfer = summarise(float(r["seconds"]) for r in rs)
        out.append([cfg, str(rs[0].get("object_security") or "none"), op,
                    f"{transfer.text} s" if transfer else NONE,
                    *(_mean(rs, c) for c, _ in STEPS), _share(rs)])
    head = ["transport", "object security", "operation", "transfer",
            *(h for _, h in STEPS), "steps / transfer"]
    return Table(head, out, "Table: what object security costs per study beside the transport "
                 "(mean ± 95% interval; each step summed over the study's objects, file reading "
                 "and writing included)", empty="no run with object security or the courier")
