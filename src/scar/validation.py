"""One vocabulary for checking a user's parameters, and the defaults more than one module uses.

Every check raises :class:`~scar.errors.ConfigError` with one message shape::

    <name> must be <what is allowed>, got <the value given>

``name`` is the parameter as the user wrote it: the keyword of the API (``lost_shards``) or, when
the command line checks it, the flag (``--lost-shards``: :func:`flag`). The value is shown as
``repr`` shows it, shortened when long. A check returns the value it was given, unchanged::

    whole("shards", 0, ge=1)              shards must be a whole number >= 1, got 0
    whole("hash_bits", 40, ge=4, le=30)   hash_bits must be a whole number in 4..30, got 40
    positive("--lr", float("nan"))        --lr must be a finite number > 0, got nan
    non_negative("l2", -1.0)              l2 must be a finite number >= 0, got -1.0
    fraction("fraction", 1.5)             fraction must be in (0, 1], got 1.5
    number("epsilon", 2.0, gt=0, lt=1)    epsilon must be in (0, 1), got 2.0
    one_of("mode", "half", ("full", "partial"))  mode must be one of full or partial, got 'half'
    optional(whole, "period", None, ge=1)        None (not given): nothing to check

Whole numbers are ints (numpy's too), never bools or floats; numbers are ints or floats, never
bools, NaN or infinite. ``note`` adds context after what is allowed (``"(--iterations)"``,
``"for model mlr"``). Modules use it as ``from scar import validation as check``:
``check.whole(...)``.

This module imports nothing of scar but its errors: every layer may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import numpy as np

from .errors import ConfigError

T = TypeVar("T")

# -- defaults: each setting more than one module (or a flag's help) uses, defined once -------
DEFAULT_POLICY = "priority"  # the checkpoint policy (scar experiment, scar train, a shard)
DEFAULT_FRACTION = 1 / 8  # r: the share of the rows a partial policy saves per checkpoint
DEFAULT_RECOVERY = "partial"  # the way back after a failure
DEFAULT_SHARDING = "range"  # the layout of the rows over the shards
DEFAULT_PERIOD = 10  # C of scar train and its shards (scar experiment derives C from T_clean)
DEFAULT_KEEP_LAST = 3  # versions a checkpoint store keeps
DEFAULT_SAVE_PRIORITY = "idle"  # CPU priority of scar train's shards' background saves

MAX_SHOWN = 60  # characters of a value shown in a message


def flag(keyword: str) -> str:
    """The command-line flag of a keyword: ``lost_shards`` -> ``--lost-shards``."""
    return "--" + keyword.replace("_", "-")


def namer(flags: bool) -> Callable[[str], str]:
    """How a config names its settings: as flags when the command line set them (``flags``),
    else as the keywords they are."""
    return flag if flags else _as_keyword


def _as_keyword(keyword: str) -> str:
    return keyword


def shown(value: Any) -> str:
    """``repr(value)`` (a numpy scalar as the Python number it holds), cut to ``MAX_SHOWN``."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def fail(name: str, allowed: str, value: Any, note: str = "") -> NoReturn:
    """Raise the message: ``<name> must be <allowed> [<note>], got <value>``."""
    raise ConfigError(f"{name} must be {allowed}{' ' + note if note else ''}, got {shown(value)}")


def whole(name: str, value: T, ge: int | None = None, le: int | None = None, note: str = "") -> T:
    """A whole number (an int or a numpy integer; not a bool, not a float) in ``ge..le``."""
    if ge is not None and le is not None:
        allowed = f"a whole number in {ge}..{le}"
    elif ge is not None:
        allowed = f"a whole number >= {ge}"
    elif le is not None:
        allowed = f"a whole number <= {le}"
    else:
        allowed = "a whole number"
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not (ok and (ge is None or value >= ge) and (le is None or value <= le)):
        fail(name, allowed, value, note)
    return value


def number(
    name: str,
    value: T,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    note: str = "",
) -> T:
    """A finite number (an int or a float, numpy's too; not a bool) within the bounds given:
    ``gt`` (>), ``ge`` (>=), ``lt`` (<), ``le`` (<=)."""
    low = gt if gt is not None else ge
    high = lt if lt is not None else le
    if low is not None and high is not None:
        allowed = (
            f"in {'(' if gt is not None else '['}{low:g}, {high:g}{')' if lt is not None else ']'}"
        )
    elif low is not None:
        allowed = f"a finite number {'>' if gt is not None else '>='} {low:g}"
    elif high is not None:
        allowed = f"a finite number {'<' if lt is not None else '<='} {high:g}"
    else:
        allowed = "a finite number"
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (gt is None or value > gt)
        and (ge is None or value >= ge)
        and (lt is None or value < lt)
        and (le is None or value <= le)
    )
    if not ok:
        fail(name, allowed, value, note)
    return value


def positive(name: str, value: T, note: str = "") -> T:
    """A finite number > 0."""
    return number(name, value, gt=0, note=note)


def non_negative(name: str, value: T, note: str = "") -> T:
    """A finite number >= 0."""
    return number(name, value, ge=0, note=note)


def fraction(name: str, value: T, note: str = "") -> T:
    """A number in (0, 1]."""
    return number(name, value, gt=0, le=1, note=note)


def one_of(name: str, value: T, allowed: Iterable[str], note: str = "") -> T:
    """One of a fixed set of names."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        if len(allowed) == 1:
            fail(name, allowed[0], value, note)
        fail(name, f"one of {', '.join(allowed[:-1])} or {allowed[-1]}", value, note)
    return value


def optional(
    check: Callable[..., T], name: str, value: T | None, *args: Any, **kw: Any
) -> T | None:
    """``None`` (not given: nothing to check), or a value ``check`` accepts."""
    return None if value is None else check(name, value, *args, **kw)
