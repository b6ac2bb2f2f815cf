# ruff: noqa: E402  (imports follow the sys.path fix below)
"""TorchCheckpointer against torch.distributed.checkpoint (DCP) on a DLRM-style model trained
with Adam: the time a save blocks the training loop, the time to restore one lost shard, and
the iteration-time overhead of SCAR's checkpoints.

    .venv/bin/python benchmarks/torch_vs_dcp.py [--size-mb 1024] [--batch 4096] [--period 16]
        [--rounds 10] [--restores 3] [--threads 1 2 4] [--cold] [--dir DIR]

The model: ``scar.algorithms.nets.DLRM``, 11 embedding tables of width 64 (Criteo-like sizes,
30 % of the rows in the largest, 1 % in the smallest) sized so that the state, parameters plus
Adam's ``exp_avg`` and ``exp_avg_sq``, is ``--size-mb`` MiB (default 1 GiB: 358 MB of
parameters), a 13-feature bottom MLP and a top MLP, trained with ``torch.optim.Adam(fused=True)``
(the fastest Adam on this CPU build) on a cycle of 8 fixed synthetic batches whose ids are
skewed (a few hot rows, scattered over the shards). Gradients stay allocated
(``zero_grad(set_to_none=False)``). Dense Adam updates every row of every table at every step.

The two checkpointers:

* ours: ``TorchCheckpointer(model, optimizer, policy="priority", period=C, fraction=1/8,
  shards=8, async_writes=True, background=True)`` in a local folder (fsync on, the store's
  defaults): every C/8 iterations it saves the 1/8 of the rows that changed most since their
  last save, with their Adam moments. The rows are chosen and copied on a thread of the
  checkpointer's while the next forward and backward run; the next ``optimizer.step`` waits
  for it (that wait is blocked time); the store's writer thread writes. ``--foreground``:
  the choice and the copies on the loop's thread (``ckpt.step`` returns once they are done).
* DCP: ``torch.distributed.checkpoint.async_save`` of the whole state dict (``model.state_dict()``
  and ``optimizer.state_dict()``) every C iterations, with ``no_dist=True``: one process, no
  process group. Its thread executor stages the state dict (copies it), then writes it with
  ``dcp.save`` in a background thread; at most one save is in flight (the next waits for the
  previous). Writes alternate between two folders (the last complete checkpoint survives).
  ``dcp.load`` reads it back in place into the live tensors.

Both save the same bytes per iteration (1/8 of the rows every C/8 iterations against all of
them every C). DCP runs with the fastest settings this machine gives it, found first:

1. **Writer sweep**: a synchronous, durable ``dcp.save`` of the state dict then ``dcp.load`` of
   it, for each ``FileSystemWriter(thread_count in --threads, single_file_per_rank in {True,
   False})`` (``sync_files`` stays on: the store fsyncs too), ``--sweep-rounds`` rounds, order
   alternating. The fastest save is the writer of DCP's async saves; the layout loaded fastest
   is what the restore reads (``FileSystemReader`` has no settings of its own: how fast it loads
   depends on the files the writer made).
2. **Staging sweep**, in the training loop, each for one warm-up save and ``--sweep-saves``
   saves every C iterations: ``writer`` (async_save's default with a ``FileSystemWriter``: the
   writer copies the state dict into new memory at every save), ``writer-cached``
   (``cache_staged_state_dict=True``: pinned memory, which this CPU build refuses),
   ``default-sync`` (a kept ``DefaultStager``: copies into buffers it keeps from save to save),
   ``default-sync-shm`` (the same in shared memory) and ``default-async`` (the kept
   ``DefaultStager`` copying in a background thread: async_save returns at once, and the loop
   waits for the copy before its next ``optimizer.step``, so the copy overlaps the forward and
   backward passes). Pinned memory and non-blocking copies need an accelerator (the stager
   ignores or refuses them here). The process executor (``AsyncCheckpointerType.PROCESS``)
   needs a process group (``dist.get_rank``) and is not run; it stages the same way, so it
   would not block the loop for less time than the thread executor.

Then the measurement (3): the same process runs blocks of C iterations with no checkpoints
("none"), with ours and with DCP (its fastest writer and staging), in ``--rounds`` rounds whose
order rotates, after one warm-up block each (ours' first step saves every row, DCP's first save
allocates its staging buffers). Each block starts at an iteration that is a multiple of C and
ends once every write is durable (its waits are in the block's time). Finally (4) the restore:
``--restores`` times, alternating, a ``dcp.load`` of a full checkpoint of the current state
(written once, synchronously, in the fastest-loading layout) into the live model and optimizer,
checked bit for bit against a copy taken at the save, against ``ckpt.fail([k])`` then the timed
``ckpt.recover([k], "partial")`` (k = 3, 0, 5, ...) from ours' store as the measurement left it,
checked by every row of shard k of every table being finite again (``fail`` wrote NaN there),
with the bytes it reads counted at the store's backend. One training iteration runs before
each restore so the state differs from the checkpoint. Loads read from the page cache unless
``--cold`` (root: drops it before each restore). Temporary folders go under ``--dir``
(default: the system's temporary folder) and are removed. The store fsyncs its files and
folders; DCP its files (not its folder: see vs_torch_dcp.py).

How to run it: ``.venv/bin/python benchmarks/torch_vs_dcp.py`` (4 to 9 minutes on 2 cores,
the more the busier the machine; about 5 GB of memory; torch: the setup script installs it,
or ``pip install scar[torch]``); ``--size-mb 64 --rounds 2`` is a smoke run of under a
minute. Other busy processes on the machine widen the overhead's interval.

What the numbers mean:

* ``blocked_s_per_save``: wall time the loop spends in a due save: ours, ``ckpt.step`` on an
  iteration when the policy saves (choosing the rows, copying them and their moments, handing
  them to the writer, waiting if two saves are already queued); DCP, ``async_save`` returning
  (building the state dict, waiting for the previous save if it is still writing, staging) plus,
  for async staging, the wait for the copy before the next ``optimizer.step``. From the blocks
  of step 3, warm-up excluded.
* ``blocked_ms_per_iteration``: all the loop's time in the checkpointer (every ``ckpt.step`` call,
  due or not; every wait) per iteration. ``blocked_ratio`` = ours / DCP; target <= 1.
* ``restore_s``: median seconds of ours' partial recovery of one shard of 8 and of DCP's full
  load; ``restore_ratio`` = DCP / ours; target >= 5. ``restore_read_mb``: megabytes ours reads
  to recover the shard (median), ``restore_shard_mb``: the bytes of the shard's rows (1/8 of
  the state; DCP reads all of ``state_bytes``).
* ``overhead_pct``: the iteration time of ours' blocks over the "none" blocks', a ratio of total
  times, with a 95 % bootstrap interval over rounds (paired); target < 3 %.
  ``dcp_overhead_pct``: the same for DCP (not a target).
* ``iteration_s``: seconds per iteration of each kind of block; ``cpu_ms_per_iteration``: this
  process's CPU (every thread: training, selection, the writers) and the whole machine's per
  iteration, by kind of block: what a checkpointer costs beyond the time it blocks.
* ``dcp_writer``, ``dcp_load_layout``, ``dcp_staging``: the settings DCP ran with (the sweeps'
  fastest); ``dcp_writer_sweep`` and ``dcp_staging_sweep``: every setting's figures.

Prints the tables, then, as its last line, one JSON object.
"""

