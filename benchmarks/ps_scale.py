# ruff: noqa: E402  (imports follow the sys.path fix below)
"""How the parameter server's iteration scales with the table: sparse pulls against the
full-pull baseline on tables of ~10^5, ~10^6 and ~10^7 rows. Target: the sparse path's
iteration time at 10^7 rows <= 1.5x its time at 10^5.

Every configuration runs on one local Ray cluster (started here, loopback only): 4 shards, 2
workers, batch 512, priority(1/8) checkpoints with period 16 (each shard saves every 2nd
iteration), async writes, fsync on, a store in a temporary directory (the store's defaults).
Models (``--models``):

* ``sparse-lr``: sparse LR on criteo-synth (26 fields, 100000 examples), ``hash_bits`` 17, 20
  and 23: 2^b + 1 rows of width 1 (0.5, 4 and 34 MB of float32).
* ``dlrm``: the DLRM split (:mod:`scar.runtime.dlrm`; Adagrad on the shards, whose sum of
  squares is a slot table beside every table, saved with it) on criteo-synth's hashed ids as
  they are: 8 fields of 2^b buckets (b = 14, 17, 20), each field an embedding table of width
  16, 4 dense features, the MLPs' small tables: 0.13, 1.05 and 8.4 M rows (8.4, 67 and 537 MB
  of parameters; as much again of Adagrad's state).

Three paths (``--paths``), each run on the same problems and data:

* ``sparse``: the split as shipped (``sparse_pulls``): each worker names the rows its batch
  needs, each shard answers with its part of them, the workers push the rows they changed
  straight to the shards; the coordinator only passes futures.
* ``full``: the same split with ``split.sparse_pulls = False`` before the ``Trainer`` is made:
  one read of every row of every table per shard per iteration, which both workers receive
  (Ray's object store, shared memory) and assemble into whole tables; the worker computes the
  same gradient from the whole table (a small subclass of the model's worker part here) and
  pushes the same rows. It is the runtime's full-pull path as it is today; the code before
  sparse pulls (b304a1f) also pulled and assembled the full tables in the driver every
  iteration, which this baseline does not do (it is faster than that code).
* ``paused``: ``sparse`` with the periodic saves paused after the warm-up
  (``Trainer.set_checkpointing``): what the checkpoints add to the sparse path's scaling.

Per model and path, one trainer per size runs side by side: built (the base checkpoint of
every row written), ``--warmup`` iterations (the first priority save after the base one
scans every row), every write waited for, then ``--rounds`` rounds of ``--block``
iterations on each size, the first size rotating: the ratio between sizes comes from one
window of the machine's load. The paths run one after another (a trainer keeps its tables
three times on its shards - live, Adagrad's state, the priority policy's saved copy - so
the DLRM's nine trainers at once would not fit in 24 GB: this way the run peaks at about
14 GB). After the timed iterations each size's tables are compared across the paths:
``same_tables`` (bit for bit). The objective is never computed inside (``eval_every``
beyond the run). Per configuration:

* ``median_s`` / ``mean_s``: wall time of ``Trainer.step`` (one BSP iteration, checkpoints
  included) over the timed iterations;
* bytes per iteration between shards and workers, measured by instrumented nodes (the
  benchmark swaps ``WorkerNode`` and ``ShardServer`` for subclasses that count; the runtime
  is otherwise untouched): ``request`` (the shard-local row positions workers send),
  ``pull`` (``nbytes`` of the rows every worker receives from ``ShardServer.read``), ``push``
  (row ids + values of the ``Update`` s workers push); ``moved`` = their sum. ``served`` is
  what the shards' ``read`` returned (in ``full`` one answer per shard, received by both
  workers);
* ``rows_changed``: unique rows the shards were pushed, per iteration (all workers);
  ``saved_rows`` / ``saved_bytes``: rows and value bytes the priority saves actually wrote,
  per iteration (from each save's ``SaveResult``, after every write is durable);
  ``reported_ckpt_bytes``: ``Trainer.checkpoint_bytes`` per iteration, as the shards report
  their saves to it (before 1febc38 the policy's quota, k = n/8 of a shard's rows per save,
  which a save then filled with unchanged rows when fewer had changed; since, the rows that
  changed, at most k);
* ``serve_cpu_ms``: CPU of the shards' ``read`` and ``apply`` per iteration (summed over
  shards), ``ckpt_cpu_ms``: CPU of their save threads and store writers (``ShardServer.stats``).

The table, then one JSON line with every figure, ``ratio_sparse``, ``ratio_full`` and
``ratio_paused`` (the largest size's median iteration time over the smallest's; ``_mean``:
of the means) per model, and ``met`` (``ratio_sparse`` <= 1.5 for every model; null when a
model the runtime refused to start - ``skipped``, with its reason - was not measured). Ray
starts its worker processes at nice 15: other busy processes on the machine slow the run;
compare figures within one run. About 4-5 minutes.

    .venv/bin/python benchmarks/ps_scale.py [--sizes 1e5 1e6 1e7] [--models sparse-lr dlrm]
        [--paths sparse full paused] [--rounds 8] [--block 6] [--warmup 6] [--batch 512]
    .venv/bin/python benchmarks/ps_scale.py --quick    # smoke run, < 1 min: sparse LR, sparse
        and full, 10^4 and 10^5 rows, 8 timed iterations
"""

