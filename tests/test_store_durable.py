"""The durable store on every backend (local directory, memory://, s3:// on moto's server):
locking, async writes, compaction, retention, clean-up, compression, partial reads, fallback,
and clear errors (the store contract shared with the in-memory store: test_store_contract.py)."""

import os
import time
import warnings

import numpy as np
import pytest
from store_backends import BACKENDS, new_url, s3_server  # noqa: F401

from scar.checkpoint import Checkpointer
from scar.errors import ConfigError, CorruptCheckpointError, StoreError
from scar.policies import make_policy
from scar.state import Sharding, State
from scar.store import CheckpointWarning, DurableStore, MemoryStore, TableSpec
from scar.store.backends import LocalBackend, local
from scar.store.backends import spares as spare_files
from scar.store.format import manifest_name
from scar.store.tools import verify

SPECS = [TableSpec("a", 10, 3), TableSpec("b", 4, 2, "float64")]


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    if request.param == "s3":
        request.getfixturevalue("s3_server")
    return new_url(request.param, tmp_path)


def random_saves(rng, n_versions, specs, partial_only=False):
    """A reproducible sequence of (iteration, rows, aux) saves: full and partial."""
    out = []
    for v in range(n_versions):
        rows = {}
        for s in specs:
            if v == 0 or (not partial_only and v % 5 == 0):
                rows[s.name] = (None, rng.standard_normal((s.n_rows, s.width)).astype(s.dtype))
            else:
                k = int(rng.integers(0, s.n_rows + 1))
                ids = np.sort(rng.choice(s.n_rows, size=k, replace=False))
                rows[s.name] = (ids, rng.standard_normal((k, s.width)).astype(s.dtype))
        out.append((3 * v, rows, {"cursor": np.array([v, -v]), "z": rng.integers(0, 9, 5)}))
    return out


def same_as(store, ref, specs):
    for s in specs:
        np.testing.assert_array_equal(store.read_rows(s.name), ref.read_rows(s.name))
        np.testing.assert_array_equal(store.saved_iteration(s.name), ref.saved_iteration(s.name))
    it, aux = store.read_aux()
    it_ref, aux_ref = ref.read_aux()
    assert it == it_ref and aux.keys() == aux_ref.keys()
    for k in aux:
        np.testing.assert_array_equal(aux[k], aux_ref[k])


# -- the store contract itself is in test_store_contract.py (every store, every backend) -----
def test_one_writer_at_a_time(url):
    first = DurableStore(url)
    with pytest.raises(StoreError, match="in use by pid .*one writer at a time"):
        DurableStore(url)
    DurableStore(url, readonly=True).close()  # readers need no lock
    first.close()
    DurableStore(url).close()  # released


def test_a_missing_store_is_a_clear_error(url):
    with pytest.raises(StoreError, match="no checkpoint store at"):
        DurableStore(url, readonly=True)