from __future__ import annotations

import os
import sys

# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import argparse
import importlib.util
import json
import shutil
import statistics
import tempfile
import time
import warnings

import numpy as np


def _sibling(name: str):
    """A module of this folder (shared helpers: the bootstrap of ray_overhead.py, the page
    cache handling of vs_torch_dcp.py)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ro = _sibling("ray_overhead")  # overhead(): ratio of totals, bootstrap over rounds; Clock
vs = _sibling("vs_torch_dcp")  # drop_caches()

try:
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
    from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
    from torch.distributed.checkpoint.state_dict_saver import AsyncSaveResponse
except ImportError:
    sys.exit("torch_vs_dcp: needs torch: .venv/bin/pip install -e '.[torch]'")

from scar.algorithms.nets import DLRM
from scar.torch import TorchCheckpointer

FRACTION, SHARDS = 1 / 8, 8
BLOCKED_TARGET, RESTORE_TARGET, OVERHEAD_TARGET_PCT = 1.0, 5.0, 3.0
WEIGHTS = (30, 20, 15, 10, 8, 6, 4, 3, 2, 1, 1)  # % of the embedding rows in each table
DENSE, BATCHES = 13, 8
STAGINGS = ("writer", "writer-cached", "default-sync", "default-sync-shm", "default-async")


# -- the model and its training loop ------------------------------------------------------
class Loop:
    """DLRM and fused Adam on a cycle of fixed batches. ``it`` numbers the iterations; ``run``
    runs a block of them with a checkpointer (an ``Arm``) and times it."""

    def __init__(self, size_mb: int, batch: int, dim: int) -> None:
        torch.manual_seed(0)
        rows = size_mb * (1 << 20) // (3 * 4 * dim)  # parameters: a third of the state
        self.fields = [max(16, rows * w // 100) for w in WEIGHTS]
        self.model = DLRM(self.fields, dense=DENSE, dim=dim, bottom=(256, 128), top=(256, 128))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)
        self.loss = torch.nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(1)
        n = torch.tensor(self.fields)
        self.batches = []
        for _ in range(BATCHES):
            u = torch.rand(batch, len(self.fields), generator=gen)
            # skewed: row i of the popularity order is drawn with density ~ i^(-2/3); the
            # multiplication by a prime scatters the hot rows over the table (and the shards)
            ids = (u**3 * n).long() * 2654435761 % n
            dense = torch.randn(batch, DENSE, generator=gen)
            y = (torch.rand(batch, generator=gen) < 0.25).float()
            self.batches.append((dense, ids, y))
        self.it = 0
        self.run(Arm(), 3)  # the optimizer's state exists, the gradients are allocated
        self.it = 0  # blocks of C iterations start at multiples of C

    def state_bytes(self) -> tuple[int, int]:
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return params, sum(t.numel() * t.element_size() for _, t in tensors(self.state_dict()))

    def state_dict(self) -> dict:
        """What DCP saves and loads: the live tensors (loads copy into them in place)."""
        return {"model": self.model.state_dict(), "optim": self.opt.state_dict()}

    def iteration(self, arm: Arm) -> None:
        it, self.it = self.it, self.it + 1
        dense, ids, y = self.batches[it % BATCHES]
        self.opt.zero_grad(set_to_none=False)
        self.loss(self.model(dense, ids), y).backward()
        arm.before_update()
        self.opt.step()
        arm.after_step(it)

    def run(self, arm: Arm, n: int) -> dict:
        """``n`` iterations, then every write durable: seconds per iteration (wall, CPU),
        the blocked time and the saves' blocked times."""
        clock = ro.Clock()
        blocked, saves = arm.blocked, len(arm.saves)
        clock.start()
        for _ in range(n):
            self.iteration(arm)
        arm.finish()
        out = clock.per(n)
        out["blocked"] = (arm.blocked - blocked) / n
        out["saves"] = arm.saves[saves:]
        return out


