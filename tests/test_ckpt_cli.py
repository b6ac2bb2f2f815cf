"""`scar ckpt ls|inspect|verify|restore` on every backend, and `scar experiment --store`:
what they print and write, exit status 1 from verify on a damaged store, and one clear line with
exit status 2 for every mistake (missing store, manifest pointing outside the store, different
table shapes, unwritable path)."""

import json
import tempfile
import warnings
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from store_backends import BACKENDS, new_url, s3_server  # noqa: F401

from scar.cli import main
from scar.store import CheckpointWarning, DurableStore, TableSpec
from scar.store.format import encode_manifest, manifest_name

SPECS = [TableSpec("w", 12, 3), TableSpec("u", 5, 1, "float64")]


def scar(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_error_line(err, match):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scar: error: "), err
    assert match in lines[0], err


def make_store(url):
    """Three versions: full at 0, partial at 4 (rows 1, 5), partial at 8 (row 5, aux)."""
    w = np.arange(36, dtype=np.float32).reshape(12, 3)
    with DurableStore(url) as s:
        s.open(SPECS)
        s.save(0, {"w": (None, w), "u": (None, np.ones((5, 1)))})
        s.save(4, {"w": (np.array([1, 5]), np.full((2, 3), -1, np.float32))})
        s.save(8, {"w": (np.array([5]), np.full((1, 3), -2, np.float32))}, aux={"z": np.arange(3)})
    latest = w.copy()
    latest[1], latest[5] = -1, -2
    return w, latest


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    if request.param == "s3":
        request.getfixturevalue("s3_server")
    return new_url(request.param, tmp_path)


def test_ls_inspect_verify_restore(url, tmp_path, capsys):
    first, latest = make_store(url)
    code, out, _ = scar(capsys, "ckpt", "ls", url)
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["0", "0", "full"],
        ["1", "4", "partial"],
        ["2", "8", "partial"],
    ]
    code, out, _ = scar(capsys, "ckpt", "ls", url, "--json")
    assert [v["iteration"] for v in json.loads(out)["versions"]] == [0, 4, 8]

    code, out, _ = scar(capsys, "ckpt", "inspect", url)
    assert code == 0 and "version 2 (iteration 8, partial)" in out
    assert "table w: 12 x 3 float32" in out and "aux (iteration 8): z(3,)" in out
    code, out, _ = scar(capsys, "ckpt", "inspect", url, "--json")
    w = json.loads(out)["tables"][0]
    assert w["rows_saved"] == 12 and w["saved_iteration"] == {"min": 0, "median": 0.0, "max": 8}
    assert w["age"] == {"min": 0, "median": 8.0, "max": 8}
    code, out, _ = scar(capsys, "ckpt", "inspect", url, "--version", "0", "--json")
    assert json.loads(out)["tables"][0]["saved_iteration"]["max"] == 0

    code, out, _ = scar(capsys, "ckpt", "verify", url)
    assert code == 0 and out.strip().endswith("intact")

    npz = tmp_path / "latest.npz"
    code, out, _ = scar(capsys, "ckpt", "restore", url, "--output", npz, "--iterations")
    assert code == 0
    with np.load(npz, allow_pickle=False) as f:
        assert sorted(f.files) == ["u", "u.saved_iteration", "w", "w.saved_iteration"]
        np.testing.assert_array_equal(f["w"], latest)
        assert f["w.saved_iteration"].tolist() == [0, 4, 0, 0, 0, 8] + [0] * 6
    code, _, _ = scar(capsys, "ckpt", "restore", url, "--version", "0", "-o", tmp_path / "v0.npz")
    with np.load(tmp_path / "v0.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["w"], first)


def test_verify_names_every_bad_file_and_exits_1(tmp_path, capsys):
    url = str(tmp_path / "store")
    make_store(url)
    seg, man = f"{url}/data/v0000000001.t0.c0000.seg", f"{url}/manifests/{manifest_name(2)}"
    with open(seg, "r+b") as f:  # flip its first byte: the row bitmap, in the index section
        first = f.read(1)[0]
        f.seek(0)
        f.write(bytes([first ^ 0xFF]))
    with open(man, "r+b") as f:
        f.truncate(100)
    code, out, _ = scar(capsys, "ckpt", "verify", url)
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("BAD ")]
    assert len(bad) == 2
    assert any("data/v0000000001.t0.c0000.seg: index section checksum mismatch" in b for b in bad)
    assert any(f"manifests/{manifest_name(2)}: truncated" in b for b in bad)
    assert "2 bad file(s)" in out
    # Reading still works from what is intact, and says what it skipped.
    code, out, err = scar(capsys, "ckpt", "restore", url, "-o", tmp_path / "r.npz")
    assert code == 0 and "from version 1" in out
    assert "scar: warning:" in err and manifest_name(2) in err


