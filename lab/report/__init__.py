"""``teleradlab report``: results tables turned into figures, paper-shaped tables and findings.

- :mod:`lab.report.data`: reading the table back, configurations, means with 95% intervals;
- :mod:`lab.report.bounds`: TCP window and loss (Mathis et al.) bounds, WAN preset names;
- :mod:`lab.report.figures`: the matplotlib figures;
- :mod:`lab.report.findings`: tables and generated findings;
- :mod:`lab.report.drawings`: topology drawings (``teleradlab graph`` and the report's);
- :mod:`lab.report.render`: the self-contained HTML file.
"""