from __future__ import annotations

import os
import sys

# benchmarks/select.py must not shadow the standard library's select module
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import argparse  # noqa: E402
import copy
import dataclasses
import json
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from scar.algorithms.sparse_lr import logloss_gradient
from scar.errors import ConfigError
from scar.runtime import TrainConfig, Trainer, build_split
from scar.runtime.nodes import ShardServer, WorkerNode
from scar.runtime.ray_ps import RayCluster
from scar.runtime.split import SparseLRPart, Split, Update

TARGET = 1.5
SHARDS, WORKERS = 4, 2
PATHS = ("sparse", "full", "paused")  # paused: sparse with the periodic saves paused
STATS = ("serve_cpu_seconds", "save_thread_cpu_seconds", "store_writer_cpu_seconds")


# -- instrumented nodes (Ray pickles these classes by value: they are defined in __main__) ----
class CountingWorker(WorkerNode):
    """A worker that counts the bytes it sends to and receives from the shards."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.counts = {"request": 0, "pull": 0, "push": 0}

    def request(self, iteration, args):
        out = super().request(iteration, args)
        for r in out if isinstance(out, list) else [out]:
            self.counts["request"] += sum(a.nbytes for a in r.values() if a is not None)
        return out

    def compute(self, iteration, args, *pulls):
        self.counts["pull"] += sum(a.nbytes for p in pulls for a in p.values())
        out = super().compute(iteration, args, *pulls)
        for per_shard in out if isinstance(out, list) else [out]:
            for u in per_shard.values():
                self.counts["push"] += u.values.nbytes + (0 if u.rows is None else u.rows.nbytes)
        return out

    def counters(self) -> dict[str, int]:
        return dict(self.counts)


class CountingShard(ShardServer):
    """A shard that counts what it serves, the rows it is pushed and what its saves write."""

    def __init__(self, *args: Any) -> None:
        self.counts = dict.fromkeys(
            ("served", "rows_changed", "saved_rows", "saved_bytes", "unreported_ckpt_bytes"), 0
        )
        super().__init__(*args)

    def read(self, request):
        out = super().read(request)
        self.counts["served"] += sum(a.nbytes for a in out.values())
        return out

    def apply(self, iteration, args, *pushes):
        for name, live in self.state.items():
            ups = [p[name] for p in pushes if name in p]
            if any(u.rows is None for u in ups):
                self.counts["rows_changed"] += live.shape[0]
            elif ups:
                self.counts["rows_changed"] += len(np.unique(np.concatenate([u.rows for u in ups])))
        return super().apply(iteration, args, *pushes)

    def _save(self, iteration, base=False):
        out = super()._save(iteration, base)
        if not base:  # (the base checkpoint of every row is not an iteration's work)
            # rows of the model's tables: a server rule's slot rows are saved with their row
            per_row = len(self.state) // len(self.slots)
            self.counts["saved_rows"] += self.ckpt.last_save.rows // per_row
            self.counts["saved_bytes"] += self.ckpt.last_save.value_bytes
        return out

    def counters(self) -> dict[str, float]:
        self.sync()  # every save started so far has written its rows
        stats = self.stats()
        # (stats hands over the bytes of saves finished since the last apply, which the
        # trainer would have counted at its next step: counted here instead)
        self.counts["unreported_ckpt_bytes"] += stats.get("unreported_saved_bytes", 0)
        return self.counts | {k: stats[k] for k in STATS}


class CountingCluster(RayCluster):
    """The Ray cluster, starting the counting nodes in place of the runtime's."""

    SWAP = {WorkerNode: CountingWorker, ShardServer: CountingShard}

    def start(self, role, index, cls, *args):
        return super().start(role, index, self.SWAP.get(cls, cls), *args)


