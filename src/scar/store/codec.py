"""Segment and aux files: building their bytes, and checking and decoding them on read.

Every function that reads takes the bytes a backend returned and the manifest's description
of them; anything that does not match (size, CRC-32C, decompressed size, row ids out of order
or outside their chunk) raises :class:`CorruptCheckpointError` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .backends.base import read_fully
from .format import (
    Aux,
    AuxArray,
    Segment,
    Table,
    bitmap_bytes,
    checksum,
    corrupt,
    id_coding_for,
    iter_bytes_for,
)
from .index import compiled, increasing

ZSTD_LEVEL = 1
PAYS = 0.9  # compress a segment only if that saves at least 10 %
PROBE = 1 << 16  # a segment over 8 of these is compressed only if 4 samples of this size pay
PIECE = 1 << 24  # the first buffer a section is decompressed into (a whole 16 MB chunk's values)


def _zstd():
    import zstandard

    return zstandard


def _shuffle(values: np.ndarray) -> np.ndarray:
    """Byte-transpose: all first bytes of the floats, then all second bytes, ... (compresses
    far better: exponents and high mantissa bytes repeat)."""
    s = values.dtype.itemsize
    return np.ascontiguousarray(values.reshape(-1).view(np.uint8).reshape(-1, s).T)


def _worth_trying(vals: np.ndarray) -> bool:
    """Whether zstd may pay on these values: compressing 4 samples spread over a large segment
    costs ~1 % of compressing it all (random floats are incompressible: it never pays)."""
    flat = vals.reshape(-1)
    if flat.nbytes <= 8 * PROBE:
        return True
    m = PROBE // flat.itemsize
    starts = np.linspace(0, flat.size - m, 4).astype(np.int64)
    sample = np.concatenate([flat[s : s + m] for s in starts])
    z = _zstd().ZstdCompressor(level=ZSTD_LEVEL).compress(_shuffle(sample))
    return len(z) <= PAYS * sample.nbytes


def _unshuffle(raw: bytes, dtype: np.dtype) -> np.ndarray:
    s = dtype.itemsize
    return np.ascontiguousarray(np.frombuffer(raw, np.uint8).reshape(s, -1).T).view(dtype)


def build_segment(
    path: str,
    t: int,
    c: int,
    table: Table,
    version: int,
    iteration: int,
    ids: np.ndarray | None,
    iters: np.ndarray | None,
    values: np.ndarray,
    codec: str,
) -> tuple[Segment, list]:
    """The manifest entry and the bytes (a list of buffers) of one segment. ``ids`` None: the
    segment holds every row of chunk ``c``; ``iters`` None: every row was saved at
    ``iteration``."""
    index, coding = [], "list"
    if ids is not None:
        lo, n = table.chunks[c], table.chunk_rows(c)
        coding = id_coding_for(len(ids), n)
        if coding == "bitmap":
            ids = np.asarray(ids, np.int64)
            if (kernels := compiled(ids.size)) is not None:
                index.append(kernels.ids_to_bitmap(ids, lo, bitmap_bytes(n)))
            else:
                mask = np.zeros(n, bool)
                mask[ids - lo] = True
                index.append(np.packbits(mask, bitorder="little"))
        else:
            index.append(np.ascontiguousarray(ids, dtype="<i8"))
    iter_bytes = 8
    if iters is not None:
        # a merged segment's iteration is its newest row's (saves need not come in order: a
        # row saved at 10 may be merged by a save at 5), so that every age is >= 0
        iters = np.asarray(iters, np.int64)
        iteration = max(int(iteration), int(iters.max(initial=iteration)))
        ages = iteration - iters
        iter_bytes = iter_bytes_for(int(ages.max(initial=0)))
        if iter_bytes == 8:
            index.append(np.ascontiguousarray(iters, dtype="<i8"))
        else:
            index.append(ages.astype(f"<u{iter_bytes}"))
    vals = np.ascontiguousarray(values, dtype=table.stored_dtype)
    raw_index = [memoryview(a).cast("B") for a in index]
    raw_values = memoryview(vals.reshape(-1).view(np.uint8)) if vals.size else memoryview(b"")
    index_bufs, values_bufs, used = raw_index, [raw_values], "raw"
    if codec == "zstd" and vals.size and _worth_trying(vals):
        z = _zstd().ZstdCompressor(level=ZSTD_LEVEL)
        zi = z.compress(b"".join(raw_index)) if raw_index else b""
        zv = z.compress(_shuffle(vals))
        raw = sum(len(b) for b in raw_index) + len(raw_values)
        if len(zi) + len(zv) <= PAYS * raw:
            index_bufs, values_bufs, used = ([zi] if zi else []), [zv], "zstd"
    seg = Segment(
        path=path,
        table=t,
        chunk=c,
        version=version,
        iteration=int(iteration),
        rows=int(vals.shape[0]),
        dense=ids is None,
        row_iters=iters is not None,
        codec=used,
        index_bytes=sum(len(b) for b in index_bufs),
        index_crc=checksum(*index_bufs),
        values_bytes=sum(len(b) for b in values_bufs),
        values_crc=checksum(*values_bufs),
        id_coding=coding,
        iter_bytes=iter_bytes,
    )
    return seg, index_bufs + values_bufs


def _check(data: bytes, nbytes: int, crc: str, path: str, what: str) -> None:
    if len(data) != nbytes:
        raise corrupt(
            path,
            f"{path}: truncated {what}: {len(data)} of {nbytes} bytes"
            if len(data) < nbytes
            else f"{path}: {what} is {len(data)} bytes, expected {nbytes}",
        )
    if checksum(data) != crc:
        raise corrupt(path, f"{path}: {what} checksum mismatch")


def _expand(data: bytes, codec: str, raw: int, path: str, what: str) -> bytes | np.ndarray:
    """The ``raw`` bytes of a section: ``data`` itself, or zstd-decompressed. Decompression
    streams into buffers allocated as output arrives (the first ``PIECE`` bytes, then as many
    again as read so far) and stops as soon as the data would give more than ``raw``: neither
    the frame's header nor the manifest's size allocates memory the data does not fill."""
    if codec == "raw":
        return data
    pieces, n, extra = [], 0, b""
    try:
        with _zstd().ZstdDecompressor().stream_reader(data) as reader:
            while n < raw:
                buf = np.empty(min(raw - n, max(n, PIECE)), np.uint8)
                k = read_fully(reader, memoryview(buf))
                pieces.append(buf[:k])
                n += k
                if k < buf.size:
                    break
            if n == raw:
                extra = reader.read(1)
    except Exception as e:  # zstandard.ZstdError
        raise corrupt(path, f"{path}: {what} does not decompress ({e})") from None
    if n != raw or extra:
        more = "more than " if extra else ""
        raise corrupt(path, f"{path}: {what} decompresses to {more}{n} bytes, not {raw}")
    if len(pieces) == 1:
        return pieces[0]
    return np.concatenate(pieces) if pieces else np.empty(0, np.uint8)


def _fits(seg: Segment, table: Table, values: bool = False) -> None:
    """A segment must hold rows of one of ``table``'s chunks, and a raw one's ``values`` as
    many bytes as they take (an older manifest's segment, read in place of a bad one, is
    resolved through the tables of the version read)."""
    c = seg.chunk
    if not (
        0 <= c < len(table.chunks) - 1
        and seg.rows <= table.chunk_rows(c)
        and (seg.rows == table.chunk_rows(c) or not seg.dense)
        and not (values and seg.codec == "raw" and seg.values_bytes != seg.rows * table.row_bytes)
    ):
        raise corrupt(seg.path, f"{seg.path}: does not hold rows of table {table.name!r}")


def decode_index(data: bytes, seg: Segment, table: Table) -> tuple[np.ndarray, np.ndarray | None]:
    """(row ids, per-row iterations or None) of a segment, from its index section."""
    _check(data, seg.index_bytes, seg.index_crc, seg.path, "index section")
    _fits(seg, table)
    lo, hi = table.chunks[seg.chunk], table.chunks[seg.chunk + 1]
    if seg.dense and not seg.row_iters:
        return np.arange(lo, hi, dtype=np.int64), None
    raw = _expand(data, seg.codec, seg.index_raw(hi - lo), seg.path, "index")
    n, k = seg.rows, seg.ids_raw(hi - lo)
    iters = None
    if seg.row_iters and seg.iter_bytes == 8:
        iters = np.frombuffer(raw, "<i8", offset=k)
    elif seg.row_iters:
        ages = np.frombuffer(raw, f"<u{seg.iter_bytes}", offset=k)
        iters = seg.iteration - ages.astype(np.int64)  # range checked below, as int64s are
    if seg.dense:
        ids = np.arange(lo, hi, dtype=np.int64)
    elif seg.id_coding == "bitmap":
        bits = np.unpackbits(np.frombuffer(raw, np.uint8, count=k), bitorder="little")
        ids = bits.view(bool).nonzero()[0] + lo
        if ids.size != n or (n and ids[-1] >= hi):
            raise corrupt(seg.path, f"{seg.path}: row bitmap does not hold {n} rows of its chunk")
    else:
        ids = np.frombuffer(raw, "<i8", count=n).astype(np.int64)
        if ids[0] < lo or ids[-1] >= hi or not increasing(ids):
            raise corrupt(seg.path, f"{seg.path}: row ids are not sorted rows of its chunk")
    if iters is not None and (iters.max() > seg.iteration or iters.min() < -1):
        raise corrupt(seg.path, f"{seg.path}: row iterations out of range")
    return ids, None if iters is None else iters.astype(np.int64)


def decode_values(data: bytes, seg: Segment, table: Table) -> np.ndarray:
    """The (rows, width) values of a segment, from its values section (read-only view)."""
    _check(data, seg.values_bytes, seg.values_crc, seg.path, "values section")
    _fits(seg, table, values=True)
    raw = seg.rows * table.row_bytes
    dt = table.stored_dtype
    if seg.codec == "zstd":
        arr = _unshuffle(_expand(data, seg.codec, raw, seg.path, "values"), dt)
    else:
        arr = np.frombuffer(data, dt)
    return arr.reshape(seg.rows, table.width)


def check_values_inplace(buf: memoryview, seg: Segment) -> None:
    """Checksum of a raw values section that was read straight into the caller's array."""
    _check(buf, seg.values_bytes, seg.values_crc, seg.path, "values section")


