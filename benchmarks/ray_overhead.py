# ruff: noqa: E402  (imports follow the sys.path fix below)
"""Iteration throughput and checkpoint overhead of priority(1/8) vs full checkpoints at equal
bytes (both write n/C rows per iteration) on sparse LR over the Ray runtime with 1, 2 and 4
shards, async writes. Target: overhead < 3 %.

Overhead = extra wall time per iteration with the periodic checkpoints on, over the same run
with them paused (``Trainer.set_checkpointing``), as a % of the latter. Both are measured on
the same processes: separate runs differ by themselves (``between_runs_pct`` below: the
same paused iterations on two runs' processes, a few % apart either way), a bias as large as
the effect. Each run (full, priority) alternates blocks of ``--block`` iterations with
checkpoints on and paused (a multiple of the period, so an "on" block holds the same saves
every time: 2 full checkpoints, or 16 priority ones and one compaction of the priority
store), in ``--rounds`` rounds whose order rotates; each block ends with every shard's writes
durable. The overhead is the ratio of the total wall times (every block, every checkpoint and
compaction included, nothing trimmed), with a 95 % bootstrap interval over rounds (on and
paused resampled in pairs, so slow drifts of the machine cancel). The first priority save
after a pause chooses among every row changed during it: more work than a save in a steady
run, counted against the checkpoints. ``between_runs_pct`` is the paused blocks of priority
against those of full: the bias a comparison across runs would carry.

Besides wall clock, the shards report the checkpoint work they do:

* ``ckpt_path_pct``: time a shard spends on checkpoints inside ``apply`` (the critical path:
  waiting for the previous background save, handing over the next), % of the iteration;
* ``shard_cpu_ms_per_it``: CPU of the shard processes (selection, snapshot, store writer
  threads, Ray's own threads) per iteration, with checkpoints on and ``_paused``; the
  checkpoint's part is split into the save threads' (``save_thread_cpu``) and the store
  writers' (``store_writer_cpu``);
* ``serve_wall`` / ``serve_cpu`` (ms per iteration, summed over shards): wall and CPU time of
  the shards' ``pull`` and ``apply``; wall growing more than CPU with checkpoints on means
  the serving threads wait for a core or for the GIL that a background thread holds;
* ``busy_cores``: machine-wide busy cores during the blocks (from /proc/stat, 2 = saturated);
  ``machine_cpu_ms_per_it``: CPU of the whole machine per iteration (every process, and the
  kernel's own threads: write-back, I/O completions), ``kernel_cpu_ms_per_it`` its
  system/irq/softirq part.

The shards' background checkpoint threads run at idle CPU priority (``--save-priority idle``,
the default of ``scar train``): they use the cores the workers leave idle. Compare with
``--save-priority normal``. Ray starts its worker processes at nice 15: any other busy process
on the machine starves the run; trust the overheads only on an otherwise idle machine.

``--attribute [nofsync memory normal]`` adds more runs of priority, paired with the others (no
names: all three): with fsync off (``overhead_pct_priority_nofsync``) and with each shard's
store in fsspec's in-memory file system (``overhead_pct_priority_memory``: no files, no kernel
I/O; the store's own CPU - checksums, row bitmaps, the live-set index, manifests, compaction -
and the selection stay); what they save against ``priority`` is what the store's file system
work costs the run. ``normal`` (``overhead_pct_priority_normal``): the shards' background
checkpoint threads at normal CPU priority instead of idle.

``--period`` takes several checkpoint periods C (default 16: a priority save every 2nd
iteration by each shard, a full one every 16th); each is measured in runs of its own, with
blocks of ``--block`` iterations (default: C, at least 32). ``by_period`` gives the worst
overhead over the shard counts at each period, ``smallest_period_met`` the smallest period
whose worst priority overhead is under the target (the overhead is about the checkpoint work
per save times the saves per iteration: 8 / C per shard).

    .venv/bin/python benchmarks/ray_overhead.py [--rounds 24] [--period 16 [32 64 ...]]
        [--block B] [--save-priority idle] [--shards 1 2 4] [--attribute [NAME ...]]
"""

from __future__ import annotations

import os
import sys

# benchmarks/select.py must not shadow the standard library's select module
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import argparse  # noqa: E402
import json
import shutil
import statistics
import tempfile
import time

import numpy as np

