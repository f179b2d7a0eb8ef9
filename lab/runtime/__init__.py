"""A running lab: bringing it up and down (:mod:`.lifecycle`), its record on disk (:mod:`.state`),
the DICOM services in its nodes (:mod:`.services`), the reachability check (:mod:`.reach`), what
is running (:mod:`.status`), cleaning up after a crash (:mod:`.cleanup`) and what this machine
can do (:mod:`.doctor`). Uses the backends and the security, WAN and DICOM layers; used by
studies, benchmarks, reports and the command line."""
