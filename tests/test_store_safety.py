"""A writer never destroys data a restore could need, and readers of a live store read one
version whole. Each test is a defect found by fault injection (and fails without its fix):
folders that are not stores, symbolic links, unreadable manifests, bad segments whose older
copies retention would delete, lock files and leases, readers racing retention."""

import contextlib
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from store_backends import new_url, s3_server  # noqa: F401 (a fixture)

from scar.cli import main
from scar.errors import CorruptCheckpointError, StoreError
from scar.store import (
    CheckpointWarning,
    DurableStore,
    TableSpec,
    VersionRetired,
    open_store,
)
from scar.store.backends import lease
from scar.store.tools import verify

SPECS = [TableSpec("a", 40, 3), TableSpec("b", 6, 2, "float64")]


def full(value: float) -> dict:
    return {s.name: (None, np.full((s.n_rows, s.width), value, s.dtype)) for s in SPECS}


@contextlib.contextmanager
def quiet():
    """Ignore the store's warnings (each test checks what it means to)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        yield


def flip(path: str, offset: int = -1) -> None:
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[offset] ^= 1
        f.seek(0)
        f.write(data)


# -- 1. folders that hold no store, symbolic links ------------------------------------------
def test_a_writer_refuses_a_folder_that_holds_files_but_no_store(tmp_path):
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "train.csv").write_text("x,y\n1,2\n")
    with pytest.raises(StoreError, match="holds files but no checkpoint store .*data/train.csv"):
        open_store(str(proj))
    assert (proj / "data" / "train.csv").read_text() == "x,y\n1,2\n"
    assert sorted(os.listdir(proj)) == ["data"]  # nothing made there either


def test_the_cli_refuses_such_a_folder_in_one_line(tmp_path, capsys):
    """``scar train --store DIR`` writes DIR/shard-<k>: one that holds a user's files is
    refused, one line, exit 2."""
    shard = tmp_path / "run" / "shard-0"
    shard.mkdir(parents=True)
    (shard / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["train", "--runtime", "local", "--iterations", "3", "--shards", "2",
              "--store", str(tmp_path / "run"), "--output", str(tmp_path / "o.json")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "holds files but no checkpoint store" in err[0]
    assert (shard / "notes.txt").read_text() == "mine"


def make_store(path: str, saves: int = 3, keep_last: int | None = 3) -> None:
    with open_store(path, keep_last=keep_last) as s:
        s.open(SPECS)
        for v in range(saves):
            s.save(v, full(v))


@pytest.mark.parametrize("part", ["data", "manifests"])
def test_a_symlinked_store_folder_is_refused_and_nothing_outside_is_touched(tmp_path, part):
    store, outside = tmp_path / "s", tmp_path / "outside"
    make_store(str(store))
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    (outside / "v0000000009.aux").write_text("named like a store file")
    os.rename(store / part, tmp_path / "moved")
    os.symlink(outside, store / part)
    with pytest.raises(StoreError, match=f"{part} is a symbolic link"):
        open_store(str(store))
    assert sorted(os.listdir(outside)) == ["keep.txt", "v0000000009.aux"]


def test_a_symlinked_data_folder_in_a_folder_that_is_no_store_is_refused(tmp_path):
    folder, outside = tmp_path / "f", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "train.csv").write_text("x")
    os.symlink(outside, folder / "data")
    with pytest.raises(StoreError, match="symbolic link"):
        open_store(str(folder))
    assert os.listdir(outside) == ["train.csv"]


def test_a_writer_deletes_only_files_whose_names_it_makes(tmp_path):
    store = tmp_path / "s"
    make_store(str(store))
    (store / "data" / "notes.txt").write_text("mine")
    (store / "data" / "v0000000001.t0.c0000.seg.bak").write_text("mine too")
    (store / "manifests" / "README").write_text("and this")
    (store / "data" / "sub").mkdir()
    (store / "data" / "sub" / "v0000000000.aux").write_text("in a subfolder")
    with open_store(str(store), keep_last=1) as s:  # cleans up, retires all but one version
        for v in range(3, 8):
            s.save(v, full(v))
    assert (store / "data" / "notes.txt").read_text() == "mine"
    assert (store / "data" / "v0000000001.t0.c0000.seg.bak").exists()
    assert (store / "manifests" / "README").exists()
    assert (store / "data" / "sub" / "v0000000000.aux").exists()
    assert os.listdir(store / "manifests") == ["README", "v0000000007.json"] or sorted(
        os.listdir(store / "manifests")
    ) == ["README", "v0000000007.json"]


def test_a_link_planted_under_a_store_files_name_is_never_written_through(tmp_path):
    store, target = tmp_path / "s", tmp_path / "target.txt"
    target.write_text("precious")
    s = open_store(str(store))
    s.open(SPECS)
    s.save(0, full(0))
    os.symlink(target, store / "data" / "v0000000001.t0.c0000.seg")
    with pytest.raises(StoreError, match="cannot write to checkpoint store"):
        s.save(1, full(1))
    s.close()
    assert target.read_text() == "precious"
    with quiet():
        with open_store(str(store)) as again:  # the next writer deletes the link, not the target
            again.save(1, full(1))
    assert target.read_text() == "precious"
    assert not os.path.islink(store / "data" / "v0000000001.t0.c0000.seg")


# -- 4. the lock file -----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_linked_lock_file_is_refused_and_its_target_untouched(tmp_path, how):
    store, target = tmp_path / "s", tmp_path / "target.txt"
    make_store(str(store))
    target.write_text("precious")
    os.unlink(store / "LOCK")
    (os.symlink if how == "symlink" else os.link)(target, store / "LOCK")
    with pytest.raises(StoreError, match="LOCK is (a symbolic link|not a plain file)"):
        open_store(str(store))
    assert target.read_text() == "precious"


# -- 2. an unreadable manifest --------------------------------------------------------------
def test_a_writer_keeps_every_file_an_unreadable_manifest_may_list(tmp_path):
    """keep_last=1, three full saves, a byte of the only manifest flipped: a writer that opens
    the store deletes nothing it may list, says so, and keeps it while it writes on; once the
    bad manifest is removed, the next writer reclaims the space."""
    store = tmp_path / "s"
    make_store(str(store), saves=3, keep_last=1)
    before = sorted(os.listdir(store / "data"))
    assert before  # the last version's segments
    flip(str(store / "manifests" / "v0000000002.json"))
    with pytest.warns(CheckpointWarning, match="unreadable manifest.*deletes no file they may"):
        open_store(str(store), keep_last=1).close()
    assert sorted(os.listdir(store / "data")) == before
    with quiet():
        with open_store(str(store), keep_last=1) as s:
            assert s.latest() is None  # nothing intact to read ...
            s.open(SPECS)
            for v in range(3, 6):  # ... and it writes on, after the bad version's number
                assert s.save(v, full(v)).version == v
    assert set(before) <= set(os.listdir(store / "data"))
    assert (store / "manifests" / "v0000000002.json").exists()  # never deleted by a writer
    rep = verify(DurableStore(str(store), readonly=True))
    assert list(rep.bad) == ["manifests/v0000000002.json"]
    assert any("kept: an unreadable manifest may list them" in n for n in rep.notes)
    os.unlink(store / "manifests" / "v0000000002.json")  # the documented way to let go
    open_store(str(store), keep_last=1).close()
    assert not set(before) & set(os.listdir(store / "data"))
    with DurableStore(str(store), readonly=True) as r:
        assert r.read_rows("a")[0, 0] == 5


def test_an_unreadable_manifest_within_the_kept_versions_protects_what_it_lists(tmp_path):
    store = tmp_path / "s"
    with open_store(str(store), keep_last=2) as s:
        s.open(SPECS)
        s.save(0, full(0))
        s.save(1, {"a": (np.arange(5), np.full((5, 3), 1, np.float32))})
        s.save(2, {"a": (np.arange(5, 10), np.full((5, 3), 2, np.float32))})
    flip(str(store / "manifests" / "v0000000002.json"), offset=-2)
    files = set(os.listdir(store / "data"))
    with quiet():
        with open_store(str(store), keep_last=2) as s:
            for v in range(3, 9):
                s.save(v, {"b": (np.array([v % 6]), np.full((1, 2), v, np.float64))})
    assert files <= set(os.listdir(store / "data"))


# -- 3. a bad segment whose rows have older copies ------------------------------------------
def partial_store(path: str) -> dict:
    """keep_last=3; table a saved whole at 0, then rows 0..19 at 1 and 2 (values = iteration).
    Returns the data file of version 2's segment."""
    with open_store(path, keep_last=3, chunk_bytes=1 << 20) as s:
        s.open(SPECS)
        s.save(0, full(0))
        s.save(1, {"a": (np.arange(20), np.full((20, 3), 1, np.float32))})
        s.save(2, {"a": (np.arange(20), np.full((20, 3), 2, np.float32))})
    return os.path.join(path, "data", "v0000000002.t0.c0000.seg")