# -- the models -------------------------------------------------------------------------------
class FullPullLRPart(SparseLRPart):
    """Sparse LR's worker reading whole tables: the same gradient from the full table."""

    def update(self, tables, iteration, args):
        w = tables["weights"]
        if len(args) == 0:
            return {"weights": Update(np.empty(0, np.int64), np.empty((0, 1), w.dtype))}
        rows, g, _ = logloss_gradient(self.idx[args], self.y[args], w)
        return {"weights": Update(rows, g)}


def sparse_lr(rows: float, a) -> tuple[TrainConfig, Split, dict]:
    """Sparse LR on criteo-synth with 2^b + 1 rows (b = log2(rows), rounded)."""
    bits = max(4, round(math.log2(rows)))
    cfg = config(
        a,
        model="sparse-lr",
        hyper={"batch_size": a.batch},
        synth={"examples": a.examples, "hash_bits": bits},
    )
    return cfg, build_split(cfg), {"hash_bits": bits}


def full_pull(split: Split, part_class: type) -> Split:
    """A copy of ``split`` (sharing its algorithm) whose workers read every row and whose
    parts are ``part_class`` (a subclass of the split's own, computing from whole tables)."""
    full = copy.copy(split)
    full.sparse_pulls = False
    parts = split.parts

    def recast(part):
        out = object.__new__(part_class)
        out.__dict__.update(part.__dict__)
        return out

    full.parts = lambda n: [recast(p) for p in parts(n)]
    return full


DLRM_FIELDS = 8


def dlrm(rows: float, a) -> tuple[TrainConfig, Split, dict]:
    """The DLRM (Adagrad on the shards, embedding width 16) on criteo-synth's hashed ids as
    they are: 8 fields of 2^b buckets each, every bucket a row of its field's table (b =
    log2(rows / 8), rounded), 4 dense features, 26 fields' worth of Zipf values per field."""
    from scar.algorithms.dlrm import DLRMModel, DLRMParams, criteo_clicks
    from scar.algorithms.sparse_lr import CriteoSynthConfig, criteo_synth
    from scar.runtime.dlrm import DLRMSplit

    bits = max(4, round(math.log2(rows / DLRM_FIELDS)))
    synth = CriteoSynthConfig(
        examples=a.examples, fields=DLRM_FIELDS, hash_bits=bits, vocab=10_000, signal=1.0
    )
    data = dataclasses.replace(
        criteo_clicks(synth),  # (its ids renumbered to the buckets used: the hashed ones here)
        ids=criteo_synth(synth).idx,
        field_rows=(1 << bits,) * DLRM_FIELDS,
    )
    params = DLRMParams(optimizer="adagrad", batch_size=a.batch, examples=len(data))
    cfg = config(a, model="dlrm", optimizer="adagrad")
    return cfg, DLRMSplit(DLRMModel(data, params)), {"hash_bits": bits, "dim": params.dim}


def full_pull_dlrm_part() -> type:
    from scar.runtime.dlrm import DLRMPart

    class FullPullDLRMPart(DLRMPart):
        """The DLRM's worker reading whole tables: its batch's rows taken from them, then the
        same computation as with sparse pulls."""

        def update(self, tables, iteration, args):
            if len(args) == 0:
                return {}
            ids = self._ids(args)
            rows = {n: t[ids[n]] if n in ids else t for n, t in tables.items()}
            return super().update(rows, iteration, args)

    return FullPullDLRMPart


# name -> (problem for ~rows: its config, split and sizes; the worker part of the baseline)
MODELS: dict[str, tuple[Callable, Callable[[], type]]] = {
    "sparse-lr": (sparse_lr, lambda: FullPullLRPart),
    "dlrm": (dlrm, full_pull_dlrm_part),
}


def config(a, **kw) -> TrainConfig:
    return TrainConfig(
        runtime="ray",
        dataset="criteo-synth",
        shards=SHARDS,
        workers=WORKERS,
        checkpoint="priority",
        fraction=0.125,
        period=16,
        iterations=10**9,
        eval_every=10**9,  # no objective inside the timed iterations
        async_writes=True,
        fsync=True,
        **kw,
    ).validate()


