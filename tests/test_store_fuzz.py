"""Hostile manifests: a manifest whose checksum is valid but whose content is not (crafted, or
written by a buggy writer) is refused before anything is allocated from it, and skipped like one
that fails its checksum - readers fall back to the newest intact older version, and no exception
but the store's own (StoreError) escapes a read.

First a regression test for each defect a fault-injection campaign found (nested JSON, an
unprintable ``created``, a structured aux dtype, tables and aux arrays larger than this machine's
memory, a segment path ending in a newline) and for the bounds around them (zstd sections are
decompressed in bounded steps); then property-based fuzzing (hypothesis) of structural mutations
of real manifests, with their checksums recomputed so that they reach the parser."""

import contextlib
import copy
import io
import json
import os
import shutil
import tracemalloc
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scar.cli import main
from scar.errors import CorruptCheckpointError, StoreError
from scar.store import CheckpointWarning, DurableStore, TableSpec, manifests
from scar.store import format as fmt
from scar.store.codec import _expand
from scar.store.format import MAGIC, _covered, checksum, manifest_name
from scar.store.manifests import check_path, decode_manifest, manifest_doc
from scar.store.tools import describe, verify

SPECS = [TableSpec("a", 10, 3), TableSpec("b", 4, 2, "float64")]


# -- crafting manifests -----------------------------------------------------------------------
class Raw(str):
    """JSON text spliced into a manifest's body as it is: what json.dumps would not write
    (1e400, an integer of 5000 digits, deep nesting)."""


def seal(body: bytes, fmt_version: int = fmt.FORMAT_VERSION) -> bytes:
    """A manifest of ``body`` with a valid header and checksum (as encode_manifest makes)."""
    crc = checksum(_covered(fmt_version, len(body)), body)
    return b"%s %d %s %d\n" % (MAGIC, fmt_version, crc.encode(), len(body)) + body


def serialize(doc) -> bytes:
    raws = []

    def mark(x):
        if isinstance(x, Raw):
            raws.append(x)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(x, dict):
            return {k: mark(v) for k, v in x.items()}
        if isinstance(x, list):
            return [mark(v) for v in x]
        return x

    text = json.dumps(mark(doc), separators=(",", ":"))
    for i, r in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', r, 1)
    return text.encode()


def manifest_path(url: str, version: int) -> str:
    return os.path.join(url, "manifests", manifest_name(version))


def body_of(url: str, version: int) -> dict:
    with open(manifest_path(url, version), "rb") as f:
        data = f.read()
    return json.loads(data[data.index(b"\n") + 1 :])


def craft(url: str, version: int, edit) -> bytes:
    """Rewrite manifest ``version`` of the local store ``url`` with ``edit(doc)`` applied (it
    changes doc in place, or returns a new one), checksum valid; returns the new bytes."""
    doc = body_of(url, version)
    doc = edit(doc) or doc
    data = seal(serialize(doc))
    with open(manifest_path(url, version), "wb") as f:
        f.write(data)
    return data


def two_versions(url: str) -> dict:
    """Version 0 (full, with aux), version 1 (partial, with aux); what version 0 reads."""
    a = np.arange(30, dtype=np.float32).reshape(10, 3)
    b = np.ones((4, 2))
    with DurableStore(url, fsync=False) as s:
        s.open(SPECS)
        s.save(0, {"a": (None, a), "b": (None, b)}, aux={"z": np.arange(3)})
        s.save(
            5, {"a": (np.array([1, 2]), np.full((2, 3), -1, np.float32))}, aux={"z": -np.ones(3)}
        )
    return {"a": a, "b": b}


