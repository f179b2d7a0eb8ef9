"""This machine: the outside programs the lab runs and the packages that provide them.

Kept free of imports so that ``python3 -m lab.host.programs`` works with the standard library
alone (``scripts/lib.sh`` calls it before the lab's Python environment exists).
"""
