"""Which storage presentation contexts the peer accepts: the Storage SOP Class of each of the
seven modalities the lab generates (:data:`lab.dicom.data.iods.PROFILES`) paired with each
transfer syntax of :data:`TRANSFER_SYNTAXES`, one transfer syntax per context, so that every
answer (PS3.8 9.3.3.2, Table 9-18) is about exactly one pair. One association holds at most
128 contexts (PS3.8 9.3.2.2: odd ids 1 to 255), so the pairs go in batches of up to
:data:`BATCH`, each its own association, released at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lab.dicom.data.iods import PROFILES
from lab.dicom.ul import pdu
from lab.probe.association import Failed, Target, associate, release
from lab.probe.findings import ContextResult
from lab.probe.syntaxes import TRANSFER_SYNTAXES, UNCOMPRESSED

#: Presentation contexts in one A-ASSOCIATE-RQ at most (PS3.8 9.3.2.2).
BATCH = 128


def pairs() -> list[tuple[str, str, str]]:
    """(modality, storage SOP class, transfer syntax) for every pair the probe proposes."""
    return [(m, p.sop_class_uid, ts) for m, p in PROFILES.items() for ts in TRANSFER_SYNTAXES]


def batches(items: Sequence[tuple[str, str, str]], size: int = BATCH,
            ) -> Iterator[Sequence[tuple[str, str, str]]]:
    """``items`` cut into batches of at most ``size``."""
    if not 1 <= size <= BATCH:
        raise ValueError(f"a batch holds 1 to {BATCH} presentation contexts, not {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def negotiate(target: Target, size: int = BATCH) -> tuple[list[ContextResult], int]:
    """Every pair's answer, and how many associations it took; Failed if one of them was not
    established (the first batch's failure is the association's own)."""
    found: list[ContextResult] = []
    count = 0
    for batch in batches(pairs(), size):
        assoc, _, answers = associate(target, [(sop, (ts,)) for _, sop, ts in batch])
        count += 1
        release(assoc)
        for index, (modality, sop, ts) in enumerate(batch):
            answer = answers.get(2 * index + 1)
            result = pdu.NO_REASON if answer is None else answer.result
            if result == pdu.ACCEPTANCE and answer is not None and answer.transfer_syntax != ts:
                result = pdu.TRANSFER_SYNTAXES_NOT_SUPPORTED  # accepted with one not proposed
            found.append(ContextResult(modality=modality, sop_class=sop, transfer_syntax=ts,
                                       result=result))
    return found, count


__all__ = ["BATCH", "TRANSFER_SYNTAXES", "UNCOMPRESSED", "Failed", "batches", "negotiate",
           "pairs"]
