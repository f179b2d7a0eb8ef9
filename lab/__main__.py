"""``python -m lab``: the same as the ``teleradlab`` command."""

from lab.cli.main import main

main(prog_name="teleradlab")
