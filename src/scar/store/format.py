"""The on-disk format of the durable checkpoint store (docs/store.md): its files, the
descriptions a manifest holds, and writing a manifest (reading one: manifests.py).

A store is a directory (or an object-store prefix)::

    LOCK                                  the writer lock (owner: host, pid, time)
    manifests/v0000000007.json            the manifest of version 7, written last (the commit)
    data/v0000000007.t0.c0003.seg         rows of table 0, chunk 3, written by version 7
    data/v0000000007.aux                  worker-side arrays of version 7 (if any)

A manifest is one header line ``SCAR-MANIFEST <format> <crc32c> <body bytes>`` and a JSON body
(the CRC-32C covers the format, the size and the body). It is self-contained: it lists every
segment that holds the latest saved value of some row as of its version (older segments
included), in the order in which they override each other, so reading one manifest is enough to
resolve every row. A segment file is two sections,
each with its size and CRC-32C in the manifest: an *index* section (the row ids - sorted int64s,
or a bitmap of the chunk's rows where that is smaller; omitted for a dense segment covering its
whole chunk - then, for merged segments, each row's iteration: its age, the segment's iteration
minus the row's, as 2- or 4-byte unsigned integers, or the iterations as int64s) and
a *values* section (rows x width, little-endian, the table's dtype). With the ``zstd`` codec each
section is zstd-compressed, the values byte-shuffled first. Nothing is ever unpickled: arrays are
raw bytes whose dtype and shape come from the (validated) manifest.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import crc32c
import numpy as np

from ..errors import CorruptCheckpointError
from .base import TableSpec
from .names import DATA_DIR

FORMAT = "scar-store"
FORMAT_VERSION = 3  # 2 added bitmap row ids (id_coding), 3 per-row ages (iter_bytes)
READABLE_FORMATS = (1, 2, 3)
ID_CODINGS = ("list", "bitmap")
ITER_BYTES = (2, 4, 8)  # 8: iterations as int64s (formats 1-2); 2, 4: ages, unsigned
MAGIC = b"SCAR-MANIFEST"
TABLE_DTYPES = ("bfloat16", "float16", "float32", "float64")  # bfloat16: ml_dtypes' (base.py)
CODECS = ("raw", "zstd")
MAX_BYTES = 1 << 46  # refuse to believe in a file or array larger than 64 TiB
_MANIFEST_RE = re.compile(r"v([0-9]{10})\.json")


def corrupt(path: str, msg: str, cls: type = CorruptCheckpointError) -> CorruptCheckpointError:
    """A :class:`CorruptCheckpointError` that knows which file is bad (``.path``)."""
    e = cls(msg)
    e.path = path
    return e


def checksum(*buffers: Any) -> str:
    value = 0
    for b in buffers:
        value = crc32c.crc32c(b, value)
    return f"{value:08x}"


def manifest_name(version: int) -> str:
    return f"v{version:010d}.json"


def manifest_version(name: str) -> int | None:
    m = _MANIFEST_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def data_prefix(version: int) -> str:
    """Files of a version are ``data/v<version>.<name>`` (no directory per version: creating
    and removing one costs more than the small files of a partial checkpoint)."""
    return f"{DATA_DIR}/v{version:010d}"


def chunk_bounds(n_rows: int, row_bytes: int, chunk_bytes: int, max_chunks: int = 4096) -> list:
    """Row boundaries of a table's chunks. Tables above ``chunk_bytes`` get a multiple of 8
    chunks with the same rounding as the range sharding, so that a shard of 8 (or 16, ...) is
    a whole number of chunks and restoring it reads only its share of the bytes."""
    total = n_rows * row_bytes
    k = 1 if total <= chunk_bytes else 8 * -(-total // (8 * chunk_bytes))
    k = max(1, min(k, max_chunks, n_rows))
    return np.linspace(0, n_rows, k + 1).round().astype(np.int64).tolist()


@dataclass(frozen=True)
class Table:
    name: str
    n_rows: int
    width: int
    dtype: str
    chunks: tuple[int, ...]  # row bounds: chunk c holds rows chunks[c]:chunks[c+1]

    @property
    def spec(self) -> TableSpec:
        return TableSpec(self.name, self.n_rows, self.width, self.dtype)

    @property
    def row_bytes(self) -> int:
        return self.width * np.dtype(self.dtype).itemsize

    @property
    def stored_dtype(self) -> np.dtype:
        return np.dtype(self.dtype).newbyteorder("<")

    def chunk_rows(self, c: int) -> int:
        return self.chunks[c + 1] - self.chunks[c]

    def by_chunk(self, ids: np.ndarray | None) -> Iterator[tuple[int, int, int]]:
        """``(chunk, start, end)`` for every chunk holding some of the sorted rows ``ids``
        (None: every row): ``ids[start:end]`` are the rows that fall in that chunk."""
        b = np.asarray(self.chunks)
        cuts = b if ids is None else np.searchsorted(ids, b)
        for c in range(len(b) - 1):
            start, end = int(cuts[c]), int(cuts[c + 1])
            if start < end:
                yield c, start, end


@dataclass(frozen=True)
class Segment:
    path: str
    table: int
    chunk: int
    version: int  # the version that wrote it
    iteration: int  # iteration of every row, or the newest one when row_iters
    rows: int
    dense: bool  # holds every row of its chunk (no row ids stored)
    row_iters: bool  # per-row iterations stored (segments merged by compaction)
    codec: str
    index_bytes: int
    index_crc: str
    values_bytes: int
    values_crc: str
    id_coding: str = "list"  # row ids as sorted int64s, or a bitmap over the chunk's rows
    iter_bytes: int = 8  # per-row iterations: 8 int64s; 2 or 4: unsigned ages (iteration - it)

    @property
    def nbytes(self) -> int:
        return self.index_bytes + self.values_bytes

    def ids_raw(self, chunk_rows: int) -> int:
        """Bytes of the (uncompressed) row ids in the index section."""
        if self.dense:
            return 0
        return bitmap_bytes(chunk_rows) if self.id_coding == "bitmap" else 8 * self.rows

    def index_raw(self, chunk_rows: int) -> int:
        return self.ids_raw(chunk_rows) + self.iter_bytes * self.rows * self.row_iters


def bitmap_bytes(chunk_rows: int) -> int:
    return -(-chunk_rows // 8)


def iter_bytes_for(max_age: int) -> int:
    """Bytes per row of a merged segment's per-row iterations: the smallest unsigned age that
    holds ``max_age`` (2 while every row was saved within 65535 iterations of the newest)."""
    return 2 if max_age < 1 << 16 else 4 if max_age < 1 << 32 else 8


def id_coding_for(rows: int, chunk_rows: int) -> str:
    """The smaller coding of ``rows`` sorted ids of a chunk: a bitmap once they are more than
    1/64 of its rows (a priority checkpoint of 1/8 of the rows: 8x smaller than int64 ids)."""
    return "bitmap" if bitmap_bytes(chunk_rows) < 8 * rows else "list"


@dataclass(frozen=True)
class AuxArray:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:  # exact (Python ints): a crafted shape must not wrap around to 0
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Aux:
    path: str
    version: int
    iteration: int
    codec: str
    nbytes: int
    crc: str
    arrays: tuple[AuxArray, ...]


@dataclass(frozen=True)
class Manifest:
    version: int
    iteration: int
    complete: bool
    rows: int
    value_bytes: int
    stored_bytes: int  # bytes this version wrote: its segments, aux file and manifest body
    created: float
    tables: tuple[Table, ...]
    segments: tuple[Segment, ...]
    aux: Aux | None

    def paths(self) -> list[str]:
        return [s.path for s in self.segments] + (
            [self.aux.path] if self.aux and self.aux.path else []
        )


# -- manifests ------------------------------------------------------------------------------
def encode_manifest(m: Manifest) -> bytes:
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **vars(m)}
    doc["tables"] = [vars(t) for t in m.tables]
    doc["segments"] = [vars(s) for s in m.segments]
    if m.aux is not None:
        doc["aux"] = {**vars(m.aux), "arrays": [vars(a) for a in m.aux.arrays]}
    body = json.dumps(doc, separators=(",", ":")).encode()
    crc = checksum(_covered(FORMAT_VERSION, len(body)), body)
    return b"%s %d %s %d\n" % (MAGIC, FORMAT_VERSION, crc.encode(), len(body)) + body


def _covered(fmt: int, size: int) -> bytes:
    """The header fields the manifest's checksum covers, with its body."""
    return b"%s %d %d\n" % (MAGIC, fmt, size)
