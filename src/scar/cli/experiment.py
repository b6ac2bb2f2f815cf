"""``scar experiment`` (one cell: N trials of failure + recovery) and ``scar summary`` (a table
of result files); the stores ``scar experiment --store`` gives its trials."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..algorithms.registry import DEFAULTS, MODEL_DATASETS, MODEL_OPTIMIZERS, check_overrides
from ..errors import ConfigError, StoreError
from ..experiments.cell import run_cell
from ..experiments.config import ExperimentConfig
from ..jsonio import write_json
from ..store import DurableStore
from ..store.backends import backend_for
from ..store.urls import join_url, trial_url
from .common import check_output, console, with_progress
from .options import DEFAULT_FRACTION_TEXT, model_overrides

DEFAULT = ExperimentConfig()  # every flag's default is the config's


@click.command()
@click.option(
    "--model",
    default=DEFAULT.model,
    show_default=True,
    help=f"Model: {', '.join(MODEL_DATASETS)}.",
)
@click.option(
    "--dataset",
    default=DEFAULT.dataset,
    show_default=True,
    help="Dataset of the model (see `scar datasets list`): "
    + "; ".join(f"{m}: {', '.join(d)}" for m, d in MODEL_DATASETS.items())
    + ".",
)
@click.option(
    "--optimizer",
    default=None,
    help="; ".join(f"{m}: {', '.join(o)}" for m, o in MODEL_OPTIMIZERS.items())
    + " [default: the model's first].",
)
@click.option(
    "--shards",
    type=int,
    default=DEFAULT.shards,
    show_default=True,
    help="Parameter-server shards S.",
)
@click.option("--lost-shards", type=int, default=None, help="Shards lost per failure (1..S).")
@click.option(
    "--lost-fraction", type=float, default=None, help="Fraction of shards lost, in (0, 1]."
)
@click.option(
    "--checkpoint",
    default=DEFAULT.checkpoint,
    show_default=True,
    help="Checkpoint policy: full, priority, round-robin, random.",
)
@click.option(
    "--period",
    type=int,
    default=None,
    help="Checkpoint period C in iterations [default: max(2, round(T_clean/10))].",
)
@click.option(
    "--fraction",
    type=float,
    default=None,
    help="Fraction r of rows per partial checkpoint, in (0, 1] "
    f"[default: {DEFAULT_FRACTION_TEXT}].",
)
@click.option(
    "--recovery", default=DEFAULT.recovery, show_default=True, help="full (rollback) or partial."
)
@click.option(
    "--fail-at",
    type=int,
    default=None,
    help="Failure after this iteration [default: per trial, uniform in 0.2..0.8 T_clean].",
)
@click.option(
    "--trials",
    type=int,
    default=DEFAULT.trials,
    show_default=True,
    help="Trials (seeds seed..seed+N-1).",
)
@click.option("--seed", type=int, default=DEFAULT.seed, show_default=True, help="Base seed.")
@click.option(
    "--epsilon",
    type=float,
    default=None,
    help="Target f* + eps (f(0) - f*) [default: per model and optimizer: "
    + "; ".join(f"{m}/{o} {d.epsilon:g}" for (m, o), d in DEFAULTS.items())
    + "].",
)
@click.option(
    "--max-factor",
    type=float,
    default=DEFAULT.max_factor,
    show_default=True,
    help="Cap on a failed run, in multiples of T_clean (capped trials are censored).",
)
@model_overrides
@click.option("--output", "-o", required=True, help="Result file (JSON).")
@click.option("--quiet", "-q", is_flag=True, help="No progress or table.")
@click.option(
    "--store",
    default=None,
    help="Checkpoint store URL (path, file://, memory://, s3://); trial i writes URL/trial-<seed> "
    "[default: a temporary directory, removed after the run, written without fsync].",
)
def experiment(
    output: str,
    quiet: bool,
    lr: float | None,
    l2: float | None,
    batch_size: int | None,
    store: str | None,
    **kw: Any,
) -> None:
    """Run one experiment cell: N trials of failure + recovery, measuring rework."""
    hyper = {"lr": lr, "l2": l2, "batch_size": batch_size}
    check_overrides(hyper, flags=True)
    if kw["optimizer"] is None:
        kw["optimizer"] = MODEL_OPTIMIZERS.get(kw["model"], ("gd",))[0]
    cfg = ExperimentConfig(**kw, hyper={k: v for k, v in hyper.items() if v is not None})
    cfg.validate(flags=True)
    path = check_output(output)
    with trial_stores(store) as stores:
        doc = with_progress(
            lambda progress: run_cell(cfg, store_factory=stores, progress=progress, flags=True),
            cfg.trials,
            quiet,
        )
    write_json(path, doc)
    if not quiet:
        print_summary([(str(path), doc)])


@click.command()
@click.argument("files", nargs=-1, required=True)
def summary(files: tuple[str, ...]) -> None:
    """Print a table of experiment result files."""
    docs = []
    for f in files:
        try:
            with open(f) as fh:
                doc = json.load(fh)
            doc["config"], doc["summary"]  # noqa: B018 - schema check
        except FileNotFoundError:
            raise ConfigError(f"no such result file: {f}") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{f} is not a scar experiment result ({type(e).__name__})") from None
        docs.append((f, doc))
    print_summary(docs)


def print_summary(docs: list[tuple[str, dict]]) -> None:
    """A table of experiment results (file name, result document) on stdout."""
    table = Table(
        title="SCAR experiments: rework = extra iterations to reach the clean run's target"
    )
    for col in (
        "file",
        "model/data/opt",
        "checkpoint",
        "recovery",
        "lost",
        "T_clean",
        "C",
        "rework mean ± std",
        "95% CI",
        "‖δ‖ mean",
        "censored",
    ):
        table.add_column(
            col, justify="left" if col in ("file", "model/data/opt") else "right", no_wrap=True
        )
    for name, doc in docs:
        c, s = doc["config"], doc["summary"]
        policy = c["checkpoint"] + ("" if c.get("fraction") is None else f" r={c['fraction']:g}")
        lo, hi = s.get("rework_ci95", [None, None])
        table.add_row(
            Path(name).name,
            f"{c['model']}/{c['dataset']}/{c['optimizer']}",
            policy,
            c["recovery"],
            f"{c['lost_shards']}/{c['shards']}",
            str(doc.get("clean", {}).get("clean_iterations", "-")),
            str(c["period"]),
            f"{_fmt(s['rework_mean'])} ± {_fmt(s['rework_std'])}",
            f"[{_fmt(lo)}, {_fmt(hi)}]",
            _fmt(s.get("perturbation_norm_mean"), 3),
            f"{s['censored']}/{s['trials']}",
        )
    console().print(table)


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


# -- the stores of `scar experiment --store` --------------------------------------------------
@contextlib.contextmanager
def trial_stores(url: str | None) -> Iterator[Callable[[int], DurableStore]]:
    """A factory ``seed -> store`` for the trials of an experiment: ``URL/trial-<seed>``, each
    written asynchronously. Without a URL: a temporary directory, removed afterwards, whose
    writes skip fsync (no crash can ever need a store that is deleted after the run; the
    format, checksums and atomic commits are the same)."""
    tmp = None
    if url is None:
        tmp = tempfile.mkdtemp(prefix="scar-ckpt-")
        url = tmp
    try:
        if not url.strip():
            raise ConfigError("--store must be a path or URL")
        probe = join_url(url, f".probe-{os.getpid()}")
        DurableStore(probe, keep_last=1).close()  # an unwritable store fails now, not mid-run
        _remove(probe)
        fsync = tmp is None
        yield lambda seed: DurableStore(trial_url(url, seed), async_writes=True, fsync=fsync)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _remove(url: str) -> None:
    """Delete a store made only to check that ``--store`` is writable (best effort)."""
    with contextlib.suppress(StoreError, OSError):
        backend_for(url).destroy()
