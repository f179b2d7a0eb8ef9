"""DICOM programs and data for the lab: run inside nodes as ``python -m lab.dicom.<program>``.

AE titles and ports follow the lab's conventions (DICOM PS3.8 for the upper layer; port 11112 is
the IANA-registered DICOM port; the DICOM-over-TLS port is :data:`lab.model.dicom.TLS_PORT`)."""

PACS_AE = "PACS"
PACS_PORT = 11112
MODALITY_AE = "MODALITY"
MODALITY_STORE_PORT = 11113