def tensors(tree, prefix: str = ""):
    """(key, tensor) of every tensor of a nested state dict."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        if isinstance(v, torch.Tensor):
            yield f"{prefix}{k}", v
        elif isinstance(v, dict | list | tuple):
            yield from tensors(v, f"{prefix}{k}.")


# -- the checkpointers --------------------------------------------------------------------
class Arm:
    """No checkpoints; the base of the others. ``blocked``: seconds the loop spent in the
    checkpointer; ``saves``: blocked seconds of each save."""

    def __init__(self) -> None:
        self.blocked = 0.0
        self.saves: list[float] = []

    def before_update(self) -> None:
        """Before ``optimizer.step`` changes the tensors."""

    def after_step(self, it: int) -> None:
        """After ``optimizer.step`` of iteration ``it``."""

    def finish(self) -> None:
        """Every write durable."""

    def close(self) -> None:
        self.finish()


class Ours(Arm):
    """``background``: a due save runs beside the next forward and backward; the loop waits
    for it before ``optimizer.step`` (``fence_seconds``): that wait counts as the save's
    blocked time, with the time ``step`` took to hand it over."""

    def __init__(self, loop: Loop, folder: str, period: int, background: bool) -> None:
        super().__init__()
        self.ckpt = TorchCheckpointer(
            loop.model,
            loop.opt,
            policy="priority",
            period=period,
            fraction=FRACTION,
            store=folder,
            shards=SHARDS,
            async_writes=True,
            background=background,
        )
        self.fenced = 0.0  # fence_seconds already counted

    def after_step(self, it: int) -> None:
        waited = self.ckpt.fence_seconds - self.fenced  # before this iteration's update
        self.fenced = self.ckpt.fence_seconds
        self.blocked += waited
        if self.saves and waited:
            self.saves[-1] += waited
        t = time.perf_counter()
        due = self.ckpt.ckpt.due(it)
        self.ckpt.step(it)
        dt = time.perf_counter() - t
        self.blocked += dt  # a wait inside step is inside dt
        self.fenced = self.ckpt.fence_seconds
        if due:
            self.saves.append(dt)

    def finish(self) -> None:
        self.ckpt.wait()

    def close(self) -> None:
        self.ckpt.close()


def make_stager(staging: str):
    """async_save's ``async_stager`` for a staging setting (None: the writer stages)."""
    if staging.startswith("writer"):
        return None
    return DefaultStager(
        StagingOptions(
            use_pinned_memory=False,  # needs an accelerator
            use_shared_memory=staging.endswith("-shm"),
            use_async_staging=staging == "default-async",
            use_non_blocking_copy=False,  # needs an accelerator
        )
    )


