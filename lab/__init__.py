"""teleradlab: a network lab for secure medical-image (DICOM) transfer between two sites."""

__version__ = "0.1.0"