def reads_version_0(url: str, want: dict) -> None:
    """The store reads version 0 (the newest, version 1, is skipped) with a warning."""
    with pytest.warns(CheckpointWarning, match="instead of version 1"):
        s = DurableStore(url, readonly=True)
    assert [v.version for v in s.versions()] == [0]
    np.testing.assert_array_equal(s.read_rows("a"), want["a"])
    np.testing.assert_array_equal(s.read_rows("b"), want["b"])
    assert (s.saved_iteration("a") == 0).all()
    it, aux = s.read_aux()
    assert it == 0 and aux.keys() == {"z"} and aux["z"].tolist() == [0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        rep = verify(DurableStore(url, readonly=True))
    assert rep.bad.keys() == {"manifests/v0000000001.json"}


def writer_saves_over(url: str, want: dict) -> None:
    """A writer opens the store (skipping the bad manifest) and saves on top of version 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        with DurableStore(url, fsync=False) as w:
            w.open(SPECS)
            w.save(9, {"a": (np.array([0]), np.full((1, 3), 7, np.float32))})
        r = DurableStore(url, readonly=True)
        a = want["a"].copy()
        a[0] = 7
        np.testing.assert_array_equal(r.read_rows("a"), a)


def scar(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


# -- regression tests: the campaign's defects, and the bounds around them ----------------------
@pytest.mark.parametrize("where", ["extra key", "created", "segment", "whole body"])
def test_deeply_nested_json_is_skipped_like_a_corrupt_manifest(tmp_path, capsys, where):
    """100,000 levels of nesting (checksum valid) raised RecursionError from json.loads in
    every reader and the writer; 33 levels are refused too (a manifest nests 5 deep)."""
    url = str(tmp_path / "s")
    want = two_versions(url)
    deep = Raw("[" * 100_000 + "]" * 100_000)

    def edit(doc):
        if where == "extra key":
            doc["note"] = deep
        elif where == "created":
            doc["created"] = deep
        elif where == "segment":
            doc["segments"][0]["rows"] = deep
        else:
            return deep

    data = craft(url, 1, edit)
    with pytest.raises(CorruptCheckpointError, match="nests deeper than 32 levels"):
        decode_manifest(data, "manifests/v0000000001.json")
    with pytest.raises(CorruptCheckpointError, match="nests deeper"):
        manifest_doc(data)
    shallow = seal(serialize({**body_of(str(tmp_path / "s"), 0), "x": Raw("[" * 33 + "]" * 33)}))
    with pytest.raises(CorruptCheckpointError, match="nests deeper"):
        decode_manifest(shallow, "manifests/v0000000000.json")
    reads_version_0(url, want)
    code, out, err = scar(capsys, "ckpt", "ls", url)
    assert code == 0 and len(out.splitlines()) == 2 and "nests deeper" in err
    writer_saves_over(url, want)


@pytest.mark.parametrize(
    "created, why",
    [
        (Raw("1" + "0" * 400), "'created' = 1000"),  # float() overflowed
        (Raw("1e300"), r"'created' = 1e\+300"),  # time.localtime overflowed in `scar ckpt ls`
        (Raw("NaN"), "NaN is not a JSON number"),  # time.localtime: ValueError
        (Raw("Infinity"), "Infinity is not a JSON number"),
        (Raw("1e400"), "'created' = inf"),
        (-1.5, "'created' = -1.5"),
        (True, "'created' = True"),
        ("2024-01-01", "'created' has the wrong type"),
    ],
)
def test_created_must_be_a_plausible_time(tmp_path, capsys, created, why):
    url = str(tmp_path / "s")
    want = two_versions(url)
    data = craft(url, 1, lambda doc: doc.update(created=created))
    with pytest.raises(CorruptCheckpointError, match=why):
        decode_manifest(data, "manifests/v0000000001.json")
    reads_version_0(url, want)
    code, out, err = scar(capsys, "ckpt", "ls", url)
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["0"]
    assert "v0000000001.json" in err
    code, out, _ = scar(capsys, "ckpt", "ls", "--json", url)
    assert code == 0 and [v["version"] for v in json.loads(out)["versions"]] == [0]
    writer_saves_over(url, want)


def test_the_newest_plausible_time_is_listed(tmp_path, capsys):
    url = str(tmp_path / "s")
    two_versions(url)
    craft(url, 1, lambda doc: doc.update(created=manifests.MAX_CREATED))
    code, out, _ = scar(capsys, "ckpt", "ls", url)
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["0", "1"]


@pytest.mark.parametrize(
    "dtype",
    ["i8,(2147483647,2147483647)i8", "(2147483647,2147483647)i8", "O", "<U8", "V8", "M8[s]",
     "float64", "f8", "<i1", "|f8", "<b1", "<f3", "i8\n", " <i8"],
)  # fmt: skip
def test_an_aux_dtype_outside_the_allow_list_is_refused(tmp_path, dtype):
    """np.dtype('i8,(2147483647,2147483647)i8') raised ValueError (array too big); no string
    reaches numpy before it passed the allow-list of plain number types."""
    url = str(tmp_path / "s")
    want = two_versions(url)
    data = craft(url, 1, lambda doc: doc["aux"]["arrays"][0].update(dtype=dtype))
    with pytest.raises(CorruptCheckpointError, match="is not a plain number type"):
        decode_manifest(data, "manifests/v0000000001.json")
    reads_version_0(url, want)


def test_every_plain_number_type_of_aux_round_trips(tmp_path):
    """The allow-list holds what numpy's dtype.str gives for every plain number type, in
    either byte order (the long doubles of this platform included)."""
    types = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
             np.uint64, np.float16, np.float32, np.float64, np.longdouble, np.complex64,
             np.complex128, np.clongdouble]  # fmt: skip
    aux = {}
    for t in types:
        a = np.arange(6).astype(t).reshape(2, 3)
        aux[np.dtype(t).name] = a
        if a.dtype.itemsize <= 8 or t not in (np.longdouble, np.clongdouble):
            # (numpy exposes long doubles to buffers only in native byte order)
            aux[f"{np.dtype(t).name}-swapped"] = a.astype(a.dtype.newbyteorder())
    aux["empty"] = np.zeros((0, 5), np.int32)
    for compression in (None, "zstd"):
        url = str(tmp_path / f"s-{compression}")
        with DurableStore(url, compression=compression, fsync=False) as s:
            s.open(SPECS)
            s.save(0, {"a": (None, np.zeros((10, 3), np.float32))}, aux=aux)
        _, got = DurableStore(url, readonly=True).read_aux()
        assert got.keys() == aux.keys()
        for k, a in aux.items():
            assert got[k].dtype == a.dtype and got[k].shape == a.shape, k
            np.testing.assert_array_equal(got[k], a)


def test_a_table_larger_than_this_machines_memory_is_refused(tmp_path):
    """A declared table of 2^40 rows (chunk bounds and segments consistent) made the reader's
    index allocate per-row arrays of 4-8 TiB: MemoryError. It is refused as unreadable here."""
    url = str(tmp_path / "s")
    want = two_versions(url)

    def edit(doc):
        t = doc["tables"][0]
        t["n_rows"] = 1 << 40
        t["chunks"] = t["chunks"] + list(range(1 << 30, (1 << 40) + 1, 1 << 30))

    data = craft(url, 1, edit)
    with pytest.raises(CorruptCheckpointError, match="more than this machine's .* cannot be read"):
        decode_manifest(data, "manifests/v0000000001.json")
    reads_version_0(url, want)
    writer_saves_over(url, want)


def test_the_memory_a_manifest_needs_is_checked_against_this_machine(tmp_path, monkeypatch):
    url = str(tmp_path / "s")
    two_versions(url)
    with open(manifest_path(url, 0), "rb") as f:
        data = f.read()
    decode_manifest(data, "manifests/v0000000000.json")
    # index (16 bytes a row, 14 rows) and the largest table (10 x 3 float32): 344 bytes
    monkeypatch.setattr(manifests, "physical_memory", lambda: 343)
    with pytest.raises(CorruptCheckpointError, match=r"need 0.0 MiB .* cannot be read here"):
        decode_manifest(data, "manifests/v0000000000.json")
    monkeypatch.setattr(manifests, "physical_memory", lambda: 344)
    decode_manifest(data, "manifests/v0000000000.json")
    monkeypatch.undo()

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    assert manifests.physical_memory.__wrapped__() == 1 << 40  # where the system does not say


def test_an_aux_larger_than_this_machines_memory_is_refused(tmp_path):
    """A declared aux array of 2^42 elements (4 TiB, within the old 64 TiB bound) made the
    reader allocate its bytes: MemoryError."""
    url = str(tmp_path / "s")
    want = two_versions(url)

    def edit(doc):
        doc["aux"]["arrays"] = [{"name": "c", "dtype": "|i1", "shape": [1 << 42]}]
        doc["aux"]["nbytes"] = 1 << 42

    data = craft(url, 1, edit)
    with pytest.raises(CorruptCheckpointError, match="aux arrays need .* cannot be read here"):
        decode_manifest(data, "manifests/v0000000001.json")
    reads_version_0(url, want)


@pytest.mark.parametrize(
    "shape", [[1 << 40, 1 << 40], [0, 1 << 62, 1 << 62], [1 << 63], [1] * 33, [-1], [True], [1.0]]
)
def test_an_aux_shape_numpy_cannot_hold_is_refused(tmp_path, shape):
    url = str(tmp_path / "s")
    want = two_versions(url)
    data = craft(url, 1, lambda doc: doc["aux"]["arrays"][0].update(shape=shape))
    with pytest.raises(CorruptCheckpointError, match="bad shape|implausibly large"):
        decode_manifest(data, "manifests/v0000000001.json")
    reads_version_0(url, want)


@pytest.mark.parametrize(
    "path",
    ["data/v0000000001.t0.c0000.seg\n", "data/v0000000001.t0.c0000.seg\r", "data/v0000000001\n.x",
     "data/v٠٠٠٠٠٠٠٠٠١.seg", "data/v0000000001.x/../../y", "/data/v0000000001.x",
     "data/v0000000001." + "x" * 300, "data/v0000000001.x\x00"],
)  # fmt: skip
def test_a_segment_path_must_be_a_whole_plain_name(tmp_path, path):
    """'$' matched before a trailing newline: 'data/v0000000001.t0.c0000.seg\\n' passed."""
    with pytest.raises(manifests._Invalid, match="points outside the store"):
        check_path(path)
    url = str(tmp_path / "s")
    want = two_versions(url)
    data = craft(url, 1, lambda doc: doc["segments"][-1].update(path=path))
    with pytest.raises(CorruptCheckpointError, match="points outside the store"):
        decode_manifest(data, "manifests/v0000000001.json")
    reads_version_0(url, want)


def test_a_manifest_name_must_be_a_whole_name():
    assert fmt.manifest_version("v0000000001.json") == 1
    for name in (
        "v0000000001.json\n",
        "v0000000001.jsonx",
        "v٠٠٠٠٠٠٠٠٠١.json",
        "xv0000000001.json",
    ):
        assert fmt.manifest_version(name) is None


def test_zstd_sections_decompress_in_bounded_steps():
    """A frame is decompressed only as far as the declared raw size: a 64 MiB frame (its
    header says so) for a 1000-byte section stops after those, allocating about that much
    (zstandard's decompress allocated the frame's content size first), and a frame without
    a content size for a section the manifest says is 1 TiB allocates what it decompresses."""
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptCheckpointError, match="more than 1000 bytes"):
            _expand(bomb, "zstd", 1000, "data/v0000000001.aux", "aux file")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
    small = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 10)
    with pytest.raises(CorruptCheckpointError, match="decompresses to 10 bytes, not 1099511627776"):
        _expand(small, "zstd", 1 << 40, "data/v0000000001.aux", "aux file")
    frame = zstandard.ZstdCompressor().compress(b"abc" * 1000)
    assert bytes(_expand(frame, "zstd", 3000, "p", "values")) == b"abc" * 1000
    for data, raw, why in [
        (frame, 3001, "decompresses to 3000 bytes, not 3001"),
        (frame + frame, 3000, "more than 3000"),
        (frame[:-5], 3000, "decompress"),
        (b"not zstd", 3000, "does not decompress"),
    ]:
        with pytest.raises(CorruptCheckpointError, match=why):
            _expand(data, "zstd", raw, "p", "values")
    big = np.random.default_rng(0).integers(0, 3, 40 << 20, dtype=np.uint8).tobytes()
    z = zstandard.ZstdCompressor(level=1).compress(big)  # more than one buffer's worth
    assert bytes(_expand(z, "zstd", len(big), "p", "values")) == big


def test_a_zstd_section_larger_than_its_rows_can_compress_to_is_refused(tmp_path):
    url = str(tmp_path / "s")
    with DurableStore(url, compression="zstd", fsync=False) as s:
        s.open([TableSpec("a", 1000, 4)])
        s.save(0, {"a": (None, np.zeros((1000, 4), np.float32))})
        s.save(1, {"a": (None, np.ones((1000, 4), np.float32))})
    assert body_of(url, 1)["segments"][0]["codec"] == "zstd"
    data = craft(url, 1, lambda doc: doc["segments"][0].update(values_bytes=1 << 40))
    with pytest.raises(CorruptCheckpointError, match="larger than 1000 rows can compress to"):
        decode_manifest(data, "manifests/v0000000001.json")


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b"{", b"NaN", b'{"a": Infinity}', b"\xff\xfe", b"1" * 5000],
)
def test_manifest_doc_refuses_hostile_bodies(body):
    with pytest.raises(CorruptCheckpointError):
        manifest_doc(seal(body))
    with pytest.raises(CorruptCheckpointError):
        decode_manifest(seal(body), "manifests/v0000000001.json")
    with pytest.raises(CorruptCheckpointError, match="no header line"):
        manifest_doc(b"no newline")
    assert manifest_doc(seal(b'{"a": [1, {"b": 2}]}')) == {"a": [1, {"b": 2}]}


# -- property-based fuzzing ---------------------------------------------------------------------
FUZZ_SPECS = [
    TableSpec("a", 40, 3),  # 8 chunks of 5 rows
    TableSpec("b", 12, 2, "float64"),  # 1 chunk
    TableSpec("c", 600, 1, "float16"),  # 8 chunks of 75 rows
]


def build(url: str, compression: str | None) -> None:
    """Seven versions: full, then partial ones merged by compaction (per-row iterations), with
    bitmap and listed row ids, several chunks per table, aux arrays of several types (raw, or
    zstd where it pays: the values are small integers)."""
    rng = np.random.default_rng(3)
    specs = {t.name: t for t in FUZZ_SPECS}

    def values(spec, n):
        v = (
            rng.integers(0, 4, (n, spec.width))
            if compression
            else rng.standard_normal((n, spec.width))
        )
        return v.astype(spec.dtype)

    aux = {"cursor": np.array([0, 0]), "flags": np.array([True, False]), "c": np.array([1 + 2j]),
           "be": np.arange(3, dtype=">i4"), "zeros": np.zeros(256, np.float32),
           "empty": np.zeros((0, 3))}  # fmt: skip
    with DurableStore(url, compression=compression, chunk_bytes=256, compact_after=3,
                      keep_last=None, fsync=False) as s:  # fmt: skip
        s.open(FUZZ_SPECS)
        s.save(0, {t.name: (None, values(t, t.n_rows)) for t in FUZZ_SPECS}, aux=aux)
        for v in range(1, 7):
            rows = {}
            for t, ids in [
                ("a", np.sort(rng.choice(10, 3, replace=False))),  # chunks 0-1: merged
                ("b", np.sort(rng.choice(12, 4, replace=False))),
                ("c", np.array([75 * (v % 8) + 1])),  # one row of 75: listed, not a bitmap
            ]:
                rows[t] = (ids, values(specs[t], len(ids)))
            s.save(3 * v, rows, aux={**aux, "cursor": np.array([v, -v])} if v % 2 else None)


def test_a_newest_manifest_with_fewer_tables_and_a_bad_aux_file(tmp_path):
    """A crafted manifest, consistent on its own (table 'a' and its segments only; its aux
    file's CRC wrong): its rows of 'a' read as before, its aux from the older copy."""
    url = str(tmp_path / "s")
    build(url, None)
    want = DurableStore(url, readonly=True).read_rows("a")

    def edit(doc):
        doc["tables"] = doc["tables"][:1]
        doc["segments"] = [s for s in doc["segments"] if s["table"] == 0]
        doc["aux"]["crc"] = "00000000"

    decode_manifest(craft(url, 6, edit), "manifests/v0000000006.json")  # valid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        s = DurableStore(url, readonly=True)
        assert s.read_aux()[0] == 9  # (the file of iteration 15 is the one found bad)
        np.testing.assert_array_equal(s.read_rows("a"), want)


def readings(url: str) -> dict:
    """Everything a reader can read from the store at ``url``: each value, or the type of
    StoreError it raised; any other exception propagates (the failure fuzzing looks for)."""

    def call(fn):
        try:
            return fn()
        except StoreError as e:
            return type(e)

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        try:
            s = DurableStore(url, readonly=True)
        except StoreError as e:
            return {"open": type(e)}
        out["versions"] = call(s.versions)
        out["latest"] = call(s.latest)
        for t in FUZZ_SPECS:
            out[t.name] = call(lambda t=t: s.read_rows(t.name))
            out[f"{t.name}.iterations"] = call(lambda t=t: s.saved_iteration(t.name))
            out[f"{t.name}.some"] = call(lambda t=t: s.read_rows(t.name, np.array([1, 0, 7])))
        out["aux"] = call(s.read_aux)
        rep = call(lambda: verify(DurableStore(url, readonly=True)))
        out["verify"] = rep if isinstance(rep, type) else sorted(rep.bad)
        call(lambda: describe(DurableStore(url, readonly=True)))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with pytest.raises(SystemExit) as e:
            main(["ckpt", "ls", url])
    assert e.value.code in (0, 2)
    return out


def same(got, want) -> bool:
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(same(got[k], want[k]) for k in want)
        )
    if isinstance(want, (list, tuple)):
        return (
            type(got) is type(want)
            and len(got) == len(want)
            and all(same(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, np.ndarray):
        return isinstance(got, np.ndarray) and got.dtype == want.dtype and np.array_equal(got, want)
    return got == want


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Per codec: the store (its newest manifest is the one mutated), the manifests' parsed
    bodies, what the store reads without its newest version, and a copy to mutate in place."""
    root = tmp_path_factory.mktemp("fuzz")
    out = {}
    for compression in (None, "zstd"):
        name = compression or "raw"
        url = str(root / name)
        build(url, compression)
        newest = max(v.version for v in DurableStore(url, readonly=True).versions())
        docs = [body_of(url, v) for v in range(newest + 1)]
        segs = [s for d in docs for s in d["segments"]]
        # not vacuous: every kind of segment and aux is there to be mutated
        assert {s["id_coding"] for s in segs if not s["dense"]} == {"list", "bitmap"}
        assert any(s["row_iters"] for s in segs) and any(s["dense"] for s in segs)
        assert {s["codec"] for s in segs} >= {compression or "raw"}
        assert docs[-1]["aux"]["codec"] == (compression or "raw")
        before = str(root / f"{name}-before")
        shutil.copytree(url, before)
        os.remove(manifest_path(before, newest))
        work = str(root / f"{name}-work")
        shutil.copytree(url, work)
        out[name] = {"url": url, "docs": docs, "newest": newest, "want": readings(before),
                     "work": work}  # fmt: skip
    assert not any(isinstance(v, type) for v in out["raw"]["want"].values())
    return {**out, "root": str(root)}


HUGE = [2**31 - 1, 2**31, 2**32, 2**40, 2**42, 2**46, 2**46 + 1, 2**62, 2**63, 2**64, 10**30,
        10**400, -1, -2, -(2**63)]  # fmt: skip
FLOATS = [float("nan"), float("inf"), float("-inf"), 1e300, -1e300, 0.5, -0.0, 1e11 + 1, 5e-324]
STRINGS = ["", "x" * 10_000, "../x", "data/v0000000001.x\n", "/etc/passwd", "data/../../x.seg",
           "data/v0000000000.t0.c0000.seg", "data/v0000000001.aux", "data/v00000000001.aux",
           "data\\v0000000001.aux", "\ud800", "\x00", "é",
           "manifests/v0000000000.json"]  # fmt: skip
DTYPES = ["i8,(2147483647,2147483647)i8", "O", "<U10", "V8", "|V16", "M8[s]", "float128", "f4",
          "<f8", ">f8", "|b1", "<c16", "(2,)f4", "S10", "int", "float32", "float64", "float16",
          "<i8", "|i1", "<f16", "<c32", ">i4", "<i1", "|f8", "<b1", "i8,i8", "?",
          "object"]  # fmt: skip
WORDS = ["zstd", "raw", "bitmap", "list", "gzip", "scar-store", "00000000", "deadbeef", "DEADBEEF"]
RAWS = [Raw(t) for t in ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 5000, "-0",
                         "1.0", "0.0", '"\\ud800"', '"\\u0000"', "[" * 33 + "]" * 33]]  # fmt: skip
NASTY = st.one_of(
    *(st.sampled_from(kind) for kind in (HUGE, FLOATS, STRINGS, DTYPES, WORDS, RAWS)),
    st.sampled_from([None, True, False, 0, 1, 2, 3, [], {}, [0], [[]], {"": None}, [0, 0]]),
    st.integers(1, 200_000).map(lambda n: Raw("[" * n + "]" * n)),
    st.integers(1, 3000).map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(-3, 2**41), max_size=4),
).map(copy.deepcopy)  # a fresh [] or {} each time: later mutations change it in place
KEYS = ["aux", "junk", "id_coding", "iter_bytes", "format_version", "path", "arrays", "dense"]


def paths(x, at=()):
    out = [at]
    if isinstance(x, dict):
        for k, v in x.items():
            out += paths(v, (*at, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += paths(v, (*at, i))
    return out


def label(path) -> str:
    """What a path names, whichever entry of a list: 'rows' for every segment's rows,
    'chunks[]' for any chunk bound, 'segments[]' for any segment."""
    if not path:
        return ""
    last = path[-1]
    if isinstance(last, int):
        return f"{label(path[:-1])}[]"
    return last


def pick(draw, doc):
    """A path into ``doc``: a field name first, then one of its places (the chunk bounds and
    segment fields would otherwise crowd out the manifest's own few fields)."""
    every = paths(doc)
    groups = sorted({label(p) for p in every})
    group = draw(st.sampled_from(groups))
    return draw(st.sampled_from([p for p in every if label(p) == group]))


def get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def put(doc, path, value):
    if not path:
        return value
    get(doc, path[:-1])[path[-1]] = value
    return doc


def tweak(draw, v):
    """A value near ``v``: the mutants that stay valid, or nearly (a section a byte longer, a
    row more, another segment's CRC), reach the readers."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return draw(st.sampled_from([v + 1, v - 1, v + 2, 2 * v, -v, v + 8, v - 8, v + 2**31]))
    if isinstance(v, float):
        return draw(st.sampled_from([v + 1, -v, v * 1e9]))
    if isinstance(v, str) and v:
        i = draw(st.integers(0, len(v) - 1))
        return v[:i] + draw(st.sampled_from("0f9a.t/\n")) + v[i + 1 :]
    return draw(NASTY)


@st.composite
def mutants(draw, doc):
    """A mutant of the manifest body ``doc`` (1-3 structural mutations: replace a value by a
    nasty one or a near one, delete a key or list entry, duplicate one, swap two values, add
    a key), sometimes also damaged as text; sealed with a valid checksum."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(
                ["replace", "replace", "tweak", "tweak", "delete", "duplicate", "swap", "add"]
            )
        )
        p = pick(draw, doc)
        parent = get(doc, p[:-1]) if p else None
        if op == "replace":
            doc = put(doc, p, draw(NASTY))
        elif op == "tweak":
            doc = put(doc, p, tweak(draw, get(doc, p)))
        elif op == "delete" and p:
            del parent[p[-1]]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), copy.deepcopy(parent[p[-1]]))
        elif op == "swap":
            q = pick(draw, doc)
            if p[: len(q)] != q and q[: len(p)] != p:
                a, b = get(doc, p), get(doc, q)
                put(doc, p, b)
                put(doc, q, a)
        elif op == "add" and isinstance(get(doc, p), dict):
            get(doc, p)[draw(st.sampled_from(KEYS))] = draw(NASTY)
    body = serialize(doc)
    damage = draw(st.sampled_from([None] * 18 + ["cut", "insert"]))
    if damage == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "insert":
        at = draw(st.integers(0, len(body)))
        junk = draw(st.sampled_from([b"\xff", b"\x00", b"]", b"{", b'"', b"\\", b"\n", b","]))
        body = body[:at] + junk + body[at:]
    return seal(body)