def staging_unavailable(staging: str) -> str | None:
    """Why a staging setting cannot run here, or None."""
    if staging != "writer-cached":
        return None
    try:
        FileSystemWriter(tempfile.gettempdir(), cache_staged_state_dict=True).stage(
            {"x": torch.zeros(2)}
        )
    except RuntimeError as e:
        return str(e).strip().splitlines()[0]
    return None


class Dcp(Arm):
    def __init__(self, loop: Loop, folder: str, period: int, writer: dict, staging: str) -> None:
        super().__init__()
        self.loop, self.folder, self.period = loop, folder, period
        cached = staging == "writer-cached"
        self.writer = FileSystemWriter(folder, cache_staged_state_dict=cached, **writer)
        self.stager = make_stager(staging)
        self.staging = self.upload = None
        self.n = 0

    def after_step(self, it: int) -> None:
        if it % self.period:
            return
        t = time.perf_counter()
        if self.upload is not None:
            self.upload.result()  # one save in flight
        r = dcp.async_save(
            self.loop.state_dict(),
            checkpoint_id=os.path.join(self.folder, str(self.n % 2)),
            storage_writer=self.writer,
            async_stager=self.stager,
            no_dist=True,
        )
        if isinstance(r, AsyncSaveResponse):
            self.staging, self.upload = r.staging_completion, r.upload_completion
        else:
            self.upload = r
        self.n += 1
        dt = time.perf_counter() - t
        self.blocked += dt
        self.saves.append(dt)

    def before_update(self) -> None:
        if self.staging is not None:  # async staging: the copy must be done before the update
            t = time.perf_counter()
            self.staging.result()
            self.staging = None
            dt = time.perf_counter() - t
            self.blocked += dt
            self.saves[-1] += dt

    def finish(self) -> None:
        self.before_update()
        if self.upload is not None:
            self.upload.result()
            self.upload = None

    def close(self) -> None:
        self.finish()
        if self.stager is not None:
            self.stager.close()


