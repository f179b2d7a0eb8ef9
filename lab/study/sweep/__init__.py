"""Sweeps: the paper's test schema (and WAN profiles beyond it) as a matrix of cases, run with as
few lab builds as possible, resumable, into one tidy results table.

- :mod:`lab.study.sweep.spec`: the sweep file schema and its expansion into cases;
- :mod:`lab.study.sweep.seam`: the one place a case becomes ``up`` and ``run`` calls;
- :mod:`lab.study.sweep.runner`: grouping, state, progress;
- :mod:`lab.study.sweep.table`: the results table (CSV and Parquet) with provenance columns;
- :mod:`lab.study.sweep.dask_executor`: the same groups as tasks of a Dask cluster (imported only
  when ``sweep --cluster`` or ``--scheduler`` asks for one).
"""