FUZZ_MEMORY = 256 << 20
FUZZ = dict(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decode_only(bases, data) -> None:
    base = bases[data.draw(st.sampled_from(["raw", "zstd"]))]  # any version
    v = data.draw(st.integers(0, base["newest"]))
    mutant = data.draw(mutants(base["docs"][v]))
    try:
        decode_manifest(mutant, f"manifests/{manifest_name(v)}")
    except StoreError:
        pass
    try:
        manifest_doc(mutant)
    except StoreError:
        pass


def store_with_mutant(bases, data) -> None:
    """The newest manifest replaced by a mutant: the store opens, every read returns or raises
    a StoreError; a mutant decode_manifest refuses is skipped, and the store reads exactly as
    it did without that version. A writer opens it and saves on top. (As on a machine with
    FUZZ_MEMORY of memory: a mutant within this machine's would be read, slowly.)"""
    with mock.patch.object(manifests, "physical_memory", lambda: FUZZ_MEMORY):
        _store_with_mutant(bases, data)


def _store_with_mutant(bases, data) -> None:
    name = data.draw(st.sampled_from(["raw", "zstd"]))
    base = bases[name]
    v = base["newest"]
    mutant = data.draw(mutants(base["docs"][v]))
    try:
        decode_manifest(mutant, f"manifests/{manifest_name(v)}")
        valid = True
    except CorruptCheckpointError:
        valid = False
    event(f"valid: {valid}")
    with open(manifest_path(base["work"], v), "wb") as f:
        f.write(mutant)
    got = readings(base["work"])
    if not valid:
        bad = f"manifests/{manifest_name(v)}"
        assert bad in got["verify"]
        got["verify"] = [p for p in got["verify"] if p != bad]
        assert same(got, base["want"]), (got, base["want"])
    if data.draw(st.integers(0, 3)) == 0:  # the writer too (a fresh copy: it changes the store)
        url = os.path.join(bases["root"], f"{name}-writer")
        shutil.rmtree(url, ignore_errors=True)
        shutil.copytree(base["work"], url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)
            try:
                with DurableStore(url, fsync=False) as w:
                    w.open(FUZZ_SPECS)
                    w.save(100, {"a": (np.array([0, 7]), np.full((2, 3), 9, np.float32))})
                ok = True
            except StoreError:
                ok = False
            if not valid:
                assert ok
                a = DurableStore(url, readonly=True).read_rows("a")
                want = base["want"]["a"].copy()
                want[[0, 7]] = 9
                np.testing.assert_array_equal(a, want)


@settings(max_examples=600, **FUZZ)
@given(data=st.data())
def test_fuzz_decode_manifest_raises_only_store_errors(bases, data):
    decode_only(bases, data)


@settings(max_examples=300, **FUZZ)
@given(data=st.data())
def test_fuzz_a_store_whose_newest_manifest_is_a_mutant(bases, data):
    store_with_mutant(bases, data)


@pytest.mark.slow
@settings(max_examples=10_000, **FUZZ)
@given(data=st.data())
def test_fuzz_decode_manifest_raises_only_store_errors_slow(bases, data):
    decode_only(bases, data)


@pytest.mark.slow
@settings(max_examples=10_000, **FUZZ)
@given(data=st.data())
def test_fuzz_a_store_whose_newest_manifest_is_a_mutant_slow(bases, data):
    store_with_mutant(bases, data)
