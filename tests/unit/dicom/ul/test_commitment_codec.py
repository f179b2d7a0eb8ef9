"""The Storage Commitment datasets (lab.dicom.ul.commitment) against pydicom as the independent
codec: what we encode pydicom reads, and what pydicom writes (undefined-length sequences and
items included) we read, in both transfer syntaxes offered."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from lab.dicom.ul import commitment as sc

CT = "1.2.840.10008.5.1.4.1.1.2"
REFS = [sc.Reference(CT, f"1.2.3.{n}") for n in range(1, 4)]


def _read(data: bytes, ts: str) -> Dataset:
    return read_dataset(BytesIO(data), ts == ImplicitVRLittleEndian, True)


def _write(ds: Dataset, ts: str) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, ts == ImplicitVRLittleEndian
    write_dataset(out, ds)
    return out.getvalue()


@pytest.mark.parametrize("ts", sc.SYNTAXES)
def test_pydicom_reads_what_we_encode(ts: str) -> None:
    ds = _read(sc.encode_request("2.25.7", REFS, ts), ts)
    assert ds.TransactionUID == "2.25.7"
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
            for i in ds.ReferencedSOPSequence] == [r[:2] for r in REFS]
    result = sc.Result("2.25.7", tuple(REFS[:1]), (REFS[1]._replace(reason=0x0112),))
    ds = _read(sc.encode_result(result, ts), ts)
    assert ds.FailedSOPSequence[0].FailureReason == 0x0112
    assert ds.FailedSOPSequence[0].ReferencedSOPInstanceUID == "1.2.3.2"
    assert ds.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == "1.2.3.1"


@pytest.mark.parametrize("ts", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [True, False])
def test_we_read_what_pydicom_writes(ts: str, undefined: bool) -> None:
    ds = Dataset()
    ds.TransactionUID = "2.25.8"
    ds.RetrieveAETitle = "PACS"  # an element we do not use, skipped
    failed = Dataset()
    failed.ReferencedSOPClassUID, failed.ReferencedSOPInstanceUID = CT, "1.2.3.9"
    failed.FailureReason = 0x0119
    ds.FailedSOPSequence = Sequence([failed])
    ok = Dataset()
    ok.ReferencedSOPClassUID, ok.ReferencedSOPInstanceUID = CT, "1.2.3.1"
    ds.ReferencedSOPSequence = Sequence([ok])
    for seq in (ds["FailedSOPSequence"], ds["ReferencedSOPSequence"]):
        seq.is_undefined_length = undefined
        for item in seq.value:
            item.is_undefined_length_sequence_item = undefined
    data = _write(ds, ts)
    assert (b"\xfe\xff\xdd\xe0" in data) == undefined  # Sequence Delimitation Item
    result = sc.decode_result(data, ts)
    assert result == sc.Result("2.25.8", (sc.Reference(CT, "1.2.3.1"),),
                               (sc.Reference(CT, "1.2.3.9", 0x0119),))
    assert result.event_type == sc.SOME_FAILED
    with pytest.raises(sc.CommitmentError, match="not offered"):
        sc.decode_result(b"", "1.2.840.10008.1.2.2")