# -- aux files ------------------------------------------------------------------------------
def build_aux(
    path: str, version: int, iteration: int, arrays: Mapping[str, np.ndarray], codec: str
) -> tuple[Aux, list]:
    meta, bufs = [], []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.kind not in "biufc":
            raise TypeError(f"aux array {name!r} has dtype {a.dtype}, not a plain number type")
        meta.append(AuxArray(str(name), a.dtype.str, tuple(int(n) for n in a.shape)))
        bufs.append(memoryview(a.reshape(-1)).cast("B") if a.size else b"")
    used = "raw"
    if codec == "zstd" and bufs:
        z = _zstd().ZstdCompressor(level=ZSTD_LEVEL).compress(b"".join(bufs))
        if len(z) <= PAYS * sum(len(b) for b in bufs):
            bufs, used = [z], "zstd"
    aux = Aux(
        path, version, int(iteration), used, sum(len(b) for b in bufs), checksum(*bufs), tuple(meta)
    )
    return aux, bufs


def decode_aux(data: bytes, aux: Aux) -> dict[str, np.ndarray]:
    if not aux.path:
        return {}
    _check(data, aux.nbytes, aux.crc, aux.path, "aux file")
    raw = _expand(data, aux.codec, sum(a.nbytes for a in aux.arrays), aux.path, "aux file")
    out, off = {}, 0
    for a in aux.arrays:
        out[a.name] = (
            np.frombuffer(
                raw, np.dtype(a.dtype), count=a.nbytes // np.dtype(a.dtype).itemsize, offset=off
            )
            .reshape(a.shape)
            .copy()
        )
        off += a.nbytes
    return out
