"""Save and load the same tensors with torch.distributed.checkpoint and with the SCAR store.

    .venv/bin/python benchmarks/vs_torch_dcp.py [--size-mb 512] [--rounds 5] [--cold]

DCP runs in one process without a process group:
``dcp.save(sd, storage_writer=FileSystemWriter(dir))`` (fsyncs its files, writes ``.metadata`` last) and ``dcp.load`` into preallocated tensors. The store saves
the same tensors (rows = first dimension) as one synchronous, durable full checkpoint and loads
them into the same preallocated arrays (``read_rows(..., out=...)``). Both alternate (which one
saves first alternates too), each round in fresh directories. Durability: DCP fsyncs its files
and its ``.metadata`` but not its directory, so after a power cut the renamed ``.metadata`` may
be gone; the store also fsyncs its directories. "dcp save+dir" adds one fsync of DCP's
directory (what a caller needs for the same durability) and is reported as a second ratio.
Loads read from the page cache unless ``--cold`` (root: drops the cache before each load).
Then a partial restore: one shard of eight of every tensor, counting the bytes the store reads
(the goal: about 1/8). Target: the store's throughput >= DCP's both ways.
Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

# benchmarks/select.py would shadow the standard library's `select`: drop this script's folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]  # fmt: skip

import numpy as np  # noqa: E402

from scar.state import Sharding  # noqa: E402
from scar.store import DurableStore, TableSpec  # noqa: E402
from scar.store.backends import fsync_path  # noqa: E402

N_TENSORS, WIDTH = 8, 256


def drop_caches(cold: bool) -> None:
    os.sync()
    if cold:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cold", action="store_true", help="drop the page cache before loads (root)")
    ap.add_argument("--dir", default=".")
    a = ap.parse_args()
    try:
        import torch
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
    except ImportError:
        sys.exit(
            "vs_torch_dcp: needs torch: bash scripts/setup.sh installs it (torch==2.13.0, CPU)"
        )
    warnings.filterwarnings("ignore")  # DCP warns that no process group is initialised
    rows = a.size_mb * (1 << 20) // (4 * WIDTH * N_TENSORS)
    gen = torch.Generator().manual_seed(0)
    sd = {f"layer{i}.weight": torch.randn(rows, WIDTH, generator=gen) for i in range(N_TENSORS)}
    nbytes = sum(t.numel() * 4 for t in sd.values())
    into = {k: torch.empty_like(t) for k, t in sd.items()}
    specs = [TableSpec(k, rows, WIDTH) for k in sd]
    work = tempfile.mkdtemp(prefix="scar-bench-", dir=a.dir)
    t_ = {"dcp save": [], "dcp save+dir": [], "store save": [], "dcp load": [], "store load": []}
    try:
        for r in range(a.rounds):
            d_dir, s_dir = os.path.join(work, f"dcp-{r}"), os.path.join(work, f"store-{r}")

            def dcp_save(d_dir=d_dir) -> None:
                drop_caches(False)
                t = time.perf_counter()
                dcp.save(sd, storage_writer=FileSystemWriter(d_dir))
                t_["dcp save"].append(time.perf_counter() - t)
                t = time.perf_counter()
                fsync_path(d_dir)  # what DCP leaves out: its files' directory entries
                t_["dcp save+dir"].append(t_["dcp save"][-1] + time.perf_counter() - t)

            def store_save(s_dir=s_dir) -> None:
                drop_caches(False)
                store = DurableStore(s_dir)
                store.open(specs)
                t = time.perf_counter()
                store.save(0, {k: (None, v.numpy()) for k, v in sd.items()})
                t_["store save"].append(time.perf_counter() - t)
                store.close()

            for save in (dcp_save, store_save) if r % 2 == 0 else (store_save, dcp_save):
                save()
            for v in into.values():
                v.zero_()
            drop_caches(a.cold)
            t = time.perf_counter()
            dcp.load(into, storage_reader=FileSystemReader(d_dir))
            t_["dcp load"].append(time.perf_counter() - t)
            assert all(torch.equal(into[k], sd[k]) for k in sd)
            for v in into.values():
                v.zero_()
            drop_caches(a.cold)
            t = time.perf_counter()
            reader = DurableStore(s_dir, readonly=True)
            for k, v in into.items():
                reader.read_rows(k, out=v.numpy())
            t_["store load"].append(time.perf_counter() - t)
            assert all(torch.equal(into[k], sd[k]) for k in sd)
            if r < a.rounds - 1:
                shutil.rmtree(d_dir)
                shutil.rmtree(s_dir)
        # Partial restore: shard 3 of 8 of every tensor, counting the bytes read.
        drop_caches(a.cold)
        reader = DurableStore(s_dir, readonly=True)
        counted = []
        read, read_into = reader.backend.read, reader.backend.read_into
        reader.backend.read = lambda p, s=0, n=None: counted.append(len(b := read(p, s, n))) or b
        reader.backend.read_into = lambda p, s, o: counted.append(k := read_into(p, s, o)) or k
        shard = Sharding(rows, 8).rows_of([3])
        t = time.perf_counter()
        for k in sd:
            got = reader.read_rows(k, shard)
            assert np.array_equal(got, sd[k].numpy()[shard])
        t_shard = time.perf_counter() - t
        stored = sum(seg.nbytes for seg in reader.view.segments)
        fraction = sum(counted) / stored
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in t_.items()}
    gb = nbytes / 1e9
    print(f"{N_TENSORS} tensors of {rows} x {WIDTH} float32, {gb:.2f} GB; loads {'cold' if a.cold else 'warm'}")  # fmt: skip
    print(f"{'':>13} " + " ".join(f"{'round ' + str(r):>9}" for r in range(a.rounds)) + f" {'median GB/s':>12}")  # fmt: skip
    for k, v in t_.items():
        print(f"{k:>13} " + " ".join(f"{gb / x:>9.3f}" for x in v) + f" {gb / med[k]:>12.3f}")
    save_ratio = med["dcp save"] / med["store save"]
    same_durability = med["dcp save+dir"] / med["store save"]
    load_ratio = med["dcp load"] / med["store load"]
    print(
        f"store / DCP throughput: save {save_ratio:.2f} ({same_durability:.2f} against DCP with "
        f"its directory fsynced too), load {load_ratio:.2f} (target >= 1)"
    )
    print(
        f"restore one shard of 8: read {sum(counted) / 1e6:.1f} MB of {stored / 1e6:.1f} MB "
        f"stored = {fraction:.3f} (1/8 = 0.125), {t_shard * 1e3:.0f} ms"
    )
    print(
        json.dumps(
            {
                "benchmark": "vs_torch_dcp",
                "ratio": round(min(save_ratio, load_ratio), 3),
                "save_ratio": round(save_ratio, 3),
                "save_ratio_same_durability": round(same_durability, 3),
                "load_ratio": round(load_ratio, 3),
                "shard_read_fraction": round(fraction, 4),
                "bytes": nbytes,
                "cold": a.cold,
                "target": 1.0,
                "met": min(save_ratio, load_ratio) >= 1.0,
            }
        )
    )


if __name__ == "__main__":
    main()
