"""The command line (``teleradlab``, ``python -m lab``), one module per command group: the lab
commands (:mod:`.labs`), studies — sweep, report, graph, compose (:mod:`.studies`), the WAN
(:mod:`.wan`); the root group that registers them (:mod:`.main`) and what they print
(:mod:`.output`). Nothing else lives here; everything it calls lives below."""
