"""Every single-byte flip and every truncation of a segment or manifest is detected, on read and
by verify. Reading then falls back: a bad manifest to the newest intact version; the rows of a
bad segment to their newest intact older copy; with no such copy it fails naming the file."""

import warnings

import numpy as np
import pytest
from store_backends import new_url, s3_server  # noqa: F401

from scar.errors import CorruptCheckpointError
from scar.store import CheckpointWarning, DurableStore, TableSpec
from scar.store.format import manifest_name
from scar.store.names import MANIFEST_DIR
from scar.store.tools import verify

SPECS = [TableSpec("a", 6, 2), TableSpec("b", 3, 1, "float64")]


def build(url, compression):
    """Five versions (full, partials, a compaction, aux twice); the expected state of each."""
    zero = {"a": np.zeros((6, 2), np.float32), "b": np.zeros((3, 1))}
    saves = [
        (
            0,
            {
                "a": (None, np.arange(12, dtype=np.float32).reshape(6, 2)),
                "b": (None, np.ones((3, 1))),
            },
            {"z": np.arange(4)},
        ),  # fmt: skip
        (2, {"a": (np.array([1, 4]), np.full((2, 2), 7, np.float32))}, None),
        (
            4,
            {
                "a": (np.array([0, 4, 5]), np.full((3, 2), 8, np.float32)),
                "b": (np.array([0]), np.full((1, 1), 3.0)),
            },
            {"z": np.arange(4) * 2},
        ),  # fmt: skip
        # compacts chunk 0: every row (the full save holds only 2 of its 6 rows by then)
        (6, {"a": (np.array([2]), np.full((1, 2), 9, np.float32))}, None),
        (8, {"b": (np.array([2]), np.full((1, 1), 5.0))}, None),
    ]
    states, state = [], {k: v.copy() for k, v in zero.items()}
    aux = None
    with DurableStore(url, keep_last=None, compact_after=3, compression=compression) as s:
        s.open(SPECS)
        for it, rows, a in saves:
            s.save(it, rows, a)
            for name, (ids, vals) in rows.items():
                state[name][slice(None) if ids is None else ids] = vals
            aux = a if a is not None else aux
            states.append(({k: v.copy() for k, v in state.items()}, aux))
        assert [seg.row_iters for seg in s.view.segments] == [False, False, True, False]
        backend = s.backend
    return backend, states


# What the five versions leave: which file holds the latest value of which rows (version 3
# compacted chunk 0 of table a into one file), and the aux file the latest version lists.
OWNERS = {
    "data/v0000000003.t0.c0000.seg": ("a", [0, 1, 2, 3, 4, 5], 3),
    "data/v0000000000.t1.c0000.seg": ("b", [1], 0),
    "data/v0000000002.t1.c0000.seg": ("b", [0], 2),
    "data/v0000000004.t1.c0000.seg": ("b", [2], 4),
}
AUX = {"data/v0000000002.aux": 0}  # -> the older aux file, of version 0


def expected(states, bad):
    """(state, aux) a reader must see with ``bad`` damaged; None where a read must fail."""
    last = len(states) - 1
    if bad.startswith(MANIFEST_DIR):
        return states[last - 1] if bad.endswith(manifest_name(last)) else states[last]
    state, aux = states[last]
    state = {k: v.copy() for k, v in state.items()}
    if bad in OWNERS:
        name, rows, version = OWNERS[bad]
        if version == 0:
            state[name] = None  # no older copy: reading the table fails
        else:
            state[name][rows] = states[version - 1][0][name][rows]
    if bad in AUX:
        aux = states[AUX[bad]][1]
    return state, aux


def put(backend, path, data):
    if backend.local:  # in place: faster than the store's durable write of a new file
        with open(backend._p(path), "r+b") as f:
            f.write(data)
            f.truncate()
    else:  # (a store never writes an object twice: this is someone else's write)
        backend.fs.pipe_file(backend._p(path), data)


