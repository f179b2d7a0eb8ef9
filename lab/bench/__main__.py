"""``python -m lab.bench`` (what ``scripts/bench`` runs): the benchmarks of
:mod:`lab.bench.main`."""

import sys

from lab.bench.main import main

sys.exit(main())
