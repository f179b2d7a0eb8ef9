"""The model: pure data, no I/O — what can be asked for. The topology's dataclasses
(:mod:`.topology`), WAN profiles and presets (:mod:`.wan`), IPsec proposals (:mod:`.proposals`),
PS3.15 TLS profiles (:mod:`.tls_profiles`), routing (:mod:`.routing`) and the names and paths of a
lab's resources (:mod:`.names`). Everything else in ``lab`` may import it; it imports only
:mod:`lab.errors`."""