from scar.runtime import TrainConfig, Trainer, build_split
from scar.runtime.ray_ps import RayCluster
from scar.store.writer import PRIORITIES

TARGET_PCT = 3.0
CONFIGS = ("full", "priority")
# --attribute: the priority run again with its store's file system work taken away, to tell
# what the fsyncs and the files cost from what the selection and the store's own CPU cost
ATTRIBUTION = ("priority_nofsync", "priority_memory", "priority_normal")
STATS = (
    "process_cpu_seconds",
    "save_thread_cpu_seconds",
    "store_writer_cpu_seconds",
    "store_wait_seconds",
    "serve_wall_seconds",
    "serve_cpu_seconds",
)


def cpu_ticks() -> tuple[int, int, int] | None:
    """(busy, kernel, total) jiffies of the whole machine, or None off Linux; kernel: system,
    irq and softirq time (fsyncs' flushes and I/O completions land there)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v[5:7]) + v[2], sum(v)


class Clock:
    """Per operation between ``start`` and ``per(n)``, in seconds: wall time, this process's
    CPU and, where ``cpu_ticks`` works, the whole machine's CPU and its kernel part (for the
    design benchmarks of the store's writes, which load this module for it)."""

    def start(self) -> None:
        self.c0, self.p0, self.w0 = cpu_ticks(), time.process_time(), time.perf_counter()

    def per(self, n: int) -> dict[str, float]:
        c1, p1, w1 = cpu_ticks(), time.process_time(), time.perf_counter()
        wall = w1 - self.w0
        out = {"wall": wall / n, "process": (p1 - self.p0) / n}
        if c1 is not None and self.c0 is not None:
            # seconds of CPU per jiffy: the wall time over the jiffies it spans
            share = (os.cpu_count() or 1) * wall / max(1, c1[2] - self.c0[2])
            out["machine"] = share * (c1[0] - self.c0[0]) / n
            out["kernel"] = share * (c1[1] - self.c0[1]) / n
        return out


def shard_stats(t: Trainer) -> dict[str, float]:
    out = dict.fromkeys(STATS, 0.0)
    for h in t.shards:
        try:
            s = t.cluster.get(h, t.cluster.call(h, "stats"), t.cfg.timeout)
        except AttributeError:  # shards of an older scar (before/after comparisons)
            continue
        for k, v in s.items():
            out[k] = out.get(k, 0.0) + v
    return out


def sync(t: Trainer) -> None:
    for h, f in [(h, t.cluster.call(h, "sync")) for h in t.shards]:
        t.cluster.get(h, f, t.cfg.timeout)


def block(t: Trainer, n: int) -> dict[str, float]:
    """Run ``n`` iterations and wait for every write: wall, critical and CPU seconds."""
    s0, ck0, c0 = shard_stats(t), t.checkpoint_seconds, cpu_ticks()
    t0 = time.perf_counter()
    for _ in range(n):
        t.step()
    sync(t)  # every write durable: the background writes are inside the measurement
    wall = time.perf_counter() - t0
    s1, c1 = shard_stats(t), cpu_ticks()
    cores = os.cpu_count() or 1
    span = None if c0 is None else max(1, c1[2] - c0[2])
    busy = None if c0 is None else cores * (c1[0] - c0[0]) / span
    kernel = None if c0 is None else cores * (c1[1] - c0[1]) / span
    return {
        "wall": wall / n,
        "critical": (t.checkpoint_seconds - ck0) / n,
        **{k.removesuffix("_seconds"): (s1[k] - s0[k]) / n for k in STATS},
        "busy": busy,
        "kernel": kernel,
    }


def config(name: str, shards: int, a, store: str) -> TrainConfig:
    """The run ``name`` of the sparse LR problem: "none" (no periodic checkpoint), or one of
    CONFIGS or ATTRIBUTION."""
    policy = "full" if name == "none" else name.split("_")[0]
    return TrainConfig(
        runtime="ray",
        model="sparse-lr",
        dataset="criteo-synth",
        shards=shards,
        workers=2,
        checkpoint=policy,
        fraction=0.125,
        period=10**9 if name == "none" else a.period,
        iterations=10**9,
        # fsspec's in-memory file system: each shard's store lives in its own process
        store=f"memory://scar-ray-overhead/{os.path.basename(store)}"
        if name == "priority_memory"
        else store,
        async_writes=True,
        fsync=name != "priority_nofsync",
        eval_every=10**9,
        save_priority="normal" if name == "priority_normal" else a.save_priority,
        hyper={"batch_size": 8192},
        synth={"examples": a.examples, "hash_bits": a.hash_bits},
    ).validate()


