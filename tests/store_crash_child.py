"""A writer for the crash-consistency test: ``python store_crash_child.py STORE MODE``.

It opens the store (recovering from the last kill), prints ``ready``, then saves version after
version until it is killed, printing each version number once it is committed (in async mode,
after ``wait()``). The content of every version is a function of its number (``version_rows``),
so the test can replay versions 0..k and know exactly what a store at version k holds.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np

TABLES = (("w", 40, 3, "float32"), ("b", 7, 1, "float64"))


def version_rows(v: int) -> tuple[dict, dict]:
    """(rows, aux) saved by version ``v``: every 6th version (and 0) is full, the rest partial."""
    rng = np.random.default_rng([v, 99])
    rows = {}
    for name, n, width, dtype in TABLES:
        if v % 6 == 0:
            ids = None
            k = n
        else:
            k = int(rng.integers(0, n // 3 + 1))
            ids = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
        values = (v * 1000 + rng.integers(0, 999, size=(k, width))).astype(dtype)
        rows[name] = (ids, values)
    return rows, {"version": np.array([v]), "cursor": rng.integers(0, 1 << 30, size=3)}


def replay(k: int) -> tuple[dict, dict]:
    """(values, saved iterations) of every table after versions 0..k."""
    values = {name: np.zeros((n, w), dtype) for name, n, w, dtype in TABLES}
    iters = {name: np.full(n, -1, np.int64) for name, n, _, _ in TABLES}
    for v in range(k + 1):
        for name, (ids, vals) in version_rows(v)[0].items():
            rows = slice(None) if ids is None else ids
            values[name][rows] = vals
            iters[name][rows] = v
    return values, iters


def options(mode: str) -> dict:
    return {
        "async_writes": mode == "async",
        "compression": "zstd" if mode == "zstd" else None,
        "keep_last": 2,
        "compact_after": 3,
        "chunk_bytes": 64,  # several chunks per table: compaction and retention at work
        "fsync": mode == "sync",  # a kill loses no page cache: the others go faster
    }


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    # Import scar.store without scar/__init__.py (which loads numba): a faster start, so
    # that more of the test's time goes to kills while writing.
    spec = importlib.util.find_spec("scar")
    pkg = types.ModuleType("scar")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["scar"] = pkg
    from scar.store import DurableStore, TableSpec

    store = DurableStore(path, **options(mode))
    store.open([TableSpec(name, n, w, dtype) for name, n, w, dtype in TABLES])
    latest = store.latest()
    v = 0 if latest is None else latest.version + 1
    print("ready", flush=True)
    while True:
        rows, aux = version_rows(v)
        result = store.save(v, rows, aux)
        assert result.version == v, (result.version, v)
        if mode != "async":
            print(v, flush=True)
        elif v % 3 == 2:
            store.wait()
            print(v, flush=True)
        v += 1


if __name__ == "__main__":
    main()
