"""Security services: the lab PKI (:mod:`.pki`), IPsec through strongSwan (:mod:`.ipsec`) and the
TLS contexts of PS3.15 Annex B (:mod:`.tls`). The node programs of :mod:`lab.dicom` may use
:mod:`.pki` and :mod:`.tls` (libraries, no orchestration); nothing here imports the runtime."""
