"""Command-line options shared by `scar experiment` and `scar train`."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import click

from ..validation import DEFAULT_FRACTION, DEFAULT_SHARDING

# the default fraction r as the help texts show it: 1/8
DEFAULT_FRACTION_TEXT = str(Fraction(DEFAULT_FRACTION).limit_denominator(1000))


def model_overrides(function: Callable[..., Any]) -> Callable[..., Any]:
    """--sharding, --lr, --l2, --batch-size: the row layout and the model settings a user may
    override (None: the model's documented default)."""
    for option in reversed(
        [
            click.option(
                "--sharding",
                default=DEFAULT_SHARDING,
                show_default=True,
                help="Row layout: range or hash.",
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
