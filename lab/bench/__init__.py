"""The benchmarks behind ``scripts/bench`` (``python -m lab.bench``), one module each: lifecycle
and the command itself (:mod:`.main`), C-STORE (:mod:`.store`), protection costs
(:mod:`.security`, with its raw-transport program :mod:`.tlsbulk`), docker against netns
(:mod:`.backends`), the quick sweep (:mod:`.sweep`) and WAN fidelity (:mod:`.wan`).

Kept free of imports: :mod:`.tlsbulk` runs inside nodes as ``python -m lab.bench.tlsbulk``.
"""
