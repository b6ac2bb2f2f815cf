"""The ``scar`` command line.

Every mistake a user can make ends in one line on stderr (``scar: error: ...``) and exit status
2; nothing is written in that case. Results are JSON files written atomically.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .cli_options import model_overrides
from .errors import ConfigError, ScarError
from .jsonio import write_json


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="scar", prog_name="scar")
def cli() -> None:
    """SCAR: prioritized checkpoints and partial recovery for iterative-convergent ML."""


# ---------------------------------------------------------------------------------------------
def check_output(path: str) -> Path:
    """Fail now, before any work, if ``path`` cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"output {path!r} is a directory; give a file name such as {path}/result.json"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write output {path!r}: directory {str(parent)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(f"cannot write output {path!r}: {e.strerror or e}") from None
    return p


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------------------
@cli.command()
@click.option("--model", default="mlr", show_default=True, help="Model: mlr, mf or lda.")
@click.option(
    "--dataset",
    default="digits",
    show_default=True,
    help="Dataset of the model (see `scar datasets list`): mlr: digits, mnist, covtype; "
    "mf: movielens-100k, movielens-small, jester; "
    "lda: reuters, news-articles, 20newsgroups, rcv1.",
)
@click.option(
    "--optimizer",
    default=None,
    help="mlr: gd (full batch) or sgd; mf: als; lda: gibbs [default: the model's first].",
)
@click.option("--shards", type=int, default=8, show_default=True, help="Parameter-server shards S.")
@click.option("--lost-shards", type=int, default=None, help="Shards lost per failure (1..S).")
@click.option(
    "--lost-fraction", type=float, default=None, help="Fraction of shards lost, in (0, 1]."
)
@click.option(
    "--checkpoint",
    default="priority",
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
    help="Fraction r of rows per partial checkpoint, in (0, 1] [default: 1/8].",
)
@click.option(
    "--recovery", default="partial", show_default=True, help="full (rollback) or partial."
)
@click.option(
    "--fail-at",
    type=int,
    default=None,
    help="Failure after this iteration [default: per trial, uniform in 0.2..0.8 T_clean].",
)
@click.option(
    "--trials", type=int, default=10, show_default=True, help="Trials (seeds seed..seed+N-1)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed.")
@click.option(
    "--epsilon",
    type=float,
    default=None,
    help="Target f* + eps (f(0) - f*) [default: per model: mlr 0.01 (gd), 0.05 (sgd); "
    "mf 1e-6; lda 0.03].",
)
@click.option(
    "--max-factor",
    type=float,
    default=3.0,
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
    from .experiments.cell import ExperimentConfig, run_cell

    hyper = {"lr": lr, "l2": l2, "batch_size": batch_size}
    for name, v in hyper.items():
        if v is not None and not (v > 0 or (name == "l2" and v == 0)):
            raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {v:g}")
    if kw["optimizer"] is None:
        from .algorithms.registry import MODEL_OPTIMIZERS

        kw["optimizer"] = MODEL_OPTIMIZERS.get(kw["model"], ("gd",))[0]
    cfg = ExperimentConfig(**kw, hyper={k: v for k, v in hyper.items() if v is not None})
    cfg.validate()
    path = check_output(output)
    from .ckpt_cli import trial_stores

    with trial_stores(store) as stores:
        doc = _with_progress(
            lambda progress: run_cell(cfg, store_factory=stores, progress=progress),
            cfg.trials,
            quiet,
        )
    write_json(path, doc)
    if not quiet:
        print_summary([(str(path), doc)])


def _with_progress(fn, total: int, quiet: bool):
    if quiet:
        return fn(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=_console(stderr=True),
    ) as bar:
        task = bar.add_task("trials", total=total)
        return fn(lambda done, _total: bar.update(task, completed=done))


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps the whole table on one line per row instead of rich's 80 columns.
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 180)


def print_summary(docs: list[tuple[str, dict]]) -> None:
    from rich.table import Table

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
    _console().print(table)


@cli.command()
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


def _register() -> None:
    from .reproduce_cli import report, reproduce

    cli.add_command(reproduce)
    cli.add_command(report)


_register()


def _register_ckpt() -> None:
    from .ckpt_cli import ckpt

    cli.add_command(ckpt)


_register_ckpt()


def _register_datasets() -> None:
    from .datasets_cli import datasets

    cli.add_command(datasets)


_register_datasets()
cli.add_command(__import__("scar.train_cli", fromlist=["train"]).train)


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Entry point: one line and exit status 2 for every user error."""
    try:
        rv = cli.main(args=argv, prog_name="scar", standalone_mode=False)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "scar"
        _die(f"{cmd}: error: {e.format_message()}", 2)
    except click.ClickException as e:
        _die(f"scar: error: {e.format_message()}", e.exit_code or 1)
    except ScarError as e:
        _die(f"scar: error: {e}", 2)
    except (KeyboardInterrupt, click.Abort):
        _die("scar: interrupted", 130)
    sys.exit(rv if isinstance(rv, int) else 0)


def _die(message: str, status: int) -> None:
    print(" ".join(message.split()), file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