def test_the_url_of_a_training_run_lists_and_verifies_each_shard_store(url, tmp_path, capsys):
    """`scar train --store URL` writes URL/shard-<k>: ls and verify of URL cover every shard
    (in shard order, 10 after 2), a bad file in one shard fails verify; inspect and restore,
    which read one store, say to pick one. `scar experiment --store` writes trial-<seed>."""
    for k in (0, 2, 10):
        make_store(f"{url}/shard-{k}")
    code, out, _ = scar(capsys, "ckpt", "ls", url)
    assert code == 0
    assert [line for line in out.splitlines() if line.endswith(":")] == [
        f"{url}/shard-{k}:" for k in (0, 2, 10)
    ]
    code, out, _ = scar(capsys, "ckpt", "ls", "--json", url)
    doc = json.loads(out)
    assert [d["url"] for d in doc["stores"]] == [f"{url}/shard-{k}" for k in (0, 2, 10)]
    assert all([v["iteration"] for v in d["versions"]] == [0, 4, 8] for d in doc["stores"])
    code, out, _ = scar(capsys, "ckpt", "verify", url)
    assert code == 0 and out.count(": 3 manifests, ") == 3 and out.count("intact") == 3
    for cmd in (("inspect", url), ("restore", url, "-o", tmp_path / "r.npz")):
        code, _, err = scar(capsys, "ckpt", *cmd)
        assert code == 2
        one_error_line(err, "holds 3 checkpoint stores (shard-0 .. shard-10)")
    assert not (tmp_path / "r.npz").exists()
    code, out, _ = scar(capsys, "ckpt", "ls", url + "/shard-2")  # one of them: as before
    assert code == 0 and not out.splitlines()[0].endswith(":")


def test_verify_of_a_run_fails_if_one_shard_store_is_damaged(tmp_path, capsys):
    url = str(tmp_path / "run")
    for seed in (0, 1):
        make_store(f"{url}/trial-{seed}")
    with open(f"{url}/trial-1/manifests/{manifest_name(2)}", "r+b") as f:
        f.truncate(100)
    code, out, _ = scar(capsys, "ckpt", "verify", url)
    assert code == 1
    assert f"{url}/trial-0: 3 manifests" in out and "intact" in out
    assert f"{url}/trial-1: 3 manifests" in out and "1 bad file(s)" in out


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    missing = str(tmp_path / "nothing-here")
    for cmd in (["ls"], ["inspect"], ["verify"], ["restore", "-o", tmp_path / "x.npz"]):
        code, _, err = scar(capsys, "ckpt", cmd[0], missing, *cmd[1:])
        assert code == 2
        one_error_line(err, f"no checkpoint store at {missing}")
    folder = tmp_path / "not-a-store"  # exists, but no store writer made it
    (folder / "notes").mkdir(parents=True)
    for cmd in (["ls"], ["inspect"], ["verify"], ["restore", "-o", tmp_path / "x.npz"]):
        code, _, err = scar(capsys, "ckpt", cmd[0], str(folder), *cmd[1:])
        assert code == 2
        one_error_line(err, f"{folder} is not a checkpoint store")

    url = str(tmp_path / "store")
    make_store(url)
    code, _, err = scar(capsys, "ckpt", "restore", url, "--version", "7", "-o", tmp_path / "x.npz")
    assert code == 2
    one_error_line(err, "cannot read version 7")

    # A manifest (with a valid checksum) that points outside the store.
    r = DurableStore(url, readonly=True)
    m = r.view
    evil = replace(m, segments=(replace(m.segments[0], path="../../etc/passwd"),))
    for v in (0, 1):
        r.backend.delete([f"manifests/{manifest_name(v)}"])
    r.backend.delete([f"manifests/{manifest_name(2)}"])
    r.backend.commit(f"manifests/{manifest_name(2)}", encode_manifest(evil))
    code, _, err = scar(capsys, "ckpt", "restore", url, "-o", tmp_path / "x.npz")
    assert code == 2
    one_error_line(err, "'../../etc/passwd' points outside the store")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "file://", "memory://", " "])