# -- measuring --------------------------------------------------------------------------------
def ask_all(t: Trainer, handles, method: str) -> list[Any]:
    futures = [t.cluster.call(h, method) for h in handles]
    return [t.cluster.get(h, f, t.cfg.timeout) for h, f in zip(handles, futures, strict=True)]


def counters(t: Trainer) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in ask_all(t, t.shards, "counters") + ask_all(t, t.workers, "counters"):
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    out["reported_ckpt_bytes"] = t.checkpoint_bytes + out.pop("unreported_ckpt_bytes")
    return out


def discard(t: Trainer) -> None:
    try:
        t.close()
    finally:
        for h in t.shards + t.workers + ([t.standby] if t.standby is not None else []):
            t.cluster.discard(h)


def summary(times: list[float], before: dict, after: dict) -> dict[str, Any]:
    """One path's figures per iteration over its timed iterations."""
    d = {k: (after[k] - before[k]) / len(times) for k in after}
    return {
        "median_s": round(statistics.median(times), 5),
        "mean_s": round(statistics.fmean(times), 5),
        "moved_bytes": round(d["request"] + d["pull"] + d["push"]),
        **{f"{k}_bytes": round(d[k]) for k in ("request", "pull", "push", "served")},
        "rows_changed": round(d["rows_changed"], 1),
        "saved_rows": round(d["saved_rows"], 1),
        "saved_bytes": round(d["saved_bytes"]),
        "reported_ckpt_bytes": round(d["reported_ckpt_bytes"]),
        "serve_cpu_ms": round(1000 * d["serve_cpu_seconds"], 2),
        "ckpt_cpu_ms": round(
            1000 * (d["save_thread_cpu_seconds"] + d["store_writer_cpu_seconds"]), 2
        ),
        "times_ms": [round(1000 * x, 1) for x in times],
    }


def measure(cluster, model: str, a, work: str) -> list[dict]:
    """Every path of ``model`` at every size: per path, one trainer per size side by side, the
    rounds rotating over the sizes (the ratio between sizes is measured in one window of the
    machine's load); the paths one after another (each trainer holds its tables on the shards
    three times - live, the optimizer's state, the priority policy's saved copy - and a
    full-pull worker assembles whole tables: all nine of the DLRM's would not fit)."""
    problem, full_part = MODELS[model]
    problems = [problem(size, a) for size in a.sizes]  # one data set per size, for every path
    rows: list[dict[str, Any]] = []
    for size, (_, split, extra) in zip(a.sizes, problems, strict=True):
        shapes = {n: t.shape for n, t in split.initial_tables().items()}
        rows.append(
            {
                "model": model,
                "size": f"{size:g}",
                **extra,
                "rows": sum(s[0] for s in shapes.values()),
                "table_mb": round(sum(s[0] * s[1] * 4 for s in shapes.values()) / 1e6, 2),
                "start_s": {},
                "same_tables": True,
            }
        )
    first: list[dict[str, np.ndarray] | None] = [None] * len(a.sizes)
    for path in a.paths:
        trainers: list[Trainer] = []
        times: list[list[float]] = [[] for _ in a.sizes]
        try:
            for size, row, (cfg, split, _) in zip(a.sizes, rows, problems, strict=True):
                t0 = time.perf_counter()
                cfg = copy.copy(cfg)
                cfg.store = f"{work}/{model}-{size:g}-{path}"
                sp = full_pull(split, full_part()) if path == "full" else split
                trainers.append(Trainer(cfg, sp, cluster, cfg.store))
                row["start_s"][path] = round(time.perf_counter() - t0, 1)
            before = []
            for t in trainers:
                for _ in range(a.warmup):
                    t.step()
                before.append(counters(t))  # (waits for every write so far: the base save's)
                if path == "paused":
                    t.set_checkpointing(False)
            order = list(range(len(trainers)))
            for r in range(a.rounds):
                k = r % len(order)  # which size goes first: rotates
                for i in order[k:] + order[:k]:
                    for _ in range(a.block):
                        t1 = time.perf_counter()
                        trainers[i].step()
                        times[i].append(time.perf_counter() - t1)
            for i, t in enumerate(trainers):
                rows[i][path] = summary(times[i], before[i], counters(t))
                tables = t.refresh()
                if first[i] is None:
                    first[i] = tables
                elif not all(np.array_equal(first[i][n], tables[n]) for n in tables):
                    rows[i]["same_tables"] = False
        finally:
            for t in trainers:
                discard(t)
        print(json.dumps({"model": model, "path": path, "done": True}), file=sys.stderr)
    return rows