def test_retention_never_deletes_the_last_intact_copy_of_a_row(tmp_path):
    store = str(tmp_path / "s")
    bad = partial_store(store)
    flip(bad)
    with quiet():
        got = DurableStore(store, readonly=True).read_rows("a")
    assert (got[:20] == 1).all() and (got[20:] == 0).all()  # older copies stand in
    with pytest.warns(CheckpointWarning, match="v0000000002.t0.c0000.seg.*keeping the older"):
        with open_store(store, keep_last=3, chunk_bytes=1 << 20) as s:
            for v in range(3, 9):  # six versions of other rows: the old ones would retire
                s.save(v, {"b": (np.array([v % 6]), np.full((1, 2), v, np.float64))})
    with quiet():
        r = DurableStore(store, readonly=True)
        got = r.read_rows("a")
        assert (got[:20] == 1).all() and (got[20:] == 0).all()
        assert (r.saved_iteration("a")[:20] == 1).all()
    assert verify(DurableStore(store, readonly=True)).ok  # the bad file is no longer listed
    assert len(os.listdir(os.path.join(store, "manifests"))) == 3  # and retention goes on


def test_a_writer_that_reads_a_bad_segment_keeps_its_older_copies_too(tmp_path):
    """As above, with the writer finding the bad segment by reading (a restore), async."""
    store = str(tmp_path / "s")
    flip(partial_store(store))
    with quiet():
        with open_store(store, keep_last=3, chunk_bytes=1 << 20, async_writes=True) as s:
            assert (s.read_rows("a")[:20] == 1).all()
            for v in range(3, 9):
                s.save(v, {"b": (np.array([v % 6]), np.full((1, 2), v, np.float64))})
        got = DurableStore(store, readonly=True).read_rows("a")
    assert (got[:20] == 1).all() and (got[20:] == 0).all()