def check(url, backend, states, path, data):
    put(backend, path, data)
    state, aux = expected(states, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        r = DurableStore(url, readonly=True)
        for name in ("b", "a"):
            if state[name] is None:
                with pytest.raises(CorruptCheckpointError, match=f"{path}.*no older intact copy"):
                    r.read_rows(name)
            else:
                np.testing.assert_array_equal(r.read_rows(name), state[name], err_msg=path)
        assert r.read_aux()[1]["z"].tolist() == aux["z"].tolist(), path
    if path in OWNERS or path in AUX or path.endswith(manifest_name(len(states) - 1)):
        assert any(path in str(w.message) for w in caught), path  # a warning names the file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        rep = verify(DurableStore(url, readonly=True))
    assert list(rep.bad) == [path], (path, rep.bad)


def mutations(backend, step=1, manifest_step=1):
    files = [f"{MANIFEST_DIR}/{n}" for n in backend.list(MANIFEST_DIR)] + backend.files("data")
    for path in files:
        data = backend.read(path)
        k = manifest_step if path.startswith(MANIFEST_DIR) else step
        header = data.find(b"\n") + 1 if path.startswith(MANIFEST_DIR) else 0
        offsets = sorted({*range(header), *range(0, len(data), k), len(data) - 1})
        for i in offsets:
            flipped = bytearray(data)
            flipped[i] ^= 0xFF if i % 2 else (1 << (i % 8))  # whole-byte and single-bit flips
            yield path, data, bytes(flipped)
        for n in sorted({*range(0, len(data), k), len(data) - 1}):
            yield path, data, data[:n]


def test_every_flip_and_truncation_is_detected_local(tmp_path):
    url = new_url("local", tmp_path)
    backend, states = build(url, "zstd")  # raw and compressed segments
    n = 0
    # Every byte of every segment and aux file, every byte of each manifest's header line and
    # every 60th byte of its body (the slow test covers every byte of every file).
    for path, original, bad in mutations(backend, step=1, manifest_step=60):
        check(url, backend, states, path, bad)
        put(backend, path, original)
        n += 1
    assert n > 800  # mutations of every byte of every file: the files are ~900 bytes in all
    assert verify(DurableStore(url, readonly=True)).ok


@pytest.mark.slow
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_every_flip_and_truncation_of_every_file_is_detected(tmp_path, compression):
    url = new_url("local", tmp_path)
    backend, states = build(url, compression)
    for path, original, bad in mutations(backend):
        check(url, backend, states, path, bad)
        put(backend, path, original)


@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_flips_and_truncations_are_detected_on_other_backends(request, tmp_path, kind):
    if kind == "s3":
        request.getfixturevalue("s3_server")
    url = new_url(kind, tmp_path)
    backend, states = build(url, None)
    cases = list(mutations(backend, step=97, manifest_step=401))
    for path, original, bad in cases[:: max(1, len(cases) // (40 if kind == "memory" else 8))]:
        check(url, backend, states, path, bad)
        put(backend, path, original)


def test_a_row_bitmap_that_disagrees_with_its_manifest_is_corrupt():
    """Bitmap row ids (format 2) are checked like listed ones: as many set bits as the
    manifest's rows, none in the padding past the chunk's end (CRC-valid but crafted)."""
    import dataclasses

    from scar.store.codec import build_segment, decode_index
    from scar.store.format import Table, checksum

    table = Table("w", 20, 1, "float32", (0, 20))
    ids = np.array([1, 4, 5, 19])
    seg, bufs = build_segment("data/v0000000001.t0.c0000.seg", 0, 0, table, 1, 1, ids, None,
                              np.ones((4, 1), np.float32), "raw")  # fmt: skip
    assert seg.id_coding == "bitmap" and seg.index_bytes == 3  # 20 rows -> 3 bytes
    index = bytes(bufs[0])
    got, iters = decode_index(index, seg, table)
    assert got.tolist() == ids.tolist() and iters is None
    with pytest.raises(CorruptCheckpointError, match="row bitmap does not hold 5 rows"):
        decode_index(index, dataclasses.replace(seg, rows=5), table)
    padded = index[:2] + bytes([index[2] | 0x80])  # bit 23: past row 19
    with pytest.raises(CorruptCheckpointError, match="row bitmap"):
        decode_index(padded, dataclasses.replace(seg, index_crc=checksum(padded)), table)