def test_a_url_that_names_no_store_is_one_line_and_exit_2(capsys, url):
    code, _, err = scar(capsys, "ckpt", "ls", url)
    assert code == 2
    one_error_line(err, "not a store URL")


def test_an_s3_endpoint_that_does_not_answer_is_one_line_and_exit_2(capsys, monkeypatch):
    """The SDK's own errors (here: connection refused) name the store, not a traceback."""
    import socket

    import s3fs

    with socket.socket() as sock:  # a port on 127.0.0.1 that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    s3fs.S3FileSystem.clear_instance_cache()  # none made for the test server may be reused
    try:
        code, _, err = scar(capsys, "ckpt", "ls", "s3://bucket/run")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert code == 2
    one_error_line(err, "cannot read checkpoint store s3://bucket/run: EndpointConnectionError")


def test_experiment_writes_and_reads_through_the_store(tmp_path, capsys, monkeypatch):
    args = ["experiment", "--model", "mlr", "--dataset", "digits", "--optimizer", "sgd"]
    args += ["--lost-shards", "2", "--checkpoint", "priority", "--fail-at", "10", "--trials", "1"]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, _, err = scar(capsys, *args, "-q", "-o", tmp_path / "default.json")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.json"]  # temp store removed

    store = tmp_path / "ckpts"
    code, _, err = scar(capsys, *args, "-q", "-o", tmp_path / "kept.json", "--store", store)
    assert code == 0, err
    docs = [json.loads((tmp_path / f).read_text()) for f in ("default.json", "kept.json")]
    assert docs[0]["trials"] == docs[1]["trials"]
    assert sorted(p.name for p in store.iterdir()) == ["trial-0"]
    for trial in store.iterdir():
        code, out, _ = scar(capsys, "ckpt", "verify", trial)
        assert code == 0, out
    code, out, _ = scar(capsys, "ckpt", "inspect", store / "trial-0", "--json")
    doc = json.loads(out)
    assert doc["tables"][0]["rows_saved"] == doc["tables"][0]["shape"][0] and doc["lock"] is None

    # A store written for other tables, and a store path that cannot be written.
    other = tmp_path / "other"
    with DurableStore(str(other / "trial-0")) as s:
        s.open([TableSpec("weights", 3, 3)])
        s.save(0, {"weights": (None, np.zeros((3, 3), np.float32))})
    code, _, err = scar(capsys, *args, "-q", "-o", tmp_path / "o.json", "--store", other)
    assert code == 2
    one_error_line(
        err, "other tables than the model's: different: weights(3, 3):float32 in the store"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = scar(capsys, *args, "-q", "-o", tmp_path / "o.json", "--store", blocker / "x")
    assert code == 2
    one_error_line(err, "cannot write checkpoint store")


def test_warnings_do_not_leak(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        make_store(str(tmp_path / "s"))
        DurableStore(str(tmp_path / "s"), readonly=True).read_rows("w")


def test_trial_stores_on_every_backend(url):
    from scar.cli.experiment import trial_stores
    from scar.store.urls import join_url

    with trial_stores(url) as stores:
        for seed in (5, 6):
            with stores(seed) as s:
                s.open(SPECS)
                s.save(0, {"w": (None, np.ones((12, 3), np.float32)), "u": (None, np.ones((5, 1)))})
    for seed in (5, 6):
        r = DurableStore(join_url(url, f"trial-{seed}"), readonly=True)
        assert r.read_rows("w").sum() == 36 and r.latest().iteration == 0
    if "://" not in url:  # the writability probe left nothing behind
        import os

        assert sorted(os.listdir(url)) == ["trial-5", "trial-6"]


def test_unlock_of_a_local_store_held_by_a_running_writer(tmp_path, capsys):
    url = str(tmp_path / "s")
    writer = DurableStore(url)
    code, out, err = scar(capsys, "ckpt", "unlock", url)
    assert code == 2
    one_error_line(err, "is locked by a running writer (pid ")
    assert "released by the kernel when its writer exits" in err
    with pytest.raises(Exception, match="in use by pid"):
        DurableStore(url)  # still locked: unlock removed nothing
    writer.close()
    code, out, _ = scar(capsys, "ckpt", "unlock", url)
    assert code == 0 and out.strip() == f"{url}: not locked"


def odd_store(url, names):
    """One full version of 3 x 2 tables ``names``: table i holds i + row/10."""
    with DurableStore(url) as s:
        s.open([TableSpec(n, 3, 2) for n in names])
        s.save(0, {n: (None, odd_values(i)) for i, n in enumerate(names)})
        s.save(5, {names[0]: (np.array([1]), np.full((1, 2), -1, np.float32))})


def odd_values(i):
    return np.repeat(i + np.arange(3, dtype=np.float32)[:, None] / 10, 2, axis=1)


ODD_NAMES = [
    *("allow_pickle", "file", "args", "kwds", "mmap_mode"),  # np.savez's / np.load's parameters
    *("a.b", "x/y", "a\\b", "x/./y", ".hidden", "with space", "ünï cødé 表", "", "a.npy.b"),
]


def test_restore_writes_every_table_name_as_its_npz_key(tmp_path, capsys):
    """Every table name is the key np.load gives its array, however odd (np.savez took them as
    keyword arguments: 'allow_pickle' was dropped, 'file' a traceback)."""
    url = str(tmp_path / "store")
    odd_store(url, ODD_NAMES)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    npz = out_dir / "r.npz"
    code, out, err = scar(capsys, "ckpt", "restore", url, "-o", npz, "--iterations")
    assert code == 0, err
    assert f"{2 * len(ODD_NAMES)} arrays from version 1 (iteration 5)" in out
    with np.load(npz, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(ODD_NAMES + [n + ".saved_iteration" for n in ODD_NAMES])
        for i, n in enumerate(ODD_NAMES):
            want, iters = odd_values(i), [0, 0, 0]
            if i == 0:
                want[1], iters[1] = -1, 5
            np.testing.assert_array_equal(f[n], want)
            assert f[n].dtype == np.float32
            assert f[n + ".saved_iteration"].tolist() == iters
    with zipfile.ZipFile(npz) as z:  # plain .npy members, nothing outside the folder
        assert sorted(z.namelist()) == sorted(f"{k}.npy" for k in f.files)
        z.extractall(tmp_path / "unzipped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store", "unzipped"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.npz"]  # no temporary file left


def test_restore_refuses_iterations_that_would_overwrite_a_table(tmp_path, capsys):
    """With --iterations, w's iterations would be written as 'w.saved_iteration', the name of
    another table (np.savez's keyword arguments let one overwrite the other): one line naming
    both, nothing written. Without --iterations both tables are written."""
    url = str(tmp_path / "store")
    odd_store(url, ["w", "w.saved_iteration"])
    npz = tmp_path / "r.npz"
    code, _, err = scar(capsys, "ckpt", "restore", url, "-o", npz, "--iterations")
    assert code == 2
    one_error_line(err, "saved iterations of table 'w' as 'w.saved_iteration', which is the name")
    assert "restore without --iterations" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    code, _, err = scar(capsys, "ckpt", "restore", url, "-o", npz)
    assert code == 0, err
    with np.load(npz, allow_pickle=False) as f:
        assert sorted(f.files) == ["w", "w.saved_iteration"]
        np.testing.assert_array_equal(f["w.saved_iteration"], odd_values(1))


@pytest.mark.parametrize(
    ("names", "iterations", "match"),
    [
        (["w", "../evil"], False, "table '../evil' to a .npz: the name has a '..' part"),
        (["a/../../evil"], False, "has a '..' part"),
        (["..\\evil"], False, "has a '..' part"),
        (["/tmp/evil"], False, "table '/tmp/evil' to a .npz: the name is an absolute path"),
        (["\\evil"], False, "is an absolute path"),
        (["C:evil"], False, "is an absolute path"),
        (["a\0b"], False, "has a NUL character"),
        (["x" * 70000], False, "the name is 70004 bytes long in UTF-8"),
        (["a", "a.npy"], False, "both table 'a' and table 'a.npy' to a .npz: np.load reads"),
        (["a", "a.saved_iteration.npy"], True, "both the saved iterations of table 'a'"),
    ],
)
def test_restore_refuses_a_name_that_is_unsafe_or_ambiguous_in_a_zip(
    tmp_path, capsys, names, iterations, match
):
    url = str(tmp_path / "store")
    odd_store(url, names)
    args = ["--iterations"] if iterations else []
    code, _, err = scar(capsys, "ckpt", "restore", url, "-o", tmp_path / "r.npz", *args)
    assert code == 2
    one_error_line(err, match)
    assert len(err) < 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def damage_manifest(url, version):
    """Cut the manifest of ``version`` to 100 bytes (on any backend)."""
    from scar.store.backends import backend_for

    b, path = backend_for(url), f"manifests/{manifest_name(version)}"
    data = b.read(path)
    b.delete([path])
    b.commit(path, data[:100])
    return path


def test_ls_of_a_store_whose_only_manifest_is_corrupt_exits_1(url, capsys):
    """It names the bad file and says that no intact checkpoint is left (before: 'no committed
    checkpoint', exit 0); a store with no version yet is still exit 0."""
    with DurableStore(url) as s:
        s.open(SPECS)
        s.save(0, {"w": (None, np.ones((12, 3), np.float32)), "u": (None, np.ones((5, 1)))})
    bad = damage_manifest(url, 0)
    code, out, err = scar(capsys, "ckpt", "ls", url)
    assert code == 1
    assert out.strip() == f"{url}: no intact checkpoint: unreadable {bad}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"scar: warning: {url}: {bad}: truncated")
    code, out, err = scar(capsys, "ckpt", "ls", "--json", url)
    assert code == 1
    doc = json.loads(out)
    assert sorted(doc) == ["problems", "url", "versions"]
    assert doc["url"] == url and doc["versions"] == [] and list(doc["problems"]) == [bad]
    assert bad in err

    if "://" in url:
        return  # an object store with no version yet has no object to find it by
    empty = url + "-empty"
    DurableStore(empty).close()
    for args in ([], ["--json"]):
        code, out, err = scar(capsys, "ckpt", "ls", empty, *args)
        assert code == 0 and err == ""
    code, out, _ = scar(capsys, "ckpt", "ls", empty)
    assert out.strip() == f"{empty}: no committed checkpoint"


def test_ls_names_a_bad_manifest_once_and_exits_0_while_a_version_is_intact(tmp_path, capsys):
    url = str(tmp_path / "store")
    make_store(url)
    damage_manifest(url, 2)
    damage_manifest(url, 0)
    code, out, err = scar(capsys, "ckpt", "ls", url)
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [["1", "4", "partial"]]
    assert err.count(manifest_name(2)) == 1 and err.count(manifest_name(0)) == 1
    assert all(line.startswith("scar: warning: ") for line in err.strip().splitlines())
    code, out, _ = scar(capsys, "ckpt", "ls", "--json", url)
    assert code == 0 and [v["version"] for v in json.loads(out)["versions"]] == [1]


def test_ls_of_a_run_exits_1_if_one_store_has_no_intact_version(url, capsys):
    make_store(f"{url}/shard-0")
    make_store(f"{url}/shard-1")
    for v in (0, 1, 2):
        damage_manifest(f"{url}/shard-1", v)
    code, out, err = scar(capsys, "ckpt", "ls", url)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{url}/shard-0:" and len(lines) == 7  # header, table of 3, shard-1
    assert lines[-2] == f"{url}/shard-1:"
    assert lines[-1].startswith(f"{url}/shard-1: no intact checkpoint: unreadable manifests/")
    assert err.count("scar: warning: ") == 3
    code, out, _ = scar(capsys, "ckpt", "ls", "--json", url)
    assert code == 1
    stores = json.loads(out)["stores"]
    assert [len(d["versions"]) for d in stores] == [3, 0]
    assert [len(d["problems"]) for d in stores] == [0, 3]
