"""``python -m autolab``: the same as the ``autolab`` command."""

from autolab.cli import main

main()