# -- 5. leases on object stores -------------------------------------------------------------
def s3_store(tmp_path, kind: str = "s3") -> str:
    url = new_url(kind, tmp_path)
    with open_store(url) as s:
        s.open(SPECS)
        s.save(0, full(0))
    return url


def put_lock(url: str, record: dict) -> None:
    b = DurableStore(url, readonly=True).backend
    b.fs.pipe_file(b._p("LOCK"), json.dumps(record).encode())


def soon(condition, seconds: float = 30.0) -> bool:
    """Whether ``condition()`` becomes true within ``seconds`` (a loaded machine is slow)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def exited_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)  # fmt: skip
    return int(p.stdout)


def unlock(url: str, *flags: str, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["ckpt", "unlock", url, *flags])
    out = capsys.readouterr()
    return e.value.code, (out.out + out.err).strip()


@pytest.mark.usefixtures("s3_server")
def test_unlock_refuses_a_live_writers_lease_on_s3(tmp_path, capsys):
    url = s3_store(tmp_path)
    w = open_store(url)
    code, msg = unlock(url, capsys=capsys)
    assert code == 2 and "locked by a running writer" in msg and len(msg.splitlines()) == 1
    with pytest.raises(StoreError, match="in use by pid"):
        open_store(url)
    w.open(SPECS)
    w.save(1, full(1))
    w.close()
    assert unlock(url, capsys=capsys) == (0, f"{url}: not locked")


@pytest.mark.parametrize("kind", ["memory", "s3"])
@pytest.mark.usefixtures("s3_server")
def test_a_forged_lock_naming_this_host_is_not_broken_without_proof(tmp_path, capsys, kind):
    """A lock naming this host and a pid that does not run here may come from another
    machine or container with the same name: not broken automatically, and `unlock` needs
    --force while its lease is fresh. Proven dead or expired, it is taken over."""
    url = s3_store(tmp_path, kind)
    me = lease.identity()
    forged = {"host": me["host"], "pid": exited_pid(), "since": time.time(),
              "renewed": time.time(), "ttl": 30, "token": "t"}  # fmt: skip
    put_lock(url, forged)
    with pytest.raises(StoreError, match="in use by pid .*lease renewed"):
        open_store(url)
    code, msg = unlock(url, capsys=capsys)
    assert code == 2 and "lease is fresh" in msg and "--force" in msg
    assert unlock(url, "--force", capsys=capsys)[0] == 0
    open_store(url).close()
    # the same record from this machine's boot and process namespace: provably gone, taken over
    put_lock(url, {**forged, **me, "pid": exited_pid(), "start": 1})
    open_store(url).close()
    # a lease not renewed for longer than it lasts: taken over
    put_lock(url, {**forged, "host": "elsewhere", "renewed": time.time() - 100, "ttl": 30})
    open_store(url).close()


@pytest.mark.usefixtures("s3_server")
def test_a_live_writer_renews_its_lease_and_one_that_lost_it_commits_nothing(
    tmp_path,
    monkeypatch,
):
    """The issue's case: a second writer forces its way in while the first runs. The first
    notices (its lease is gone) and commits nothing more; no committed file is overwritten."""
    monkeypatch.setattr(lease, "TTL", 0.8)
    url = s3_store(tmp_path)
    a = open_store(url)
    a.open(SPECS)
    a.save(1, full(1))
    first = a.backend.lock_owner()["renewed"]
    assert soon(lambda: a.backend.lock_owner()["renewed"] > first)  # renewed while it runs
    b = open_store(url, force_unlock=True)  # (what `scar ckpt unlock --force` allows)
    b.open(SPECS)
    b.save(2, full(2))

    def lost() -> bool:  # A's next renewal finds the lock another writer's
        try:
            a.backend.check_lock()
        except StoreError as e:
            assert "lost the writer lock" in str(e)
            return True
        return False

    assert soon(lost)
    with pytest.raises(StoreError, match="lost the writer lock"):
        a.save(3, full(3))
    a.close()
    b.save(3, full(30))
    b.close()
    r = DurableStore(url, readonly=True)
    assert [v.iteration for v in r.versions()][-2:] == [2, 3] and verify(r).ok
    assert r.read_rows("a")[0, 0] == 30


@pytest.mark.usefixtures("s3_server")
def test_object_stores_never_write_a_data_file_twice(tmp_path):
    """Even without the lock (forced), a second writer cannot replace a committed segment."""
    url = s3_store(tmp_path)
    a = open_store(url)
    a.open(SPECS)
    b = open_store(url, force_unlock=True)
    b.open(SPECS)
    a.save(1, full(1))  # both number their next version 1
    with pytest.raises(StoreError, match="exists already|another writer"):
        b.save(1, full(99))
    r = DurableStore(url, readonly=True)
    assert r.read_rows("a")[0, 0] == 1 and verify(r).ok
    a.close()
    b.close()


# -- 6, 7. readers of a live store ----------------------------------------------------------
WRITER = """
import sys, numpy as np
sys.path.insert(0, {src!r})
from scar.store import DurableStore, TableSpec
url, n = sys.argv[1], int(sys.argv[2])
s = DurableStore(url, keep_last=1, fsync=False)
s.open([TableSpec("a", 64, 4), TableSpec("b", 8, 2, "float64")])
for v in range(n):
    if v % 4 == 0:
        rows = {{"a": (None, np.full((64, 4), v, np.float32)), "b": (None, np.full((8, 2), v))}}
    else:  # partial: rows v % 64, and the whole of b
        rows = {{"a": (np.array([v % 64]), np.full((1, 4), v, np.float32)),
                "b": (None, np.full((8, 2), v))}}
    s.save(v, rows, aux={{"v": np.array([v])}})
