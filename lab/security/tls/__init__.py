"""DICOM TLS (PS3.15 Annex B): ``ssl`` contexts made from the profiles of
:mod:`lab.model.tls_profiles` and the lab's credentials (:mod:`.contexts`)."""
