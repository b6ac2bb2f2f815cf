"""The ``scar`` command line: the group and :func:`main` (the console script).

One module per subcommand (``experiment.py``: ``experiment`` and ``summary``; ``ckpt.py``;
``train.py``; ``reproduce.py``: ``reproduce`` and ``report``; ``datasets.py``), what they share
in ``common.py``, the options ``experiment`` and ``train`` share in ``options.py``. Every mistake
a user can make ends in one line on stderr (``scar: error: ...``) and exit status 2.
"""

from __future__ import annotations

import click

from .ckpt import ckpt
from .common import run
from .datasets import datasets
from .experiment import experiment, summary
from .reproduce import report, reproduce
from .train import train

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="scar", prog_name="scar")
def cli() -> None:
    """SCAR: prioritized checkpoints and partial recovery for iterative-convergent ML."""


for _command in (experiment, summary, reproduce, report, ckpt, datasets, train):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line and exit status 2 for every user error."""
    run(cli, argv)
