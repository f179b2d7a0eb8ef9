"""DICOM programs and data for the lab: run inside nodes as ``python -m lab.dicom.<program>``.

AE titles and ports follow the lab's conventions (DICOM PS3.8 for the upper layer; port 11112 is
the IANA-registered DICOM port, 2762 the registered DICOM-over-TLS port). The ports are defined
once, in :mod:`lab.model.dicom`."""

from lab.model.dicom import PACS_PORT, TLS_PORT
from lab.model.dicom import RECEIVER_PORT as MODALITY_STORE_PORT

__all__ = ["MODALITY_AE", "MODALITY_STORE_PORT", "PACS_AE", "PACS_PORT", "TLS_PORT"]

PACS_AE = "PACS"
MODALITY_AE = "MODALITY"
