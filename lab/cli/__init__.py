"""The command line (``teleradlab``, ``python -m lab``), one module per command group: the lab
commands and the root group (:mod:`.main`), studies — sweep, report, graph, compose
(:mod:`.studies`), the WAN (:mod:`.wan`), and what they print (:mod:`.output`). Nothing else
lives here; everything it calls lives below."""
