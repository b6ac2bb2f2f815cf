"""``scar reproduce`` (the paper's whole evaluation) and ``scar report`` (figures + REPORT.md)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import validation as check
from ..algorithms import registry
from ..errors import ConfigError
from ..experiments.adapt import ADAPT_CAP, ADAPT_WIDTH, adapt_trials
from ..experiments.report import write_report
from ..experiments.suite import TRIALS, cost_weights, is_done, plan, run_suite
from .common import console


def _models(value: str | None) -> list[str]:
    if value is None:
        return list(registry.MODELS)
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names or any(m not in registry.MODELS for m in names):
        check.fail("--models", f"comma-separated models among {', '.join(registry.MODELS)}", value)
    return names


def _datasets(value: str | None, names: list[str]) -> dict[str, tuple[str, ...]] | None:
    """``mlr=digits+mnist,lda=reuters`` -> {"mlr": ("digits", "mnist"), "lda": ("reuters",)}."""
    if value is None:
        return None
    out: dict[str, tuple[str, ...]] = {}
    for part in value.split(","):
        model, sep, data = part.partition("=")
        model = model.strip()
        if not sep or model not in names or not data.strip():
            allowed = f"MODEL=DATA[+DATA...] for models in --models ({', '.join(names)})"
            check.fail("--datasets", allowed, part)
        sets = tuple(d.strip() for d in data.split("+"))
        for d in sets:
            check.one_of("--datasets", d, registry.MODEL_DATASETS[model], note=f"for model {model}")
        out[model] = sets
    return out


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {path!r} exists and is not a directory")
    try:
        (out / "results").mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to --out {path!r}: {e.strerror or e}") from None
    return out


@click.command()
@click.option(
    "--quick",
    is_flag=True,
    help=f"{TRIALS['quick']} trials per cell, digits instead of MNIST, shorter sweeps "
    "(under 10 minutes).",
)
@click.option("--models", "model_list", default=None, help="Comma-separated models [default: all].")
@click.option(
    "--out",
    default="out/reproduce",
    show_default=True,
    help="Folder for results/, figures/ and REPORT.md.",
)
@click.option("--jobs", type=int, default=2, show_default=True, help="Worker processes.")
@click.option(
    "--trials",
    type=int,
    default=None,
    help=f"Trials per cell [default: {TRIALS['full']}, then the full run adds trials to each "
    f"headline pair until its reduction's 95 % interval is at most {ADAPT_WIDTH:.0%} wide, up "
    f"to {ADAPT_CAP}; {TRIALS['quick']} with --quick]. Given, no trials are added.",
)
@click.option(
    "--datasets",
    "dataset_list",
    default=None,
    help="Data sets per model, e.g. mlr=digits+mnist,lda=reuters (the first is used for the "
    "bound, recovery and policy experiments) [default: mlr=mnist+bio (quick: digits+bio), "
    "mf=movielens-100k+movielens-small, lda=reuters+news-articles].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def reproduce(
    quick: bool,
    model_list: str | None,
    out: str,
    jobs: int,
    trials: int | None,
    dataset_list: str | None,
    quiet: bool,
) -> None:
    """Run the paper's evaluation (bound, partial vs full, policies, headline) and report it.

    Cells already in OUT/results with the same settings are not run again: an interrupted
    run resumes where it stopped.
    """
    check.whole("--jobs", jobs, ge=1)
    check.optional(check.whole, "--trials", trials, ge=2, note="(a spread needs two)")
    names = _models(model_list)
    datasets = _datasets(dataset_list, names)
    out_dir = _out_dir(out)
    tasks = plan(names, quick, trials, datasets)
    command = (
        "scar " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:]
        else "scar reproduce"
    )
    started = time.monotonic()
    if quiet:
        run_suite(tasks, out_dir, jobs)
    else:
        _run_with_progress(tasks, out_dir, jobs)
    if not quick and trials is None:  # the full run: enough trials for the headline's interval
        adapt_trials(tasks, out_dir, on_step=None if quiet else _adapt_progress, jobs=jobs)
    report = write_report(out_dir, command)
    click.echo(f"{len(tasks)} cells in {time.monotonic() - started:.0f} s; report: {report}")


def _run_with_progress(tasks, out_dir: Path, jobs: int) -> None:
    weights = cost_weights(tasks)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[cells]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console(stderr=True),
    ) as bar:
        bar_id = bar.add_task("reproduce", total=sum(weights.values()), cells="")
        done = {"n": 0, "total": len(tasks)}

        def on_start(already: int, total: int) -> None:
            # cells finished by an earlier run are not part of this run's time estimate
            done["n"] = already
            bar.update(
                bar_id,
                total=sum(weights.values()) - _done_weight(tasks, out_dir, weights),
                cells=f"{already}/{total} cells",
            )

        def on_done(task, weight: float) -> None:
            done["n"] += 1
            bar.update(
                bar_id,
                advance=weight,
                description=task.id,
                cells=f"{done['n']}/{done['total']} cells",
            )

        run_suite(tasks, out_dir, jobs, on_start, on_done)


def _adapt_progress(task, trials: int, width: float | None) -> None:
    w = "-" if width is None else f"{100 * width:.0f} points"
    click.echo(f"{task.id}: {trials} trials, reduction interval {w}", err=True)


def _done_weight(tasks, out_dir: Path, weights) -> float:
    return sum(weights[t.id] for t in tasks if is_done(out_dir / "results" / f"{t.id}.json", t))


@click.command()
@click.argument("out", default="out/reproduce")
def report(out: str) -> None:
    """Rebuild figures/ and REPORT.md from OUT/results (no experiment is rerun)."""
    out_dir = Path(out)
    if not (out_dir / "results").is_dir():
        raise ConfigError(f"no results in {out!r}: run `scar reproduce --out {out}` first")
    click.echo(write_report(out_dir, f"scar report {out}"))