# -- the steps ----------------------------------------------------------------------------
def writer_sweep(loop: Loop, a, work: str) -> list[dict]:
    """Synchronous durable dcp.save then dcp.load of the state dict, per writer setting."""
    settings = [
        {"thread_count": n, "single_file_per_rank": single}
        for single in (True, False)
        for n in a.threads
    ]
    times = [{"save": [], "load": [], "files": 0} for _ in settings]
    for r in range(a.sweep_rounds):
        order = range(len(settings)) if r % 2 == 0 else reversed(range(len(settings)))
        for i in order:
            folder = os.path.join(work, f"sweep-{i}")
            vs.drop_caches(False)
            t = time.perf_counter()
            dcp.save(
                loop.state_dict(),
                storage_writer=FileSystemWriter(folder, **settings[i]),
                no_dist=True,
            )
            times[i]["save"].append(time.perf_counter() - t)
            times[i]["files"] = len(os.listdir(folder))
            vs.drop_caches(a.cold)
            t = time.perf_counter()  # loads the values it holds: the state does not change
            dcp.load(loop.state_dict(), storage_reader=FileSystemReader(folder), no_dist=True)
            times[i]["load"].append(time.perf_counter() - t)
            shutil.rmtree(folder)
    return [
        {
            **s,
            "files": t["files"],
            "save_s": round(statistics.median(t["save"]), 3),
            "load_s": round(statistics.median(t["load"]), 3),
        }
        for s, t in zip(settings, times, strict=True)
    ]


def staging_sweep(loop: Loop, a, work: str, writer: dict) -> dict[str, dict]:
    """Each staging setting in the training loop: one warm-up save, then ``a.sweep_saves``
    saves every C iterations; the blocked seconds per save."""
    out = {}
    for staging in STAGINGS:
        why = staging_unavailable(staging)
        if why is not None:
            out[staging] = {"unavailable": why}
            continue
        arm = Dcp(loop, os.path.join(work, f"staging-{staging}"), a.period, writer, staging)
        try:
            first = loop.run(arm, a.period)["saves"]
            runs = [loop.run(arm, a.period) for _ in range(a.sweep_saves)]
        finally:
            arm.close()
            shutil.rmtree(arm.folder, ignore_errors=True)
        saves = [s for r in runs for s in r["saves"]]
        out[staging] = {
            "first_save_s": round(first[0], 4),
            "blocked_s_per_save": round(statistics.median(saves), 4),
            "iteration_s": round(statistics.mean(r["wall"] for r in runs), 4),
        }
    return out


