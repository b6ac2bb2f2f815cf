"""Command-line options shared by `scar experiment` and `scar train`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def model_overrides(function: Callable[..., Any]) -> Callable[..., Any]:
    """--sharding, --lr, --l2, --batch-size: the row layout and the model settings a user may
    override (None: the model's documented default)."""
    for option in reversed(
        [
            click.option(
                "--sharding", default="range", show_default=True, help="Row layout: range or hash."
            ),
            click.option("--lr", type=float, default=None, help="Override the model's step size."),
            click.option(
                "--l2", type=float, default=None, help="Override the model's L2 regularisation."
            ),
            click.option(
                "--batch-size", type=int, default=None, help="Override the minibatch size."
            ),
        ]
    ):
        function = option(function)
    return function
