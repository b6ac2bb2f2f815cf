"""``python -m scar.cli``: the same as the ``scar`` command."""

from . import main

main()
