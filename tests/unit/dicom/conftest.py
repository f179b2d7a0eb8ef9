"""Shared helpers of the DICOM unit tests (test_store, test_query): small datasets, encoded as
an SCU sends them in a C-STORE request, and stored without the network."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import encode

from lab.dicom.archive.store import Store, StoredObject

STUDY = "1.2.826.0.1.3680043.10.1.1"
SERIES = "1.2.826.0.1.3680043.10.1.1.1"
SOP = "1.2.826.0.1.3680043.10.1.1.1.1"

DEFAULTS: dict[str, Any] = {
    "PatientName": "Doe^John", "PatientID": "PAT1", "PatientBirthDate": "19600101",
    "PatientSex": "M", "StudyDate": "20070115", "StudyTime": "101500",
    "AccessionNumber": "ACC1", "StudyID": "1", "StudyDescription": "CT HEAD",
    "ReferringPhysicianName": "House^Gregory", "Modality": "CT", "SeriesNumber": 1,
    "SeriesDescription": "AXIAL", "InstanceNumber": 1,
}


def make_dataset(sop: str = SOP, *, study: str = STUDY, series: str = SERIES,
                 sop_class: str = CTImageStorage, pixels: bytes = bytes(range(128)),
                 **attributes: Any) -> Dataset:
    """A small image (8x8, 16 bits); an attribute given as None is left out."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    for keyword, value in {**DEFAULTS, **attributes}.items():
        if value is not None:
            setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels
    return ds


def encoded(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> bytes:
    """The dataset as an SCU sends it in a C-STORE request (no File Meta Information)."""
    data = encode(ds, ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian,
                  deflated=ts == DeflatedExplicitVRLittleEndian)
    assert data is not None
    return data


def put(store: Store, ds: Dataset, ts: str = ExplicitVRLittleEndian) -> StoredObject:
    """Store ``ds`` as a C-STORE request in transfer syntax ``ts`` would bring it."""
    return store.store_encoded(encoded(ds, ts), ts, ds.SOPClassUID, ds.SOPInstanceUID)
