"""The error of a refused dataset, raised by the modules that read encoded datasets
(:mod:`lab.dicom.data.encoded`, :mod:`lab.dicom.data.filemeta`); its public home is
:mod:`lab.dicom.archive.store`."""

from __future__ import annotations

from lab.errors import LabError


class StoreError(LabError):
    """A dataset was refused (malformed, truncated, inconsistent) or the store is unusable."""