s.close()
"""


def reader_loop(url: str, commits: int, env: dict | None = None) -> dict:
    """A writer process commits ``commits`` versions with keep_last=1 while this process
    reads whole versions in a loop. Returns counts: reads, errors, torn."""
    import scar

    src = os.path.dirname(os.path.dirname(scar.__file__))
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(src=src), url, str(commits)],
        env={**os.environ, **(env or {})},
    )
    counts = {"reads": 0, "errors": 0, "torn": 0, "retired": 0}
    try:
        while p.poll() is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", CheckpointWarning)  # a false alarm is an error
                    r = DurableStore(url, readonly=True)
                    snap = r.read_all(iterations=True)
            except StoreError as e:
                if any(
                    m in str(e)
                    for m in ("no checkpoint store", "not a checkpoint store", "no committed")
                ):
                    continue  # not started yet
                counts["errors"] += 1
                print("read error:", e)
                continue
            except CheckpointWarning as w:
                counts["errors"] += 1
                print("false alarm:", w)
                continue
            v = snap.version.version
            a, b = snap.tables["a"], snap.tables["b"]
            full_at = v - v % 4
            want = np.full((64, 4), full_at, np.float32)
            for u in range(full_at + 1, v + 1):
                want[u % 64] = u
            ok = (
                (a == want).all()
                and (b == v).all()
                and snap.aux["v"].tolist() == [v]
                and snap.aux_iteration == v
                and (snap.saved_iterations["b"] == v).all()
            )
            counts["torn"] += not ok
            counts["reads"] += 1
    finally:
        p.wait(timeout=600)
    assert p.returncode == 0
    return counts


def test_a_reader_of_a_live_store_never_errs_nor_tears(tmp_path):
    counts = reader_loop(str(tmp_path / "s"), commits=1000)
    assert counts["errors"] == 0 and counts["torn"] == 0, counts
    assert counts["reads"] >= 20, counts


@pytest.mark.usefixtures("s3_server")
def test_a_reader_of_a_live_s3_store_never_errs_nor_tears(tmp_path):
    counts = reader_loop(new_url("s3", tmp_path), commits=150)
    assert counts["errors"] == 0 and counts["torn"] == 0, counts
    assert counts["reads"] >= 5, counts


@pytest.mark.slow
def test_a_reader_of_a_live_s3_store_during_a_thousand_commits(tmp_path):
    counts = reader_loop(new_url("s3", tmp_path), commits=1000)
    assert counts["errors"] == 0 and counts["torn"] == 0, counts


def test_a_reader_never_mixes_versions_nor_ignores_the_one_asked_for(tmp_path):
    store = str(tmp_path / "s")
    w = open_store(store, keep_last=1)
    w.open(SPECS)
    w.save(0, full(0))
    r = DurableStore(store, readonly=True)
    assert r.read_rows("a")[0, 0] == 0  # served from version 0 ...
    w.save(1, full(1))  # ... which the writer retires
    with pytest.raises(VersionRetired, match="version 0 .*retired by a running writer"):
        r.read_rows("b")  # never version 1's b with version 0's a
    pinned = DurableStore(store, readonly=True)
    pinned.checkout(1)
    w.save(2, full(2))
    with pytest.raises(VersionRetired, match="version 1 .*choose a version it still keeps"):
        pinned.read_rows("a")
    fresh = DurableStore(store, readonly=True)
    w.save(3, full(3))  # retired before anything was read: the read starts on the newest
    snap = fresh.read_all()
    assert snap.version.version == 3 and (snap.tables["b"] == 3).all()
    w.close()


def test_restore_of_a_retired_version_is_one_line_and_exit_2(tmp_path, capsys):
    store = str(tmp_path / "s")
    make_store(store, saves=3, keep_last=1)
    with pytest.raises(SystemExit) as e:
        main(["ckpt", "restore", store, "--version", "0", "-o", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "version 0" in err and len(err.splitlines()) == 1


def test_a_missing_file_of_a_version_that_is_still_kept_is_corruption(tmp_path):
    """The retry is only for retired versions: a file missing from a kept one is reported."""
    store = str(tmp_path / "s")
    make_store(store, saves=1)
    os.unlink(os.path.join(store, "data", "v0000000000.t0.c0000.seg"))
    r = DurableStore(store, readonly=True)
    with pytest.raises(CorruptCheckpointError, match="v0000000000.t0.c0000.seg: file is missing"):
        with quiet():
            r.read_rows("a")


def test_inspect_names_a_missing_dense_segment_and_exits_1(tmp_path, capsys):
    store = str(tmp_path / "s")
    make_store(store, saves=1)
    assert main_code(["ckpt", "inspect", store]) == 0
    capsys.readouterr()
    os.unlink(os.path.join(store, "data", "v0000000000.t1.c0000.seg"))  # dense, never opened
    assert main_code(["ckpt", "inspect", store]) == 1
    err = capsys.readouterr().err
    assert "v0000000000.t1.c0000.seg: file is missing" in err
    assert main_code(["ckpt", "inspect", store, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["damaged"]) == ["data/v0000000000.t1.c0000.seg"]
    assert doc["tables"][1]["rows_saved"] == 0  # its rows have no other copy


def main_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


@pytest.mark.usefixtures("s3_server")
def test_reading_a_lease_while_its_writer_renews_it_is_no_error(tmp_path, monkeypatch):
    """s3fs reads an object with the ETag its HEAD saw: a renewal in between made reading the
    lock fail (FileExpired) - for `scar ckpt unlock`, a second writer, or the CLI's inspect.
    Reading it again is the answer."""
    monkeypatch.setattr(lease, "TTL", 0.04)  # renewed every 10 ms
    url = s3_store(tmp_path)
    a = open_store(url)
    other = DurableStore(url, readonly=True).backend
    for _ in range(300):
        assert other.lock_owner()["token"] == a.backend.lock_owner()["token"]
    with pytest.raises(StoreError, match="in use by"):
        open_store(url)
    a.close()
