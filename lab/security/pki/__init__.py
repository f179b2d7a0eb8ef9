"""The lab PKI: certificate profiles (:mod:`.profile`), the CA and credentials
(:mod:`.authority`), and the lab's own CA and per-node credentials (:mod:`.lab_pki`)."""