def fmt_bytes(b: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def print_table(rows: list[dict], paths: list[str]) -> None:
    head = (
        f"{'model':9} {'rows':>8} {'path':6} {'median ms':>9} {'mean ms':>7} {'moved/it':>9} "
        f"{'pull/it':>9} {'push/it':>8} {'changed':>7} {'saved':>7} {'saved/it':>8} "
        f"{'serve ms':>8} {'ckpt ms':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        for p in paths:
            m = r[p]
            print(
                f"{r['model']:9} {r['rows']:>8} {p:6} {1000 * m['median_s']:>9.1f} "
                f"{1000 * m['mean_s']:>7.1f} {fmt_bytes(m['moved_bytes']):>9} "
                f"{fmt_bytes(m['pull_bytes']):>9} {fmt_bytes(m['push_bytes']):>8} "
                f"{m['rows_changed']:>7.0f} {m['saved_rows']:>7.0f} "
                f"{fmt_bytes(m['saved_bytes']):>8} {m['serve_cpu_ms']:>8.1f} "
                f"{m['ckpt_cpu_ms']:>7.1f}"
            )
    print(
        "(per iteration; changed: unique rows pushed; saved: rows the priority saves wrote; serve\n"
        " ms: the shards' CPU in read and apply; ckpt ms: their save threads' and store writers')"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), help="default: all")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=6, help="iterations per block")
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--paths", nargs="+", choices=PATHS, help="default: all")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10^4 and 10^5 rows, short")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.rounds, a.block, a.warmup, a.examples = [1e4, 1e5], 2, 4, 4, 20_000
        a.models, a.paths = a.models or ["sparse-lr"], a.paths or ["sparse", "full"]
    a.models, a.paths = a.models or list(MODELS), a.paths or list(PATHS)
    if min(a.rounds, a.block, a.batch) < 1 or a.warmup < 0 or min(a.sizes) < 16:
        ap.error("--rounds, --block, --batch must be >= 1, --warmup >= 0, --sizes >= 16")
    a.sizes = sorted(a.sizes)
    a.paths = [p for p in PATHS if p in a.paths]
    t0 = time.perf_counter()
    cluster = CountingCluster()
    work = tempfile.mkdtemp(prefix="scar-ps-scale-")
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    try:
        for model in a.models:
            try:
                rows += measure(cluster, model, a, work)
            except ConfigError as e:  # a model the runtime refuses: the others still run
                skipped[model] = str(e)
                print(f"{model}: not measured: {e}", file=sys.stderr, flush=True)
    finally:
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, a.paths)
    ratios = {}
    for model in [m for m in a.models if m not in skipped]:
        rs = [r for r in rows if r["model"] == model]
        lo, hi = rs[0], rs[-1]
        ratios[model] = {
            f"ratio_{p}{m}": round(hi[p][f"{stat}_s"] / lo[p][f"{stat}_s"], 3)
            for p in a.paths
            for m, stat in (("", "median"), ("_mean", "mean"))
        } | {"from_rows": lo["rows"], "to_rows": hi["rows"]}
        print(
            f"{model}: median iteration time at {hi['rows']} rows / at {lo['rows']}: "
            + ", ".join(f"{p} {ratios[model][f'ratio_{p}']:.2f}x" for p in a.paths)
            + " (means: "
            + ", ".join(f"{ratios[model][f'ratio_{p}_mean']:.2f}x" for p in a.paths)
            + ")"
        )
    print(
        json.dumps(
            {
                "benchmark": "ps_scale",
                "shards": SHARDS,
                "workers": WORKERS,
                "batch": a.batch,
                "warmup": a.warmup,
                "timed_iterations": a.rounds * a.block,
                "rows": rows,
                "ratios": ratios,
                "target": TARGET,
                "met": all(r["ratio_sparse"] <= TARGET for r in ratios.values())
                if "sparse" in a.paths and ratios and not skipped
                else None,
                "skipped": skipped,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