def put_file(url: str, rel: str, data: bytes) -> None:
    """A file written into a store's folder by someone else (not through the store)."""
    from scar.store.backends import backend_for

    b = backend_for(url)
    if b.local:
        path = os.path.join(b.root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    else:
        b.fs.pipe_file(b._p(rel), data)


def test_a_folder_that_holds_no_store_is_a_clear_error(url):
    """A path that exists but holds nothing a store writer made (a mistyped path, a parent
    folder) is refused by readers - not read as an empty store that ``scar ckpt verify``
    calls intact - and by writers, which would otherwise make it a store; an empty folder
    becomes one."""
    put_file(url, "notes/stray.txt", b"not a checkpoint")
    with pytest.raises(StoreError, match="is not a checkpoint store"):
        DurableStore(url, readonly=True)
    with pytest.raises(StoreError, match="holds (files|objects) but no checkpoint store"):
        DurableStore(url)
    if url.startswith("/"):
        empty = os.path.join(url, "empty")
        os.makedirs(empty)
        with DurableStore(empty) as w:
            w.open(SPECS)
            w.save(0, {s.name: (None, np.zeros((s.n_rows, s.width), s.dtype)) for s in SPECS})
        with DurableStore(empty, readonly=True) as r:
            assert r.latest().iteration == 0


# -- async writes ---------------------------------------------------------------------------
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_async_and_sync_writes_store_the_same(url, compression):
    rng = np.random.default_rng(7)
    ref = MemoryStore()
    ref.open(SPECS)
    with DurableStore(url, async_writes=True, compression=compression, compact_after=3) as s:
        s.open(SPECS)
        for it, rows, aux in random_saves(rng, 12, SPECS):
            r1, r2 = s.save(it, rows, aux), ref.save(it, rows, aux)
            assert (r1.rows, r1.value_bytes, r1.stored_bytes) == (r2.rows, r2.value_bytes, r2.stored_bytes)  # fmt: skip
        same_as(s, ref, SPECS)
    same_as(DurableStore(url, readonly=True), ref, SPECS)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_an_idle_priority_writer_runs_at_idle_priority_and_stores_every_value(tmp_path):
    rng = np.random.default_rng(3)
    ref = MemoryStore()
    ref.open(SPECS)
    with DurableStore(str(tmp_path / "s"), async_writes=True, writer_priority="idle") as s:
        s.open(SPECS)
        for it, rows, aux in random_saves(rng, 8, SPECS):
            s.save(it, rows, aux)
            ref.save(it, rows, aux)
        s.wait()
        assert os.sched_getscheduler(s._writer._thread.native_id) == os.SCHED_IDLE
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # only the writer thread
        same_as(s, ref, SPECS)


def test_an_unknown_writer_priority_is_refused(tmp_path):
    with pytest.raises(
        ConfigError, match="writer_priority must be one of normal or idle, got 'high'"
    ):
        DurableStore(str(tmp_path / "s"), writer_priority="high")
    assert not (tmp_path / "s").exists()  # refused before anything was created


def with_ones_saved(url: str, async_writes: bool) -> DurableStore:
    """A store (SPECS) whose version 0, every row 1, is committed."""
    s = DurableStore(url, async_writes=async_writes)
    s.open(SPECS)
    s.save(0, {"a": (None, np.ones((10, 3), np.float32)), "b": (None, np.ones((4, 2)))})
    s.wait()
    return s


@pytest.mark.parametrize("known", ["before the next save", "during it", "at the next wait"])
def test_a_background_failure_surfaces_on_the_next_call(url, known):
    """A background write fails; the next call raises it, whether the writer has failed by
    the time the next save is called, or while that save is being made (it raises there),
    or only after (the save is queued behind the failed write, dropped with it, and the
    wait raises). Each way the failed versions' numbers are used again: none was
    committed."""
    import threading

    s = with_ones_saved(url, async_writes=True)
    real = s.backend.publish
    go = threading.Event()

    def broken(files, rel, data):
        go.wait(10)
        raise StoreError("disk full")

    s.backend.publish = broken
    s.save(1, {"a": (np.array([1]), np.full((1, 3), 5, np.float32))})  # returns: written later
    error = "background write of checkpoint version 1 failed: disk full"

    def fail_now():
        go.set()
        deadline = time.monotonic() + 10
        while not s._writer.failed and time.monotonic() < deadline:
            time.sleep(0.001)

    if known == "before the next save":
        fail_now()
        with pytest.raises(StoreError, match=error):
            s.save(2, {"a": (np.array([2]), np.full((1, 3), 6, np.float32))})
    elif known == "during it":  # after the save's first check, before its job is queued
        check_rows = s._check_rows
        s._check_rows = lambda rows: fail_now() or check_rows(rows)
        with pytest.raises(StoreError, match=error):
            s.save(2, {"a": (np.array([2]), np.full((1, 3), 6, np.float32))})
        del s._check_rows
    else:
        s.save(2, {"a": (np.array([2]), np.full((1, 3), 6, np.float32))})
        go.set()
        with pytest.raises(StoreError, match=error):
            s.wait()
    s.backend.publish = real
    s.wait()  # reported once
    r = s.save(3, {"a": (np.array([3]), np.full((1, 3), 7, np.float32))})
    # the failed versions were never committed: a local store uses their numbers again; an
    # object store never writes an object twice, so it goes on after them (after version 2
    # too, unless that save was refused before it was numbered)
    after = 2 if known == "before the next save" else 3
    assert r.version == (1 if s.backend.overwrites else after)
    got = s.read_rows("a")
    assert got[3].tolist() == [7, 7, 7] and got[1].tolist() == [1, 1, 1]
    assert [v.iteration for v in s.versions()] == [0, 3]
    s.close()


@pytest.mark.parametrize("async_writes", [False, True])
def test_a_commit_whose_last_flush_failed_is_kept_and_its_number_never_reused(
    tmp_path, async_writes
):
    """The manifest's rename succeeded, the directory fsync after it failed: the save reports
    the error, but the version is on disk, so the next save must not write its files again."""
    url = str(tmp_path / "s")
    s = with_ones_saved(url, async_writes)
    real = s.backend._fsync_all

    def failing(files, dirs, concurrent=False):
        if dirs == ["manifests"]:
            raise OSError(5, "Input/output error")
        real(files, dirs, concurrent)

    s.backend._fsync_all = failing
    with pytest.raises(StoreError, match="Input/output error"):
        s.save(1, {"a": (np.array([1]), np.full((1, 3), 5, np.float32))})
        s.wait()
    s.backend._fsync_all = real
    before = {p.name: p.read_bytes() for p in (tmp_path / "s" / "data").iterdir()}
    r = s.save(2, {"a": (np.array([2]), np.full((1, 3), 6, np.float32))})
    s.wait()
    assert r.version == 2  # version 1 is committed: its number is not written again
    for name, data in before.items():  # nor any of its files
        assert (tmp_path / "s" / "data" / name).read_bytes() == data
    assert [v.iteration for v in s.versions()] == [0, 1, 2]
    got = s.read_rows("a")
    assert got[1].tolist() == [5, 5, 5] and got[2].tolist() == [6, 6, 6]
    s.close()
    again = DurableStore(url, readonly=True)
    assert verify(again).ok
    np.testing.assert_array_equal(again.read_rows("a"), got)


def test_row_ids_are_stored_as_a_bitmap_when_that_is_smaller(tmp_path):
    """A save of more than 1/64 of a chunk's rows stores them as a bitmap of the chunk (1/8 of
    the rows: 8x smaller than int64 ids); sparser saves list them."""
    spec = TableSpec("w", 6400, 1)
    with DurableStore(str(tmp_path / "s")) as s:
        s.open([spec])
        rng = np.random.default_rng(0)
        s.save(0, {"w": (None, np.zeros((6400, 1), np.float32))})
        expect = np.zeros((6400, 1), np.float32)
        for it, k in [(1, 800), (2, 100), (3, 101)]:
            ids = np.sort(rng.choice(6400, k, replace=False))
            vals = rng.standard_normal((k, 1)).astype(np.float32)
            s.save(it, {"w": (ids, vals)})
            expect[ids] = vals
            seg = s.view.segments[-1]
            want = ("bitmap", 800) if k > 100 else ("list", 8 * k)
            assert (seg.id_coding, seg.index_bytes) == want
        np.testing.assert_array_equal(s.read_rows("w"), expect)
    again = DurableStore(str(tmp_path / "s"), readonly=True)
    np.testing.assert_array_equal(again.read_rows("w"), expect)
    assert verify(again).ok


def test_large_sparse_saves_through_the_compiled_loops_store_every_value(tmp_path):
    """Saves of at least COMPILED_ROWS rows take the compiled paths (loss counts, live-set
    updates, row bitmaps); with compaction and reopening they read back like the reference."""
    from scar.store.index import COMPILED_ROWS

    n, k = 4 * COMPILED_ROWS, COMPILED_ROWS + 7
    specs = [TableSpec("w", n, 1), TableSpec("v", n // 2, 2, "float64")]
    rng = np.random.default_rng(11)
    ref = MemoryStore()
    ref.open(specs)
    url = str(tmp_path / "s")
    with DurableStore(url, async_writes=True, compact_after=3) as s:
        s.open(specs)
        for it in range(8):
            rows = {}
            for spec in specs:
                if it == 0:
                    ids = None
                    vals = rng.standard_normal((spec.n_rows, spec.width)).astype(spec.dtype)
                else:
                    ids = np.sort(rng.choice(spec.n_rows, min(k, spec.n_rows), replace=False))
                    vals = rng.standard_normal((ids.size, spec.width)).astype(spec.dtype)
                rows[spec.name] = (ids, vals)
            s.save(it, rows)
            ref.save(it, rows)
        same_as(s, ref, specs)
        assert any(seg.row_iters for seg in s.view.segments)  # compacted
        assert {seg.id_coding for seg in s.view.segments if not seg.dense} == {"bitmap"}
    same_as(DurableStore(url, readonly=True), ref, specs)


@pytest.fixture(params=["numpy", "compiled"])
def loops(request, monkeypatch):
    """The store's loops for a test: numpy's (the compiled ones unloaded, and no save large
    enough to load them) or the compiled ones (loaded: every save runs them)."""
    import sys

    if request.param == "numpy":
        monkeypatch.delitem(sys.modules, "scar.store._kernels", raising=False)
        monkeypatch.setattr("scar.store.index.COMPILED_ROWS", 1 << 40)
    else:
        import scar.store._kernels  # noqa: F401
    return request.param


def test_small_saves_give_the_same_store_with_numpy_or_compiled_loops(tmp_path, monkeypatch, loops):
    """Below COMPILED_ROWS the store runs its compiled loops only once a process has loaded
    them (a shard server does, up front): both ways, every value, saved iteration and file is
    the same - compaction (per-row iterations, rows placed from each live segment) included."""
    import sys

    calls = []
    if loops == "compiled":
        from scar.store import _kernels

        real = _kernels.fill_chunk
        monkeypatch.setattr(_kernels, "fill_chunk", lambda *a: calls.append(1) or real(*a))
    specs = [
        TableSpec("w", 300, 1),
        TableSpec("v", 120, 3, "float64"),
        TableSpec("h", 50, 2, "float16"),
    ]
    rng = np.random.default_rng(17)
    ref = MemoryStore()
    ref.open(specs)
    url = str(tmp_path / "s")
    with DurableStore(url, compact_after=3, keep_last=2, chunk_bytes=256) as s:
        s.open(specs)
        for v, (it, rows, aux) in enumerate(random_saves(rng, 24, specs, partial_only=True)):
            s.save(it, rows, aux)
            ref.save(it, rows, aux)
            if v % 6 == 5:
                same_as(s, ref, specs)
        same_as(s, ref, specs)
        assert sum(seg.row_iters for seg in s.view.segments) >= 3  # compacted, several chunks
    same_as(DurableStore(url, readonly=True), ref, specs)
    assert ("scar.store._kernels" in sys.modules) == (loops == "compiled")
    assert bool(calls) == (loops == "compiled")


def as_older_format(store, fmt: int, fields: dict) -> None:
    """Rewrite every manifest of the local store at ``store`` as format ``fmt`` wrote it:
    without the segment fields that came later (``fields``: each one's value in every
    segment, the value the older format implied)."""
    import json

    from scar.store.format import MAGIC, _covered, checksum

    for path in (store / "manifests").iterdir():
        doc = json.loads(path.read_bytes().split(b"\n", 1)[1])
        doc["format_version"] = fmt
        for seg in doc["segments"]:
            assert {k: seg.pop(k) for k in fields} == fields
        body = json.dumps(doc).encode()
        crc = checksum(_covered(fmt, len(body)), body)
        path.write_bytes(b"%s %d %s %d\n" % (MAGIC, fmt, crc.encode(), len(body)) + body)


def test_a_format_1_store_is_still_read(tmp_path, monkeypatch):
    """Stores written before bitmap row ids (format 1: listed ids, no id_coding) read as before."""

    from scar.store import codec

    monkeypatch.setattr(codec, "id_coding_for", lambda rows, chunk_rows: "list")
    rng = np.random.default_rng(5)
    ref = MemoryStore()
    ref.open(SPECS)
    url = str(tmp_path / "s")
    with DurableStore(url, keep_last=None) as s:
        s.open(SPECS)
        for it, rows, aux in random_saves(rng, 6, SPECS):
            s.save(it, rows, aux)
            ref.save(it, rows, aux)
    as_older_format(tmp_path / "s", 1, {"id_coding": "list", "iter_bytes": 8})
    monkeypatch.undo()
    old = DurableStore(url, readonly=True)
    same_as(old, ref, SPECS)
    assert verify(old).ok


@pytest.mark.parametrize(("late", "iter_bytes"), [(60_000, 2), (70_000, 4), (5_000_000_000, 8)])
def test_merged_segments_store_ages_in_as_few_bytes_as_hold_them(tmp_path, late, iter_bytes):
    """A merged segment keeps each row's iteration as its age (the segment's iteration minus
    the row's) in 2 or 4 bytes while they hold it, else as int64 iterations; each reads back."""
    specs = [TableSpec("w", 40, 2)]
    ref = MemoryStore()
    ref.open(specs)
    rng = np.random.default_rng(2)
    url = str(tmp_path / "s")
    saves = [(-1, None), (3, np.arange(5)), (late, np.arange(3, 9)), (late + 1, np.array([7]))]
    with DurableStore(url, compact_after=3) as s:
        s.open(specs)
        for it, ids in saves:
            vals = rng.standard_normal((40 if ids is None else ids.size, 2)).astype(np.float32)
            s.save(it, {"w": (ids, vals)})
            ref.save(it, {"w": (ids, vals)})
        merged = [seg for seg in s.view.segments if seg.row_iters]
        assert [seg.iter_bytes for seg in merged] == [iter_bytes]
        np.testing.assert_array_equal(s.saved_iteration("w"), ref.saved_iteration("w"))
        np.testing.assert_array_equal(s.read_rows("w"), ref.read_rows("w"))
    again = DurableStore(url, readonly=True)
    np.testing.assert_array_equal(again.saved_iteration("w"), ref.saved_iteration("w"))
    assert verify(again).ok


def test_a_merge_leaves_an_oldest_segment_that_still_holds_half_the_chunk(tmp_path, loops):
    """Priority checkpoints rewrite a few hot rows: while the oldest live segment (the full
    save) still holds at least half the chunk, a merge combines only the segments after it -
    it rewrites the rows saved since, not the whole chunk - and once the full save holds
    less than half, the merge takes every row. Values and iterations read as saved."""
    specs = [TableSpec("w", 100, 2)]
    ref = MemoryStore()
    ref.open(specs)
    rng = np.random.default_rng(4)
    url = str(tmp_path / "s")
    with DurableStore(url, compact_after=4) as s:
        s.open(specs)

        def save(it, ids):
            vals = rng.standard_normal((100 if ids is None else ids.size, 2)).astype(np.float32)
            s.save(it, {"w": (ids, vals)})
            ref.save(it, {"w": (ids, vals)})

        save(0, None)
        for it in (1, 2, 3, 4):  # hot rows 0..29: the 4th save merges
            save(it, np.sort(rng.choice(30, 12, replace=False)))
        base = "data/v0000000000.t0.c0000.seg"
        segs = s.view.segments
        assert [seg.path for seg in segs][0] == base and len(segs) == 2
        assert segs[1].row_iters and segs[1].rows <= 30  # only the hot rows were rewritten
        same_as(s, ref, specs)
        for it in range(5, 13):  # now rows 30..93 too: the full save falls under half
            save(it, np.arange(30 + 8 * (it - 5), 38 + 8 * (it - 5)))
        assert base not in [seg.path for seg in s.view.segments]
        same_as(s, ref, specs)
    same_as(DurableStore(url, readonly=True), ref, specs)


def test_with_the_fewest_segments_allowed_a_merge_still_comes_every_other_save(tmp_path):
    """compact_after=2: leaving the oldest segment would leave two live segments, and so a
    merge at every save; the merge then takes every row, and merges come every other save."""
    with DurableStore(str(tmp_path / "s"), compact_after=2) as s:
        s.open([TableSpec("w", 100, 1)])
        s.save(0, {"w": (None, np.zeros((100, 1), np.float32))})
        merges = 0
        for it in range(1, 11):  # hot rows: the full save keeps 90 % of the rows throughout
            s.save(it, {"w": (np.arange(10), np.full((10, 1), it, np.float32))})
            merges += s.view.segments[-1].row_iters
        assert merges == 5
        np.testing.assert_array_equal(s.read_rows("w")[:10, 0], np.full(10, 10))


def test_a_merge_keeps_rows_saved_at_later_iterations_than_the_merging_save(tmp_path):
    """Saves need not come in iteration order (a rollback saves at an earlier iteration than
    rows already saved): a merge by the earlier save keeps the later rows' iterations and
    values, and they read back after reopening (they were once reported corrupt)."""
    specs = [TableSpec("w", 10, 1)]
    ref = MemoryStore()
    ref.open(specs)
    url = str(tmp_path / "s")
    with DurableStore(url, compact_after=2) as s:
        s.open(specs)
        for it, ids in [(0, None), (10, np.arange(3)), (5, np.arange(5, 8))]:
            vals = np.full((10 if ids is None else ids.size, 1), it, np.float32)
            s.save(it, {"w": (ids, vals)})
            ref.save(it, {"w": (ids, vals)})
        assert [seg.row_iters for seg in s.view.segments] == [True]  # all merged
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        again = DurableStore(url, readonly=True)
        assert again.saved_iteration("w").tolist() == [10, 10, 10, 0, 0, 5, 5, 5, 0, 0]
        same = again.read_rows("w") == ref.read_rows("w")
    assert same.all()


def test_a_format_2_store_with_int64_row_iterations_is_still_read(tmp_path, monkeypatch):
    """Stores written before per-row ages (format 2: int64 iterations, no iter_bytes) read as
    before, merged segments included; a writer adds format-3 versions to them."""

    from scar.store import codec

    monkeypatch.setattr(codec, "iter_bytes_for", lambda max_age: 8)
    specs = [TableSpec("w", 64, 4), TableSpec("v", 5, 1, "float64")]
    rng = np.random.default_rng(8)
    ref = MemoryStore()
    ref.open(specs)
    url = str(tmp_path / "s")
    saves = random_saves(rng, 14, specs, partial_only=True)
    with DurableStore(url, keep_last=None, compact_after=3, chunk_bytes=128) as s:
        s.open(specs)
        for it, rows, aux in saves[:10]:
            s.save(it, rows, aux)
            ref.save(it, rows, aux)
        assert any(seg.row_iters for seg in s.view.segments)
    as_older_format(tmp_path / "s", 2, {"iter_bytes": 8})
    monkeypatch.undo()
    old = DurableStore(url, readonly=True)
    same_as(old, ref, specs)
    assert verify(old).ok
    with DurableStore(url, keep_last=None, compact_after=3, chunk_bytes=128) as s:
        s.open(specs)
        for it, rows, aux in saves[10:]:
            s.save(it, rows, aux)
            ref.save(it, rows, aux)
        assert {seg.iter_bytes for seg in s.view.segments if seg.row_iters} >= {2}
        same_as(s, ref, specs)


# -- compaction, retention, clean-up --------------------------------------------------------
def test_compaction_and_retention_bound_the_files_and_keep_every_value(url):
    specs = [TableSpec("w", 64, 4), TableSpec("v", 5, 1, "float64")]
    rng = np.random.default_rng(3)
    ref = MemoryStore()
    ref.open(specs)
    with DurableStore(url, keep_last=2, compact_after=3, chunk_bytes=128) as s:
        s.open(specs)
        assert len(s.catalog.tables[0].chunks) - 1 == 8
        n = 12 if url.startswith("s3") else 30  # fewer round trips to the S3 server
        for it, rows, aux in random_saves(rng, n, specs, partial_only=True):
            s.save(it, rows, aux)
            ref.save(it, rows, aux)
            same_as(s, ref, specs)
            assert len(s.versions()) <= 2
            assert all(n <= 3 for n in s.catalog.live.per_chunk.values())
        files = s.backend.files("data")
        listed = {p for m in s.intact() for p in m.paths()}
        kept = spares(s.backend, "data")  # local disks: retired files to reuse
        assert set(files) - set(kept) == listed  # nothing else unlisted is kept
        assert len(kept) <= spare_files.MAX_SPARES and (kept == [] or s.backend.local)
        assert len(files) - len(kept) <= 2 * (8 * 3 + 3)
        assert any(seg.row_iters for seg in s.view.segments)  # compaction happened
    assert not spares(s.backend)  # closing deletes them
    same_as(DurableStore(url, readonly=True), ref, specs)


def sparse_versions(rng, n, rows=4096, k=512):
    """``n`` saves of ``k`` of ``rows`` one-column rows each: files of one size every time."""
    for v in range(n):
        ids = np.sort(rng.choice(rows, k, replace=False))
        yield v + 1, {"w": (ids, rng.standard_normal((k, 1)).astype(np.float32))}


def spares(backend, folder=None):
    """The spares (retired files kept to write over) in ``folder`` of a backend (None: in
    both of a store's folders)."""
    folders = ["manifests", "data"] if folder is None else [folder]
    return [p for f in folders for p in backend.files(f) if backend.is_spare(p)]


def inodes(store, folder):
    return {
        os.stat(os.path.join(store.backend.root, p)).st_ino: p for p in store.backend.files(folder)
    }


@pytest.mark.parametrize("fsync", [True, False])
def test_a_local_store_writes_new_versions_over_retired_files_and_keeps_every_value(
    tmp_path, fsync
):
    """Retired segments and manifests are renamed to spares and written over by later
    versions of their size (same inode, new name), never while they wait for the commit
    that flushes their retirement; every value reads back, and a verify passes."""
    specs = [TableSpec("w", 4096, 1)]
    rng = np.random.default_rng(7)
    ref = MemoryStore()
    ref.open(specs)
    reused = 0
    with DurableStore(str(tmp_path / "s"), keep_last=2, fsync=fsync) as s:
        s.open(specs)
        base = {"w": (None, np.zeros((4096, 1), np.float32))}
        s.save(0, base)
        ref.save(0, base)
        seen = {}  # inode -> the paths it has held
        for it, rows in sparse_versions(rng, 40):
            waiting = {n for n, _ in s.backend._spares._waiting}
            before = {**inodes(s, "data"), **inodes(s, "manifests")}
            s.save(it, rows)
            ref.save(it, rows)
            after = {**inodes(s, "data"), **inodes(s, "manifests")}
            for ino, p in after.items():
                old = before.get(ino)
                spare = s.backend.is_spare
                if old is not None and old != p and spare(old) and not spare(p):
                    reused += 1
                    assert old not in waiting  # a spare retired by the last save waits
                seen.setdefault(ino, set()).add(p)
            if it % 8 == 0:
                same_as(s, ref, specs)
        assert reused >= 30  # most versions wrote over a retired segment or manifest
        assert any(len({p for p in ps if not s.backend.is_spare(p)}) > 1 for ps in seen.values())
        rep = verify(DurableStore(str(tmp_path / "s"), readonly=True))
        assert rep.ok, rep.bad
        # one note for every spare, not a line each
        assert rep.spares and all(s.backend.is_spare(p) for p in rep.spares)
        assert [n for n in rep.notes if "write over" in n] == [
            f"{len(rep.spares)} retired file(s) kept to write over (.spare-*, ignored by "
            "readers; the writer deletes them when it closes the store, or the next writer does)"
        ]
        same_as(s, ref, specs)
    assert not spares(DurableStore(str(tmp_path / "s")).backend)
    same_as(DurableStore(str(tmp_path / "s"), readonly=True), ref, specs)


def test_spares_left_by_a_crashed_writer_are_deleted_by_the_next(tmp_path):
    url = str(tmp_path / "s")
    s = DurableStore(url, keep_last=1)
    s.open([TableSpec("w", 4096, 1)])
    s.save(0, {"w": (None, np.ones((4096, 1), np.float32))})
    for it, rows in sparse_versions(np.random.default_rng(1), 6):
        s.save(it, rows)
    want = s.read_rows("w")
    names = spares(s.backend)
    assert names and any(p.startswith("manifests/") for p in names)
    s._closed = True  # as if killed: no close, its spares stay; its lock goes with it
    s.backend._spares.drop()
    s.backend.unlock()
    again = DurableStore(url)
    assert not spares(again.backend)
    np.testing.assert_array_equal(again.read_rows("w"), want)
    again.close()


def test_spares_are_bounded_and_only_small_files_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(spare_files, "MAX_SPARES", 3)
    monkeypatch.setattr(spare_files, "SPARE_BYTES", 8192)
    b = LocalBackend(str(tmp_path))
    b.make_root(("data",))
    files = [(f"data/v{i:010d}.aux", [bytes(4000 if i < 5 else 9000)]) for i in range(7)]
    b.write_files(files)
    b.recycle([f for f, _ in files])
    kept = spares(b, "data")
    assert len(kept) == 3 and all(os.path.getsize(b._p(p)) == 4000 for p in kept)
    assert len(b.files("data")) == 3  # the rest deleted, the large ones among them
    b.write_files([("data/g", [bytes(100)])])
    assert os.stat(b._p("data/g")).st_ino not in {os.stat(b._p(p)).st_ino for p in kept}
    b._spares.committed({"manifests"})  # a commit that flushed another folder: still waiting
    b.write_files([("data/g2", [bytes(100)])])
    assert len(spares(b, "data")) == 3
    b._spares.committed({"data", "manifests"})  # (a commit flushed their renames)
    b.write_files([("data/h", [b"x" * 100])])  # one block, as the spares: one is written over
    assert len(spares(b, "data")) == 2
    with open(b._p("data/h"), "rb") as f:
        assert f.read() == b"x" * 100  # cut to its size: nothing of the old file is left
    for p in spares(b, "data"):
        os.unlink(b._p(p))  # spares deleted behind the writer's back: new files instead
    b.write_files([("data/i", [b"y" * 10]), ("data/j", [b"z" * 10])])
    with open(b._p("data/i"), "rb") as f, open(b._p("data/j"), "rb") as g:
        assert f.read() == b"y" * 10 and g.read() == b"z" * 10
    b.unlock()
    assert sorted(b.files("data")) == ["data/g", "data/g2", "data/h", "data/i", "data/j"]


def test_a_writer_removes_what_a_crashed_writer_left(url):
    with DurableStore(url) as s:
        s.open(SPECS)
        s.save(0, {"a": (None, np.zeros((10, 3), np.float32)), "b": (None, np.zeros((4, 2)))})
        b = s.backend
    b.write_files([("data/v0000000001.t0.c0000.seg", [b"half a segment"])])
    if b.local:  # an interrupted rename leaves a temporary manifest
        b.write_files([("manifests/.v0000000001.json.tmp-0123456789ab", [b"SCAR-MANIF"])])
    rep = verify(DurableStore(url, readonly=True))
    assert rep.ok and len(rep.notes) == (2 if b.local else 1)
    DurableStore(url).close()
    assert DurableStore(url).backend.files("data") == ["data/v0000000000.t0.c0000.seg", "data/v0000000000.t1.c0000.seg"]  # fmt: skip
    assert verify(DurableStore(url, readonly=True)).notes == []


def test_compression_pays_where_it_can(url):
    with DurableStore(url, compression="zstd") as s:
        s.open([TableSpec("counts", 200, 20), TableSpec("noise", 200, 20)])
        counts = np.random.default_rng(0).poisson(0.3, (200, 20)).astype(np.float32)
        noise = np.random.default_rng(1).standard_normal((200, 20)).astype(np.float32)
        s.save(0, {"counts": (None, counts), "noise": (None, noise)})
        codecs = {s.catalog.tables[seg.table].name: seg.codec for seg in s.view.segments}
        assert codecs == {"counts": "zstd", "noise": "raw"}
        assert s.versions()[0].stored_bytes < counts.nbytes * 0.5 + noise.nbytes
    r = DurableStore(url, readonly=True)
    np.testing.assert_array_equal(r.read_rows("counts"), counts)
    np.testing.assert_array_equal(r.read_rows("noise"), noise)


def test_restoring_one_shard_of_eight_reads_an_eighth_of_the_bytes(url):
    spec = TableSpec("w", 4000, 16)
    sharding = Sharding(4000, 8)
    data = np.random.default_rng(0).standard_normal((4000, 16)).astype(np.float32)
    with DurableStore(url, chunk_bytes=16000) as s:
        s.open([spec])
        s.save(0, {"w": (None, data)})
        data[::7] += 1
        s.save(1, {"w": (np.arange(0, 4000, 7), data[::7])})
    r = DurableStore(url, readonly=True)
    r.read_rows("w", np.arange(1))  # builds the row index (reads the partial segments' ids)
    read = []
    real_read, real_into = r.backend.read, r.backend.read_into
    r.backend.read = lambda p, start=0, length=None: read.append(len(b := real_read(p, start, length))) or b  # fmt: skip
    r.backend.read_into = lambda p, start, out: read.append(n := real_into(p, start, out)) or n
    rows = sharding.rows_of([3])
    np.testing.assert_array_equal(r.read_rows("w", rows), data[rows])
    stored = sum(seg.nbytes for seg in r.view.segments)
    assert sum(read) <= stored / 8 * 1.1
    assert sum(read) >= data[rows].nbytes


# -- what a recovery sees -------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["partial", "full"])
def test_checkpointer_recovers_the_same_through_any_store(url, mode):
    results = []
    for store in (MemoryStore(), DurableStore(url, async_writes=True)):
        rng = np.random.default_rng(5)
        state = State({"w": np.zeros((40, 3), np.float32), "u": np.zeros((9, 2))}, n_shards=4)
        ckpt = Checkpointer(state, make_policy("priority", period=4, fraction=0.25), store, aux=lambda: {"k": np.array([1])})  # fmt: skip
        ckpt.save_all(0)
        for it in range(1, 13):
            for name in state:
                state[name] += rng.standard_normal(state[name].shape).astype(state[name].dtype)
            ckpt.step(it)
        ckpt.fail([1, 3])
        rec = ckpt.recover([1, 3], mode)
        results.append((state.copy(), rec.restart_iteration, rec.rows_restored, rec.aux))
        store.close()
    (s1, r1, n1, a1), (s2, r2, n2, a2) = results
    assert r1 == r2 and n1 == n2 and a1.keys() == a2.keys()
    for name in s1:
        np.testing.assert_array_equal(s1[name], s2[name])


def test_falls_back_to_an_older_version_when_a_file_is_bad(url):
    with DurableStore(url, keep_last=None) as s:
        s.open(SPECS)
        s.save(0, {"a": (None, np.zeros((10, 3), np.float32)), "b": (None, np.zeros((4, 2)))})
        s.save(1, {"a": (np.array([4]), np.ones((1, 3), np.float32))})
        s.save(2, {"a": (np.array([4, 5]), np.full((2, 3), 2, np.float32))})
        b = s.backend
    bad = "data/v0000000002.t0.c0000.seg"
    data = b.read(bad)
    put_file(url, bad, data[:-1] + bytes([data[-1] ^ 1]))
    r = DurableStore(url, readonly=True)
    with pytest.warns(CheckpointWarning, match=f"{bad}: values section checksum mismatch"):
        got = r.read_rows("a")
    # Rows 4 and 5 come from their newest intact copies (versions 1 and 0); the rest as saved.
    assert got[4].tolist() == [1, 1, 1] and got[5].tolist() == [0, 0, 0]
    assert r.saved_iteration("a")[[3, 4, 5]].tolist() == [0, 1, 0]
    assert list(verify(DurableStore(url, readonly=True)).bad) == [bad]
    base = "data/v0000000000.t0.c0000.seg"  # rows 0..3 have no other copy
    put_file(url, base, b.read(base)[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        r = DurableStore(url, readonly=True)
        with pytest.raises(CorruptCheckpointError, match=f"{base}: truncated values section.*no older intact copy of 8 row"):  # fmt: skip
            r.read_rows("a")
        assert r.read_rows("a", [4]).tolist() == [[1, 1, 1]]  # rows with a copy still read


def test_a_manifest_pointing_outside_the_store_is_refused(url):
    with DurableStore(url) as s:
        s.open(SPECS)
        s.save(0, {"a": (None, np.zeros((10, 3), np.float32)), "b": (None, np.zeros((4, 2)))})
        m = s.view
        b = s.backend
    from dataclasses import replace

    from scar.store.format import encode_manifest

    for evil in ("../outside.seg", "/etc/passwd", "data/../../x.seg", "data/v0000000000/../../x"):
        segs = (replace(m.segments[0], path=evil), *m.segments[1:])
        b.delete([f"manifests/{manifest_name(0)}"])
        b.commit(f"manifests/{manifest_name(0)}", encode_manifest(replace(m, segments=segs)))
        r = DurableStore(url, readonly=True)
        with pytest.raises(CorruptCheckpointError, match="points outside the store"):
            r.read_rows("a")


def test_a_manifest_with_a_bad_iter_bytes_or_section_size_is_refused(tmp_path):
    """iter_bytes is one of 2, 4, 8, and a merged segment's index section must hold exactly
    that many bytes per row: a manifest saying otherwise (checksum valid) is corrupt."""
    from dataclasses import replace

    from scar.store.format import encode_manifest
    from scar.store.manifests import decode_manifest

    url = str(tmp_path / "s")
    with DurableStore(url, compact_after=2) as s:
        s.open([TableSpec("w", 40, 1)])
        for it, ids in [(0, None), (1, np.arange(5)), (2, np.arange(3, 9))]:
            s.save(it, {"w": (ids, np.ones((40 if ids is None else ids.size, 1), np.float32))})
        m = s.view
    merged = next(i for i, seg in enumerate(m.segments) if seg.row_iters)
    assert m.segments[merged].iter_bytes == 2
    for field, value, why in [
        ("iter_bytes", 3, "iter_bytes 3 is not one of"),
        ("iter_bytes", 4, "section sizes do not match"),
    ]:
        segs = list(m.segments)
        segs[merged] = replace(segs[merged], **{field: value})
        data = encode_manifest(replace(m, segments=tuple(segs)))
        with pytest.raises(CorruptCheckpointError, match=why):
            decode_manifest(data, f"manifests/{manifest_name(m.version)}")


def test_an_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot write checkpoint store .*file/store"):
        DurableStore(str(blocker / "store"))


def test_a_crafted_aux_shape_is_refused_not_a_traceback(url):
    """A manifest with a valid checksum but an aux shape whose size wraps around int64."""
    from dataclasses import replace

    from scar.store.format import AuxArray, encode_manifest

    with DurableStore(url) as s:
        s.open(SPECS)
        s.save(0, {"a": (None, np.zeros((10, 3), np.float32))}, aux={"c": np.array([1, 2])})
        m, b = s.view, s.backend
    huge = AuxArray("c", "<i8", (2**40, 2**40))
    evil = replace(m, aux=replace(m.aux, nbytes=0, crc="00000000", arrays=(huge,)))
    b.delete([f"manifests/{manifest_name(0)}"])
    b.commit(f"manifests/{manifest_name(0)}", encode_manifest(evil))
    r = DurableStore(url, readonly=True)
    with pytest.raises(CorruptCheckpointError, match="aux arrays are implausibly large"):
        r.read_aux()


def test_zstd_is_tried_on_a_sample_before_a_whole_segment(url, monkeypatch):
    from scar.store import codec

    real = codec._zstd()
    compressed = []

    class Counting:
        def __init__(self, level):
            self.z = real.ZstdCompressor(level=level)

        def compress(self, data):
            compressed.append(memoryview(data).nbytes)
            return self.z.compress(data)

    monkeypatch.setattr(codec, "_zstd", lambda: type("Z", (), {"ZstdCompressor": Counting, "ZstdDecompressor": real.ZstdDecompressor}))  # fmt: skip
    noise = np.random.default_rng(0).integers(0, 2**32, (1024, 256), dtype=np.uint32)
    noise = noise.view(np.float32)  # random bits: incompressible
    zeros = np.zeros((1024, 256), np.float32)
    with DurableStore(url, compression="zstd") as s:
        s.open([TableSpec("noise", 1024, 256), TableSpec("zeros", 1024, 256)])
        s.save(0, {"noise": (None, noise)})
        assert [seg.codec for seg in s.view.segments] == ["raw"]
        assert sum(compressed) <= 4 * codec.PROBE  # the sample only, not the 1 MB segment
        s.save(1, {"zeros": (None, zeros)})
        assert {seg.codec for seg in s.view.segments} == {"raw", "zstd"}
    r = DurableStore(url, readonly=True)
    np.testing.assert_array_equal(r.read_rows("noise"), noise)
    np.testing.assert_array_equal(r.read_rows("zeros"), zeros)


@pytest.mark.parametrize("large", [False, True])
def test_creating_a_store_flushes_its_new_directories(tmp_path, monkeypatch, large):
    """After a power cut, a new store's folders must still be there: their parents' entries are
    fsynced when they are created (and every commit fsyncs the folders it writes to), whether
    the batch is flushed file by file (small) or concurrently, after early write-back (large)."""
    import os

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name fsynced files")
    monkeypatch.setattr(local, "LARGE_BATCH", 1 if large else 1 << 40)
    synced, real = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))  # fmt: skip
    data = local._datasync  # files: fdatasync (their data and size, not their times)
    monkeypatch.setattr(local, "_datasync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or data(fd))  # fmt: skip
    root = tmp_path / "new" / "store"
    with DurableStore(str(root)) as s:
        assert {str(tmp_path), str(tmp_path / "new"), str(root)} <= set(synced)
        s.open(SPECS)
        synced.clear()
        s.save(0, {"a": (None, np.zeros((10, 3), np.float32))})
    assert {str(root / "data"), str(root / "manifests"), str(root / "data" / "v0000000000.t0.c0000.seg")} <= set(synced)  # fmt: skip


@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_a_retried_commit_that_had_succeeded_is_not_another_writers(request, tmp_path, kind):
    """An object store put retried after a lost reply finds its own manifest: not an error
    (else the version would look uncommitted and every later save would fail on it)."""
    if kind == "s3":
        request.getfixturevalue("s3_server")
    url = new_url(kind, tmp_path)
    with DurableStore(url) as s:
        s.open(SPECS)
        s.save(0, {"a": (None, np.zeros((10, 3), np.float32))})
        b, rel = s.backend, f"manifests/{manifest_name(0)}"
        mine = b.read(rel)
        b.commit(rel, mine)  # the retry: same bytes
        with pytest.raises(StoreError, match="exists: another writer committed it"):
            b.commit(rel, mine + b" ")


def test_snapshot_buffers_of_different_sizes_are_recycled_by_identity():
    """Async saves of different sizes (a full save, then priority saves) reuse pooled buffers;
    taking one that is not first in the pool must not compare arrays element-wise."""
    from scar.store.writer import SnapshotPool

    pool = SnapshotPool(keep=2)
    pool.give([np.empty(4 * 2**20 + 4, np.uint8), np.empty(2**20, np.uint8)])
    a = np.arange(2**18, dtype=np.float32)
    copy, buf = pool.copy(a)
    assert buf is not None and buf.nbytes == 2**20 and (copy == a).all()
    pool.give([buf, np.empty(3 * 2**20, np.uint8)])  # three buffers, keep 2: smallest goes
    big, buf2 = pool.copy(np.ones(2**20, np.float32))  # 4 MB fits the 4 MB + 4 buffer
    assert buf2.nbytes == 4 * 2**20 + 4 and (big == 1).all()


def test_async_saves_of_large_changing_row_sets_store_every_value(tmp_path):
    spec = [TableSpec("w", 2**18, 1)]
    rng = np.random.default_rng(3)
    ref = MemoryStore()
    ref.open(spec)
    with DurableStore(str(tmp_path / "s"), async_writes=True) as s:
        s.open(spec)
        for it, n in enumerate([2**18, 2**15, 2**17, 2**15, 2**16], start=1):
            ids = None if n == 2**18 else np.sort(rng.choice(2**18, n, replace=False))
            vals = rng.standard_normal((n, 1)).astype(np.float32)
            s.save(it, {"w": (ids, vals)})
            ref.save(it, {"w": (ids, vals)})
        s.wait()
        assert np.array_equal(s.read_rows("w"), ref.read_rows("w"))


@pytest.mark.parametrize("dense_uids", [None, 8])
def test_losses_count_each_owner_however_far_back_the_oldest_live_segment_is(
    monkeypatch, loops, dense_uids
):
    """A base segment that keeps most of its rows stays live while thousands of versions
    follow (a sparse model's rarely touched rows): the loss counts stay exact, from a tally
    that costs each save its rows, not the span of live uids (left all zero after each call),
    or, past _DENSE_UIDS, from sorting the owners."""
    from scar.store import index
    from scar.store.format import Segment, Table

    if dense_uids is not None:
        monkeypatch.setattr(index, "_DENSE_UIDS", dense_uids)
    n, chunk = 4000, 1000
    live = index.LiveSet((Table("w", n, 1, "float32", tuple(range(0, n + 1, chunk))),))

    def seg(c, rows, dense=False):
        return Segment("p", 0, c, 0, 0, rows, dense, False, "raw", 0, "", 0, "")

    for c in range(n // chunk):  # the base: every chunk, dense
        live.apply([(seg(c, chunk, dense=True), None, None)])
    rng = np.random.default_rng(0)
    for step in range(600):
        c = int(rng.integers(n // chunk))
        if step % 97 == 96:  # now and then a whole chunk again
            updates = [(seg(c, chunk, dense=True), None, None)]
        else:
            ids = np.sort(rng.choice(chunk, int(rng.integers(1, 40)), replace=False)) + c * chunk
            updates = [(seg(c, ids.size), ids, None)]
        rows = [np.arange(c * chunk, (c + 1) * chunk) if i is None else i for _, i, _ in updates]
        old = np.concatenate([live.owner[0][r] for r in rows])
        uids, counts = np.unique(old[old >= 0], return_counts=True)
        assert live.losses(updates) == dict(zip(uids.tolist(), counts.tolist(), strict=True))
        assert not live._tally.any()
        live.apply(updates)
    assert live._uid - next(iter(live.segments)) > 500  # a base segment lived throughout


def test_a_half_imported_loops_module_is_not_used(monkeypatch):
    """While one thread imports the compiled loops, the module is in sys.modules without
    them: another thread (an async writer) must not take it (it failed with AttributeError,
    intermittently, when a save loaded the loops while the writer wrote the one before)."""
    import sys
    import types

    from scar.store import index

    half = types.ModuleType("scar.store._kernels")  # as it looks mid-import: no loops yet
    monkeypatch.setitem(sys.modules, "scar.store._kernels", half)
    assert index.compiled(10) is None  # numpy's loops meanwhile
    assert not index.increasing(np.array([3, 1], np.int64))
    assert index.increasing(np.array([1, 3], np.int64))
    monkeypatch.undo()
    index.load_kernels()
    assert index.compiled(10) is sys.modules["scar.store._kernels"]


def test_increasing_is_strictly_sorted_with_either_loops(loops):
    """The store's sortedness check of row ids (on save, on read, in a segment's index): the
    same answer from the compiled pass and from numpy's, on every edge."""
    from scar.store.index import increasing

    cases = {
        (): True,
        (5,): True,
        (0, 1, 7): True,
        (0, 1, 1): False,  # a repeat
        (2, 1): False,
        (0, 3, 2, 9): False,
    }
    for ids, want in cases.items():
        a = np.asarray(ids, np.int64)
        assert increasing(a) is want, ids
        assert increasing(np.repeat(a, 2)[::2]) is want, ids  # a strided view
    assert increasing(np.array([0, 2], np.int32)) is True  # another int type: numpy's


def test_reopening_a_store_of_full_checkpoints_does_not_load_the_compiled_loops(tmp_path):
    """A replacement shard reopens its store and reads every row: with only full checkpoints
    (dense chunks) that needs no compiled loop, and loading them (numba, ~0.5 s) would stand
    between the kill and the restored shard serving again (ray_recovery.py)."""
    import subprocess
    import sys

    from scar.store.index import COMPILED_ROWS

    n = 8 * COMPILED_ROWS  # chunks of COMPILED_ROWS rows and more
    url = str(tmp_path / "s")
    with DurableStore(url, chunk_bytes=4 * COMPILED_ROWS) as s:
        s.open([TableSpec("w", n, 1)])
        for it in range(4):  # the live set replays a full save over a full save
            s.save(it, {"w": (None, np.full((n, 1), it, np.float32))})
    code = (
        "import sys, numpy as np\n"
        "from scar.store import DurableStore\n"
        f"s = DurableStore({url!r})\n"
        "w = s.read_rows('w')\n"
        "s.save(4, {'w': (None, w + 1)})\n"  # and writes the next full checkpoint
        "s.close()\n"
        "assert (w == 3).all(), w\n"
        "print(sorted(m for m in ('numba', 'scar.store._kernels') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    assert (DurableStore(url, readonly=True).read_rows("w") == 4).all()
