"""The transfer syntaxes the probe proposes for storage, by UID and name: a module of its own
(no DICOM library behind it) so that the probe's page and the command line can name them
without loading pydicom."""

from __future__ import annotations

#: Uncompressed and common compressed transfer syntaxes (PS3.5 A.1 to A.8, Section 10).
TRANSFER_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