def add_problem_args(ap: argparse.ArgumentParser, periods: bool = False) -> None:
    """The flags of the problem ``config`` builds (also parsed by ray_background_control.py
    and store_write_volume.py, which run the same problem); ``periods``: ``--period`` takes
    several values, each measured in runs of its own."""
    ap.add_argument("--hash-bits", type=int, default=20)
    ap.add_argument("--examples", type=int, default=200_000)
    if periods:
        ap.add_argument("--period", type=int, nargs="+", default=[16], help="checkpoint periods C")
    else:
        ap.add_argument("--period", type=int, default=16)


def pct(x: float) -> float:
    return round(100 * float(x), 2)


def paired(trainers: dict[str, Trainer], a) -> dict[str, dict[bool, list[dict]]]:
    """A warm-up period on each trainer, then ``a.rounds`` rounds: in each, every trainer (the
    order rotating from round to round) runs one ``a.block`` block with its checkpoints on and
    one with them paused (which first alternates). The blocks, by trainer, then on / paused."""
    for t in trainers.values():  # warm-up: one period, so blocks start on a full save
        block(t, a.period)
    names = list(trainers)
    runs: dict[str, dict[bool, list[dict]]] = {n: {True: [], False: []} for n in names}
    for r in range(a.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = trainers[name]
            for on in (True, False) if r % 2 == 0 else (False, True):
                t.set_checkpointing(on)
                runs[name][on].append(block(t, a.block))
    for t in trainers.values():
        t.set_checkpointing(True)
    return runs


def on_off(run: dict[bool, list[dict]]) -> tuple[np.ndarray, np.ndarray]:
    """Wall seconds per iteration of a ``paired`` run's blocks: (checkpoints on, paused)."""
    return tuple(np.array([b["wall"] for b in run[on]]) for on in (True, False))


def spread_pct(wall: np.ndarray) -> float:
    """Spread of blocks of the same run (max - min over mean, %): the noise floor."""
    return pct((wall.max() - wall.min()) / wall.mean())


def overhead(base: np.ndarray, wall: np.ndarray) -> tuple[float, list[float]]:
    """Extra wall time of ``wall``'s blocks over ``base``'s (ratio of totals, %), with a 95 %
    bootstrap interval over rounds (resampled in pairs, so slow drifts of the machine cancel)."""
    picks = np.random.default_rng(0).integers(0, len(base), (2000, len(base)))
    boot = wall[picks].sum(1) / base[picks].sum(1) - 1
    return pct(wall.sum() / base.sum() - 1), [pct(np.percentile(boot, q)) for q in (2.5, 97.5)]


def discard(cluster, trainers: dict[str, Trainer]) -> None:
    for t in trainers.values():
        for h in t.shards + t.workers + ([t.standby] if t.standby is not None else []):
            cluster.discard(h)


def machine_ms(blocks: list[dict], key: str = "busy") -> float | None:
    """CPU of the whole machine per iteration (every process and the kernel's threads: the
    flushes and I/O completions of fsyncs included), median over blocks; ``kernel``:
    its system, irq and softirq part."""
    cpu = [b[key] * b["wall"] for b in blocks if b[key] is not None]
    return round(1000 * statistics.median(cpu), 1) if cpu else None


def measure(cluster, split, shards: int, a, work: str) -> dict:
    trainers = {}
    try:
        for name in CONFIGS + tuple(f"priority_{v}" for v in a.attribute or ()):
            cfg = config(name, shards, a, f"{work}/{a.period}-{shards}-{name}")
            trainers[name] = Trainer(cfg, split, cluster, cfg.store)
        runs = paired(trainers, a)
    finally:
        discard(cluster, trainers)
    med = statistics.median
    row: dict = {"period": a.period, "shards": shards}
    for name, r in runs.items():
        on, off = on_off(r)
        row[f"it_per_s_{name}"] = round(1 / on.mean(), 2)
        row[f"it_per_s_{name}_paused"] = round(1 / off.mean(), 2)
        row[f"overhead_pct_{name}"], row[f"overhead_ci95_{name}"] = overhead(off, on)
        row[f"noise_pct_{name}_paused"] = spread_pct(off)
        row[f"ckpt_path_pct_{name}"] = pct(sum(b["critical"] for b in r[True]) / on.sum())
        for k in ("save_thread_cpu", "store_writer_cpu", "store_wait"):
            row[f"{k}_ms_per_it_{name}"] = round(1000 * med(b[k] for b in r[True]), 2)
        for key, bl in ((name, r[True]), (f"{name}_paused", r[False])):
            row[f"shard_cpu_ms_per_it_{key}"] = round(1000 * med(b["process_cpu"] for b in bl), 1)
            row[f"machine_cpu_ms_per_it_{key}"] = machine_ms(bl)
            row[f"kernel_cpu_ms_per_it_{key}"] = machine_ms(bl, "kernel")
            for k in ("serve_wall", "serve_cpu"):
                row[f"{k}_ms_per_it_{key}"] = round(1000 * med(b[k] for b in bl), 2)
    # the same paused iterations on two sets of processes: the bias across runs
    paused = {n: on_off(runs[n])[1] for n in ("full", "priority")}
    row["between_runs_pct"], row["between_runs_ci95"] = overhead(paused["full"], paused["priority"])
    busy = [
        b["busy"] for r in runs.values() for bl in r.values() for b in bl if b["busy"] is not None
    ]
    row["busy_cores"] = round(med(busy), 2) if busy else None
    row["blocks_ms"] = {
        f"{n}{'' if on else '_paused'}": [round(1000 * b["wall"], 1) for b in bl]
        for n, r in runs.items()
        for on, bl in r.items()
    }
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=24)
    ap.add_argument(
        "--block", type=int, help="iterations per block (default: the period, at least 32)"
    )
    add_problem_args(ap, periods=True)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--save-priority", choices=PRIORITIES, default="idle")
    ap.add_argument(
        "--attribute",
        nargs="*",
        choices=[n.removeprefix("priority_") for n in ATTRIBUTION],
        help="also run priority with fsync off, with an in-memory store (memory://), with "
        "the shards' background checkpoint threads at normal CPU priority (no names: all)",
    )
    a = ap.parse_args()
    if a.attribute == []:
        a.attribute = [n.removeprefix("priority_") for n in ATTRIBUTION]
    if min(a.period) < 1 or a.rounds < 2 or (a.block is not None and a.block < 1):
        ap.error("--period and --block must be >= 1, --rounds >= 2")
    blocks = {p: a.block or max(32, p) for p in a.period}
    if any(b % p for p, b in blocks.items()):
        ap.error("--block must be a multiple of every --period (equal saves in every block)")
    t0 = time.perf_counter()
    cluster = RayCluster()
    work = tempfile.mkdtemp(prefix="scar-ray-overhead-")
    rows = []
    try:
        split = build_split(config("none", 1, a, work))  # the same data for every run
        for period, block in blocks.items():
            one = argparse.Namespace(**{**vars(a), "period": period, "block": block})
            for shards in a.shards:
                rows.append(measure(cluster, split, shards, one, work))
                print(rows[-1], flush=True)
    finally:
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    by_period = {}
    for period in blocks:
        rs = [r for r in rows if r["period"] == period]
        worst = max(r["overhead_pct_priority"] for r in rs)
        worst_hi = max(r["overhead_ci95_priority"][1] for r in rs)
        by_period[str(period)] = {
            "block_iterations": blocks[period],
            "worst_priority_overhead_pct": worst,
            "worst_priority_overhead_ci95_high_pct": worst_hi,
            "worst_priority_ckpt_path_pct": max(r["ckpt_path_pct_priority"] for r in rs),
            "met": worst < TARGET_PCT,
            "met_at_ci95_high": worst_hi < TARGET_PCT,
        }
    met = [int(p) for p, r in by_period.items() if r["met"]]
    print(
        json.dumps(
            {
                "benchmark": "ray_overhead",
                "rounds": a.rounds,
                "save_priority": a.save_priority,
                "rows": rows,
                "by_period": by_period,
                "target_pct": TARGET_PCT,
                "met": len(met) == len(by_period),  # at every period measured
                "smallest_period_met": min(met) if met else None,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
