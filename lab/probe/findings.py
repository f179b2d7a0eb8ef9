"""What ``teleradlab probe`` found, as pydantic models: the JSON file it writes (``--json``) is
:class:`ProbeReport` dumped, read back by the HTML page and by ``--wan @probe.json``.

Every part records what was measured, not a judgement; the judgements are the
:class:`Verdict` list (:mod:`lab.probe.verdicts`), each naming the requirement, pass / warn /
fail / skip, and the reason in words.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "warn", "fail", "skip"]


class Verdict(BaseModel):
    """One requirement judged: ``skip`` when it could not be tested (and why)."""

    requirement: str
    status: Status
    reason: str


class Reject(BaseModel):
    """An A-ASSOCIATE-RJ's fields (PS3.8 9.3.4, Table 9-21) and their meaning."""

    result: int
    source: int
    reason: int
    text: str


class Association(BaseModel):
    """One association attempt: accepted, rejected (``reject``), or failed below DICOM
    (``error``: refused, timed out, TLS failed, not DICOM)."""

    accepted: bool
    seconds: float | None = None
    connect_ms: float | None = None  # its TCP connect
    retries: int = 0  # after transient rejections (PS3.8 9.3.4)
    reject: Reject | None = None
    error: str | None = None
    #: What the port seems to speak when the attempt failed below DICOM ("tls", "dicom",
    #: "other", "nothing").
    speaks: str | None = None
    peer_max_pdu: int | None = None  # 0: unlimited (PS3.8 D.1)
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    tls_version: str | None = None
    cipher: str | None = None


class ContextResult(BaseModel):
    """One proposed presentation context (one abstract syntax, one transfer syntax) and the
    acceptor's answer (PS3.8 Table 9-18: 0 acceptance, 1 user rejection, 2 no reason, 3
    abstract syntax not supported, 4 transfer syntaxes not supported)."""

    modality: str
    sop_class: str
    transfer_syntax: str
    result: int

    @property
    def accepted(self) -> bool:
        return self.result == 0


class Operation(BaseModel):
    """A C-FIND or C-MOVE tried: offered (its context accepted), the final status, matches."""

    offered: bool
    status: int | None = None
    matches: int = 0
    error: str | None = None


class StoreResult(BaseModel):
    """``--allow-store``: the synthetic study stored, to be deleted by the peer's owners."""

    objects: int
    bytes: int
    study_instance_uid: str
    patient_id: str
    patient_name: str
    stored: int = 0
    statuses: list[int] = Field(default_factory=list)  # -1: no context accepted the object
    seconds: float | None = None
    mbit_s: float | None = None
    error: str | None = None


class DicomFindings(BaseModel):
    association: Association
    echo_ms: list[float] = Field(default_factory=list)
    echo_status: int | None = None
    echo_error: str | None = None
    contexts: list[ContextResult] = Field(default_factory=list)
    context_batches: int = 0
    find: Operation | None = None
    move: Operation | None = None
    move_destination: str | None = None
    store: StoreResult | None = None


class Certificate(BaseModel):
    """The server's leaf certificate as received, with the chain's length."""

    subject: str
    issuer: str
    not_before: str
    not_after: str
    days_left: float
    key_type: str
    key_bits: int
    signature_hash: str | None
    names: list[str]
    chain_length: int
    chain_problems: list[str] = Field(default_factory=list)  # of the certificates above the leaf
    trusted: bool | None = None  # by the --tls-ca given (None: no CA given)
    trust_error: str | None = None


class ProfileSupport(BaseModel):
    """One PS3.15 Annex B profile: accepted if the peer completed a handshake inside it."""

    name: str
    section: str
    retired: bool
    accepted: bool
    suites: list[str] = Field(default_factory=list)


class TlsFindings(BaseModel):
    speaks_tls: bool
    error: str | None = None
    versions: dict[str, bool] = Field(default_factory=dict)  # "TLS 1.2": accepted
    suites: dict[str, list[str]] = Field(default_factory=dict)  # version: accepted (IANA)
    client_auth: str | None = None  # DISABLED, OPTIONAL, REQUIRED (sslyze's reading)
    profiles: list[ProfileSupport] = Field(default_factory=list)
    certificate: Certificate | None = None
    scanner: str = ""


class PathFindings(BaseModel):
    """TCP connect times (SYN to SYN-ACK: one round trip, as ICMP may be blocked) and the
    path MTU the kernel holds for the peer."""

    connect_ms: list[float] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    mtu: int | None = None
    mtu_source: str | None = None


class ProbeReport(BaseModel):
    """The whole probe: target, what was found, the verdicts, and the WAN it measured (the
    keys of ``--wan``; read by ``--wan @probe.json``)."""

    host: str
    port: int
    called: str
    calling: str
    tls_profile: str | None
    started: str
    seconds: float
    path: PathFindings
    tls: TlsFindings | None = None
    dicom: DicomFindings | None = None
    verdicts: list[Verdict] = Field(default_factory=list)
    wan: dict[str, str] = Field(default_factory=dict)
    mtu: int | None = None
    prediction: str | None = None  # a report of the lab's prediction over this WAN, if run

    def worst(self) -> Status:
        """fail if any verdict failed, else warn if any warned, else pass."""
        found = {v.status for v in self.verdicts}
        return "fail" if "fail" in found else "warn" if "warn" in found else "pass"
