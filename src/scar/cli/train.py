"""``scar train``: train on the local or the Ray parameter-server runtime, with real failures."""

from __future__ import annotations

from typing import Any

import click

from .. import validation as check
from ..algorithms.sparse_lr import CriteoSynthConfig
from ..errors import ConfigError
from ..jsonio import write_json
from ..runtime import train as run_training
from ..runtime.config import TRAIN_MODELS, TrainConfig
from .common import check_output, with_progress
from .options import DEFAULT_FRACTION_TEXT, model_overrides

DEFAULT = TrainConfig()  # every flag's default is the config's
SYNTH = CriteoSynthConfig()  # the criteo-synth sizes' defaults


@click.command()
@click.option(
    "--runtime", default=DEFAULT.runtime, show_default=True, help="local (in-process) or ray."
)
@click.option(
    "--ray-address",
    default=None,
    metavar="ADDRESS",
    help="Join an existing Ray cluster at HOST:PORT (its GCS address, as `ray start --head` "
    "prints) instead of starting a local one; with --runtime ray.",
)
@click.option(
    "--model", default=DEFAULT.model, show_default=True, help="mlr, mf, lda, sparse-lr or dlrm."
)
@click.option(
    "--dataset",
    default=None,
    help="; ".join(f"{m}: {', '.join(d)}" for m, d in TRAIN_MODELS.items())
    + " [default: the model's first].",
)
@click.option(
    "--optimizer",
    default=None,
    help="mlr: gd or sgd [default: gd]; mf: als; lda: gibbs; sparse-lr: sgd; "
    "dlrm: adagrad or adam [default: adagrad] (on the shards, row-wise).",
)
@click.option(
    "--shards", type=int, default=DEFAULT.shards, show_default=True, help="Server shards S."
)
@click.option("--workers", type=int, default=DEFAULT.workers, show_default=True, help="Workers W.")
@click.option(
    "--checkpoint",
    default=DEFAULT.checkpoint,
    show_default=True,
    help="full, priority, round-robin, random.",
)
@click.option(
    "--fraction",
    type=float,
    default=None,
    help=f"Fraction r per partial checkpoint [{DEFAULT_FRACTION_TEXT}].",
)
@click.option(
    "--period", type=int, default=DEFAULT.period, show_default=True, help="Checkpoint period C."
)
@click.option("--recovery", default=DEFAULT.recovery, show_default=True, help="full or partial.")
@click.option(
    "--store",
    default=None,
    help="Checkpoint store URL; shard k writes URL/shard-<k> [default: a temporary directory].",
)
@click.option(
    "--iterations", type=int, default=DEFAULT.iterations, show_default=True, help="Iterations N."
)
@click.option(
    "--kill-at", type=int, default=None, help="Kill --kill-shards shards after this iteration."
)
@click.option("--kill-shards", type=int, default=None, help="Shards killed at --kill-at [1].")
@click.option("--kill-every", type=int, default=None, help="Kill one shard every N iterations.")
@click.option(
    "--kill-workers",
    type=int,
    default=None,
    help="Kill one worker every N iterations (it is replaced and its iteration redone).",
)
@click.option(
    "--seed", type=int, default=DEFAULT.seed, show_default=True, help="Seed (data, kills, policy)."
)
@click.option(
    "--async/--no-async",
    "async_writes",
    default=DEFAULT.async_writes,
    show_default=True,
    help="Write checkpoints in the background.",
)
@click.option(
    "--save-priority",
    default=DEFAULT.save_priority,
    show_default=True,
    help="CPU priority of the shards' background checkpoint work: idle (runs on cores the "
    "training leaves idle; Linux) or normal.",
)
@click.option(
    "--fsync/--no-fsync", default=DEFAULT.fsync, show_default=True, help="fsync checkpoint files."
)
@click.option(
    "--eval-every",
    type=int,
    default=DEFAULT.eval_every,
    show_default=True,
    help="Compute the objective every N iterations (and at the end): the runtime pulls the "
    "full tables for it, so a large model wants a larger N.",
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT.timeout,
    show_default=True,
    help="Seconds without an answer before a node counts as dead.",
)
@model_overrides
@click.option("--rank", type=int, default=None, help="mf: override the factor rank.")
@click.option("--topics", type=int, default=None, help="lda: override the number of topics.")
@click.option(
    "--examples", type=int, default=None, help=f"criteo-synth: examples [{SYNTH.examples}]."
)
@click.option(
    "--hash-bits",
    type=int,
    default=None,
    help=f"criteo-synth: log2 of the buckets [{SYNTH.hash_bits}].",
)
@click.option(
    "--fields", type=int, default=None, help=f"criteo-synth: categorical fields [{SYNTH.fields}]."
)
@click.option("--output", "-o", required=True, help="Result file (JSON).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(
    output: str,
    quiet: bool,
    lr: float | None,
    l2: float | None,
    batch_size: int | None,
    rank: int | None,
    topics: int | None,
    examples: int | None,
    hash_bits: int | None,
    fields: int | None,
    dataset: str | None,
    **kw: Any,
) -> None:
    """Train with parameter-server shards and workers; kill shards; recover; write JSON."""
    synth = {"examples": examples, "hash_bits": hash_bits, "fields": fields}
    synth = {k: v for k, v in synth.items() if v is not None}
    if synth and kw["model"] != "sparse-lr":
        raise ConfigError(
            f"{check.flag(next(iter(synth)))} is a criteo-synth size: use it with --model sparse-lr"
        )
    if dataset is None:
        dataset = TRAIN_MODELS.get(kw["model"], ("digits",))[0]
    given = {"lr": lr, "l2": l2, "batch_size": batch_size, "rank": rank, "topics": topics}
    hyper = {k: v for k, v in given.items() if v is not None}
    cfg = TrainConfig(**kw, dataset=dataset, hyper=hyper, synth=synth).validate(flags=True)
    if cfg.model == "sparse-lr":
        CriteoSynthConfig(**synth).validate(flags=True)
    path = check_output(output)
    doc = with_progress(lambda progress: run_training(cfg, progress), cfg.iterations, quiet)
    write_json(path, doc)
    t = doc["totals"]
    if doc["interrupted"]:  # one line, as for any other stop; the file has the run so far
        click.echo(
            f"scar: interrupted after {t['iterations']} of {cfg.iterations} iterations; "
            f"checkpoints committed up to iteration {t['committed_iteration']}; the run so "
            f"far -> {path}",
            err=True,
        )
        click.get_current_context().exit(130)
    if not quiet:
        click.echo(
            f"{cfg.model}/{cfg.dataset} on {cfg.runtime}: {t['iterations']} iterations "
            f"({t['steps']} steps), objective {doc['objective_final']:.6g}, "
            f"{t['failures']} failures, {t['wall_seconds']:.1f} s -> {path}"
        )
