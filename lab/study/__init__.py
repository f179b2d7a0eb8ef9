"""Studies on a lab: one experiment (:mod:`.run`: transfers timed, verified and recorded), its
result rows and provenance (:mod:`.results`), and sweeps over many configurations
(:mod:`.sweep`). Uses the runtime; used by reports, benchmarks and the command line."""