def paired(loop: Loop, arms: dict[str, Arm], a) -> dict[str, list[dict]]:
    """A warm-up block of each arm, then ``a.rounds`` rounds of one block of C iterations of
    each, the order rotating from round to round."""
    for arm in arms.values():
        loop.run(arm, a.period)
    names = list(arms)
    blocks: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(a.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            blocks[name].append(loop.run(arms[name], a.period))
    return blocks


def restore(loop: Loop, ours: Ours, a, work: str, layout: dict) -> dict[str, list[float]]:
    """DCP's full load against ours' partial recovery of one shard, alternating; also the
    bytes ours reads (counted at its store's backend) and the bytes of the shard's rows."""
    folder = os.path.join(work, "restore-dcp")
    ours.ckpt.wait()
    dcp.save(loop.state_dict(), storage_writer=FileSystemWriter(folder, **layout), no_dist=True)
    saved = {k: t.clone() for k, t in tensors(loop.state_dict())}
    out: dict[str, list[float]] = {"dcp": [], "ours": [], "read_bytes": [], "shard_bytes": []}
    backend = ours.ckpt.store.backend
    read, read_into = backend.read, backend.read_into

    def counted_read(path: str, start: int = 0, length: int | None = None) -> bytes:
        data = read(path, start, length)
        out["read_bytes"][-1] += len(data)
        return data

    def counted_read_into(path: str, start: int, into: memoryview) -> int:
        n = read_into(path, start, into)
        out["read_bytes"][-1] += n
        return n

    def dcp_load() -> None:
        loop.iteration(Arm())  # the state moves away from the checkpoint
        vs.drop_caches(a.cold)
        t = time.perf_counter()
        dcp.load(loop.state_dict(), storage_reader=FileSystemReader(folder), no_dist=True)
        out["dcp"].append(time.perf_counter() - t)
        live = dict(tensors(loop.state_dict()))
        bad = [k for k, v in saved.items() if not torch.equal(live[k], v)]
        assert not bad, f"dcp.load did not give back the saved values of {bad[:3]}"

    def ours_recover(k: int) -> None:
        loop.iteration(Arm())
        ours.ckpt.wait()
        lost = ours.ckpt.fail([k])
        arrays = ours.ckpt.tables.arrays
        out["shard_bytes"].append(sum(arrays[n][ids].nbytes for n, ids in lost.items()))
        out["read_bytes"].append(0)
        vs.drop_caches(a.cold)
        backend.read, backend.read_into = counted_read, counted_read_into
        try:
            t = time.perf_counter()
            ours.ckpt.recover([k], "partial")
            out["ours"].append(time.perf_counter() - t)
        finally:
            del backend.read, backend.read_into  # the class's methods again
        bad = [n for n, ids in lost.items() if not np.isfinite(arrays[n][ids]).all()]
        assert not bad, f"rows of shard {k} not recovered in {bad[:3]}"

    for r in range(a.restores):
        k = (3 + 5 * r) % SHARDS
        if r % 2 == 0:
            dcp_load()
            ours_recover(k)
        else:
            ours_recover(k)
            dcp_load()
    shutil.rmtree(folder)
    return out


# -- the report ---------------------------------------------------------------------------
def summarize(blocks: dict[str, list[dict]]) -> dict:
    base = np.array([b["wall"] for b in blocks["none"]])
    out: dict = {"iteration_s": {}, "cpu_ms_per_iteration": {}}
    for name, bl in blocks.items():
        wall = np.array([b["wall"] for b in bl])
        out["iteration_s"][name] = round(float(wall.mean()), 4)
        cpu = {"process": round(1000 * statistics.median(b["process"] for b in bl), 1)}
        if all("machine" in b for b in bl):
            cpu["machine"] = round(1000 * statistics.median(b["machine"] for b in bl), 1)
        out["cpu_ms_per_iteration"][name] = cpu
        if name == "none":
            continue
        saves = [s for b in bl for s in b["saves"]]
        out.setdefault("saves", {})[name] = len(saves)
        out.setdefault("blocked_s_per_save", {})[name] = round(statistics.mean(saves), 4)
        out.setdefault("blocked_s_per_save_median", {})[name] = round(statistics.median(saves), 4)
        blocked = 1000 * sum(b["blocked"] for b in bl) / len(bl)
        out.setdefault("blocked_ms_per_iteration", {})[name] = round(blocked, 2)
        pct, ci = ro.overhead(base, wall)
        key = "overhead" if name == "ours" else f"{name}_overhead"
        out[f"{key}_pct"], out[f"{key}_ci95"] = pct, ci
    return out


def header(*columns: tuple[str, int]) -> None:
    """A table's header: (label, width) of each column, right-aligned."""
    print(" ".join(f"{label:>{width}}" for label, width in columns))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="MiB of state (params + moments)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=64, help="embedding width")
    ap.add_argument("--period", type=int, default=16, help="C: DCP saves every C iterations")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--restores", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4], help="DCP thread_count")
    ap.add_argument("--sweep-rounds", type=int, default=2)
    ap.add_argument("--sweep-saves", type=int, default=2)
    ap.add_argument("--cold", action="store_true", help="drop the page cache before loads (root)")
    ap.add_argument("--dir", default=None, help="parent of the temporary folders")
    ap.add_argument(
        "--foreground",
        action="store_true",
        help="ours chooses and copies rows on the loop's thread (default: background=True)",
    )
    a = ap.parse_args()
    if a.period % 8 or a.rounds < 2 or min(a.restores, a.sweep_rounds, a.sweep_saves) < 1:
        ap.error("--period must be a multiple of 8, --rounds >= 2, the other counts >= 1")
    warnings.filterwarnings("ignore")  # DCP: no process group; the pinned-memory fallback
    t0 = time.perf_counter()
    loop = Loop(a.size_mb, a.batch, a.dim)
    param_bytes, state_bytes = loop.state_bytes()
    work = tempfile.mkdtemp(prefix="scar-torch-vs-dcp-", dir=a.dir)
    arms: dict[str, Arm] = {}
    try:
        writers = writer_sweep(loop, a, work)
        best_save = min(writers, key=lambda w: w["save_s"])
        best_load = min(writers, key=lambda w: w["load_s"])
        writer = {k: best_save[k] for k in ("thread_count", "single_file_per_rank")}
        layout = {k: best_load[k] for k in ("thread_count", "single_file_per_rank")}
        stagings = staging_sweep(loop, a, work, writer)
        ran = {k: v for k, v in stagings.items() if "unavailable" not in v}
        staging = min(ran, key=lambda k: ran[k]["blocked_s_per_save"])
        arms = {
            "none": Arm(),
            "ours": Ours(loop, os.path.join(work, "ours"), a.period, not a.foreground),
            "dcp": Dcp(loop, os.path.join(work, "dcp"), a.period, writer, staging),
        }
        blocks = paired(loop, arms, a)
        restores = restore(loop, arms["ours"], a, work, layout)
    finally:
        for arm in arms.values():
            arm.close()
        shutil.rmtree(work, ignore_errors=True)

    s = summarize(blocks)
    gb = state_bytes / 1e9
    print(
        f"DLRM: {len(loop.fields)} tables x {a.dim}, {sum(loop.fields)} rows; state "
        f"{gb:.3f} GB ({param_bytes / 1e9:.3f} GB of parameters + Adam's 2 moments); batch "
        f"{a.batch}; C = {a.period}, r = 1/8, {SHARDS} shards; loads "
        f"{'cold' if a.cold else 'warm'}; {os.cpu_count()} CPUs"
    )
    print("\n1. DCP writer: synchronous durable dcp.save, then dcp.load (median seconds)")
    header(
        ("thread_count", 12),
        ("single_file", 11),
        ("files", 5),
        ("save s", 7),
        ("GB/s", 6),
        ("load s", 7),
        ("GB/s", 6),
    )
    for w in writers:
        print(
            f"{w['thread_count']:>12} {str(w['single_file_per_rank']):>11} {w['files']:>5} "
            f"{w['save_s']:>7.3f} {gb / w['save_s']:>6.2f} {w['load_s']:>7.3f} "
            f"{gb / w['load_s']:>6.2f}"
        )
    print(f"fastest save: {writer}; fastest load: {layout}")
    print(f"\n2. DCP staging (async_save every {a.period} iterations, writer {writer})")
    print(f"{'staging':>17} {'first save s':>12} {'blocked s/save':>14} {'s/iteration':>11}")
    for name, v in stagings.items():
        if "unavailable" in v:
            print(f"{name:>17}  unavailable: {v['unavailable']}")
        else:
            print(
                f"{name:>17} {v['first_save_s']:>12.3f} {v['blocked_s_per_save']:>14.4f} "
                f"{v['iteration_s']:>11.4f}"
            )
    print(f"fastest: {staging}")
    print(f"\n3. Training, {a.rounds} rounds of {a.period}-iteration blocks (DCP: {staging})")
    header(
        ("", 5),
        ("s/it", 7),
        ("overhead %", 10),
        ("95 % CI", 15),
        ("saves", 5),
        ("blocked s/save", 14),
        ("blocked ms/it", 13),
        ("CPU ms/it", 9),
        ("machine", 7),
    )
    for name in arms:
        cpu = s["cpu_ms_per_iteration"][name]
        if name == "none":
            cols = f"{'':>10} {'':>15} {'':>5} {'':>14} {'':>13}"
        else:
            key = "overhead" if name == "ours" else f"{name}_overhead"
            lo, hi = s[f"{key}_ci95"]
            cols = (
                f"{s[f'{key}_pct']:>10.1f} {f'[{lo:.1f}, {hi:.1f}]':>15} {s['saves'][name]:>5} "
                f"{s['blocked_s_per_save'][name]:>14.4f} "
                f"{s['blocked_ms_per_iteration'][name]:>13.2f}"
            )
        print(
            f"{name:>5} {s['iteration_s'][name]:>7.4f} {cols} {cpu['process']:>9.1f} "
            f"{cpu.get('machine', float('nan')):>7.1f}"
        )
    b = s["blocked_ms_per_iteration"]
    blocked_ratio = b["ours"] / b["dcp"]
    med = {k: statistics.median(restores[k]) for k in ("dcp", "ours")}
    restore_ratio = med["dcp"] / med["ours"]
    read_mb = statistics.median(restores["read_bytes"]) / 1e6
    shard_mb = statistics.median(restores["shard_bytes"]) / 1e6
    print(
        f"blocked per iteration, ours / DCP: {b['ours']:.2f} / {b['dcp']:.2f} ms = "
        f"{blocked_ratio:.2f} (target <= {BLOCKED_TARGET:g}); overhead of ours "
        f"{s['overhead_pct']:.1f} % (target < {OVERHEAD_TARGET_PCT:g} %), of DCP "
        f"{s['dcp_overhead_pct']:.1f} %"
    )
    print(f"\n4. Restore ({layout} for DCP), seconds")
    header(("", 22), *((f"#{r}", 7) for r in range(a.restores)), ("median", 7))
    for name, label in (("dcp", "DCP full load"), ("ours", "ours: 1 shard of 8")):
        v = restores[name]
        print(f"{label:>22} " + " ".join(f"{x:>7.3f}" for x in v) + f" {med[name]:>7.3f}")
    print(
        f"DCP / ours: {restore_ratio:.2f} (target >= {RESTORE_TARGET:g}); ours read "
        f"{read_mb:.1f} MB for a shard of {shard_mb:.1f} MB ({read_mb / shard_mb:.2f}x), DCP "
        f"{state_bytes / 1e6:.1f} MB"
    )
    met = {
        "blocked": blocked_ratio <= BLOCKED_TARGET,
        "restore": restore_ratio >= RESTORE_TARGET,
        "overhead": s["overhead_pct"] < OVERHEAD_TARGET_PCT,
    }
    print(
        json.dumps(
            {
                "benchmark": "torch_vs_dcp",
                "state_bytes": state_bytes,
                "param_bytes": param_bytes,
                "batch": a.batch,
                "period": a.period,
                "fraction": FRACTION,
                "shards": SHARDS,
                "rounds": a.rounds,
                "cold": a.cold,
                "iteration_s": s["iteration_s"],
                "saves": s["saves"],
                "blocked_s_per_save": s["blocked_s_per_save"],
                "blocked_s_per_save_median": s["blocked_s_per_save_median"],
                "blocked_ms_per_iteration": b,
                "blocked_ratio": round(blocked_ratio, 3),
                "blocked_target": BLOCKED_TARGET,
                "restore_s": {k: round(v, 4) for k, v in med.items()},
                "restore_ratio": round(restore_ratio, 2),
                "restore_target": RESTORE_TARGET,
                "restore_read_mb": round(read_mb, 1),
                "restore_shard_mb": round(shard_mb, 1),
                "overhead_pct": s["overhead_pct"],
                "overhead_ci95": s["overhead_ci95"],
                "overhead_target_pct": OVERHEAD_TARGET_PCT,
                "dcp_overhead_pct": s["dcp_overhead_pct"],
                "dcp_overhead_ci95": s["dcp_overhead_ci95"],
                "cpu_ms_per_iteration": s["cpu_ms_per_iteration"],
                "dcp_writer": writer,
                "dcp_load_layout": layout,
                "dcp_staging": staging,
                "dcp_writer_sweep": writers,
                "dcp_staging_sweep": stagings,
                "met": met,
                "all_met": all(met.values()),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
