"""This machine: the one subprocess door (:mod:`.shell`), the registry of outside programs and the
packages that provide them (:mod:`.programs`), processes (:mod:`.processes`) and mounts
(:mod:`.mounts`).

Kept free of imports so that ``python3 -m lab.host.programs`` works with the standard library
alone (``scripts/lib.sh`` calls it before the lab's Python environment exists).
"""
