"""Reading a manifest: parsed and validated before anything is allocated from it.

A manifest that fails any check - header, size, checksum, strict JSON of bounded nesting, the
schema and every type, finite numbers in range, chunk bounds, section sizes, dtypes from an
allow-list, tables and aux arrays that fit this machine's memory, paths inside ``data/`` - is
a :class:`~scar.errors.CorruptCheckpointError` naming it, skipped by readers like a checksum
failure (property-based fuzzing: tests/test_store_fuzz.py).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import reprlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CorruptCheckpointError, StoreError
from .format import (
    CODECS,
    FORMAT,
    ID_CODINGS,
    ITER_BYTES,
    MAGIC,
    MAX_BYTES,
    READABLE_FORMATS,
    TABLE_DTYPES,
    Aux,
    AuxArray,
    Manifest,
    Segment,
    Table,
    _covered,
    checksum,
    corrupt,
    manifest_version,
)

MAX_VERSION = 10**10 - 1  # manifest names hold 10 digits
MAX_ITERATION = 1 << 62
MAX_CREATED = 1e11  # seconds since the epoch (the year 5138): time.localtime formats it
MAX_DEPTH = 32  # JSON nesting of a manifest body; the format nests 5 deep (doc, aux, arrays, ...)
MAX_CHUNK_ROWS = (1 << 31) - 1  # the reader's index holds a row's place in its segment as int32
MAX_AUX_DIMS = 32
INDEX_BYTES_PER_ROW = 16  # the reader's index (LiveSet): owner int32, pos int32, row_iters int64
# Worker-side arrays: plain numbers as numpy's dtype.str spells them ('<f8', '|b1', '>i4', ...);
# the long double sizes are this platform's (x86-64: f16 and c32).
_AUX_DTYPE_RE = re.compile(r"([<>|])([biufc])([0-9]{1,2})")
_AUX_SIZES = {
    "b": (1,),
    "i": (1, 2, 4, 8),
    "u": (1, 2, 4, 8),
    "f": (2, 4, 8, np.dtype(np.longdouble).itemsize),
    "c": (8, 16, np.dtype(np.clongdouble).itemsize),
}
_CRC_RE = re.compile(r"[0-9a-f]{8}")
_SEGMENT_RE = re.compile(r"data/v[0-9]{10}\.[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,200}")
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 60
_SHOW.maxlist = _SHOW.maxdict = 4
_SHOW.maxlevel = 2


def decode_manifest(data: bytes, name: str) -> Manifest:
    """Parse and validate a manifest; :class:`CorruptCheckpointError` names what is wrong.

    Everything is checked before anything is allocated from it (a manifest with a valid
    checksum may still be hostile): the JSON's nesting, every number's range, dtypes from
    allow-lists, paths inside ``data/``, and the memory its tables and aux arrays need to be
    read here. A manifest that fails is skipped by readers like one that fails its checksum;
    no exception but the store's own (:class:`StoreError`) leaves this function."""

    def bad(why: str) -> CorruptCheckpointError:
        return corrupt(name, f"{name}: {why}")

    nl = data.find(b"\n", 0, 100)
    parts = data[:nl].split(b" ") if nl > 0 else []
    if len(parts) != 4 or parts[0] != MAGIC:
        raise bad("not a scar manifest (bad header)")
    try:
        fmt, crc, size = int(parts[1]), parts[2].decode("ascii"), int(parts[3])
    except (ValueError, UnicodeDecodeError):
        raise bad("bad header") from None
    body = data[nl + 1 :]
    if len(body) != size:
        raise bad(f"truncated or padded: body is {len(body)} bytes, header says {size}")
    if checksum(_covered(fmt, size), body) != crc:
        raise bad("checksum mismatch")
    if fmt not in READABLE_FORMATS:
        raise StoreError(
            f"{name}: store format {fmt} is not supported "
            f"(this scar reads {', '.join(map(str, READABLE_FORMATS))})"
        )
    doc = _parse(body, bad)
    try:
        return _manifest_from_doc(doc, manifest_version(name.rsplit("/", 1)[-1]))
    except _Invalid as e:
        raise bad(str(e)) from None


def manifest_doc(data: bytes, name: str = "manifest") -> Any:
    """The JSON body of a manifest (for ``scar ckpt inspect --raw``), unvalidated beyond being
    strict JSON of a sane nesting (:class:`CorruptCheckpointError` otherwise)."""

    def bad(why: str) -> CorruptCheckpointError:
        return corrupt(name, f"{name}: {why}")

    nl = data.find(b"\n")
    if nl < 0:
        raise bad("not a scar manifest (no header line)")
    return _parse(data[nl + 1 :], bad)


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_NEST = np.zeros(256, np.int8)
_NEST[list(b"[{")], _NEST[list(b"]}")] = 1, -1


def _depth(body: bytes) -> int:
    """How deep the JSON text ``body`` nests (its brackets outside strings), found without
    parsing it: ``json.loads`` recurses once per level. Only exact for valid JSON, which is
    all that matters: anything else fails to parse."""
    if b"\\" in body:
        body = _ESCAPE.sub(b"", body)  # escapes live in strings; \" must not count as a quote
    s = np.frombuffer(body.translate(None, _NOT_STRUCTURE), np.uint8)
    in_string = np.cumsum(s == ord('"'), dtype=np.int64) & 1
    return int(np.cumsum(np.where(in_string == 1, 0, _NEST[s]), dtype=np.int64).max(initial=0))


def _no_constant(token: str) -> None:
    raise ValueError(f"{token} is not a JSON number")


def _parse(body: bytes, bad: Callable[[str], CorruptCheckpointError]) -> Any:
    """A manifest's body as parsed JSON; ``bad(why)`` is raised unless it is strict JSON
    (UTF-8, no NaN or Infinity) nesting at most ``MAX_DEPTH`` levels."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("body is not UTF-8 text") from None
    if _depth(body) > MAX_DEPTH:
        raise bad(f"body nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # the bound above should have caught it; json recurses per level
        raise bad("body nests too deeply") from None
    except ValueError as e:  # not JSON, NaN or Infinity, an integer of over 4300 digits
        raise bad(f"body is not JSON ({str(e)[:100]})") from None


class _Invalid(Exception):
    pass


def _show(v: Any) -> str:
    """A short repr of a value for a message (a hostile one may be huge)."""
    try:
        return _SHOW.repr(v)
    except ValueError:  # an integer too long to print
        return f"an integer of {v.bit_length()} bits"


def _get(d: Any, key: str, kind: type | tuple, what: str = "") -> Any:
    if not isinstance(d, dict) or key not in d:
        raise _Invalid(f"{what or 'manifest'} has no {key!r}")
    v = d[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise _Invalid(f"{what or 'manifest'}: {key!r} must be an integer")
    if not isinstance(v, kind):
        raise _Invalid(f"{what or 'manifest'}: {key!r} has the wrong type")
    return v


def _int(d: Any, key: str, lo: int, hi: int = MAX_BYTES, what: str = "") -> int:
    v = _get(d, key, int, what)
    if not lo <= v <= hi:
        raise _Invalid(f"{what or 'manifest'}: {key!r} = {_show(v)} is outside {lo}..{hi}")
    return v


def _created(d: Any) -> float:
    """A manifest's ``created``: seconds since the epoch, finite, from 0 to ``MAX_CREATED``
    (compared before any conversion: float(10**400) overflows)."""
    v = _get(d, "created", (int, float))
    if isinstance(v, bool) or not 0 <= v <= MAX_CREATED:  # NaN compares false
        raise _Invalid(f"'created' = {_show(v)} is not a time from 0 to {MAX_CREATED:.0e} s")
    return float(v)


def check_path(p: Any) -> str:
    """A data file path must be a plain file name inside ``data/``: ``data/v<10 digits>.<name>``
    (the whole string: no trailing newline, no separator, no ``..``)."""
    if not isinstance(p, str) or not _SEGMENT_RE.fullmatch(p) or ".." in p:
        raise _Invalid(f"path {_show(p)} points outside the store")
    return p


def _crc(d: Any, key: str, what: str) -> str:
    v = _get(d, key, str, what)
    if not _CRC_RE.fullmatch(v):
        raise _Invalid(f"{what}: {key!r} is not a CRC-32C")
    return v


@functools.cache
def physical_memory() -> int:
    """Bytes of physical memory of this machine (1 TiB where the system does not say); asked
    once (glibc reads /proc/meminfo for it)."""
    try:
        n = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf, or no such name here
        n = -1
    return n if n > 0 else 1 << 40


def _size(n: int) -> str:
    unit, shift = next(((u, k) for u, k in (("TiB", 40), ("GiB", 30)) if n >= 1 << k), ("MiB", 20))
    return f"{n / (1 << shift):.1f} {unit}"


def _zstd_bound(n: int) -> int:
    """The most bytes zstd compresses ``n`` bytes into (ZSTD_COMPRESSBOUND)."""
    return n + (n >> 8) + ((128 << 10) - n >> 11 if n < 128 << 10 else 0)


def _table(t: Any, w: str) -> Table:
    n, width = _int(t, "n_rows", 0, 1 << 40, w), _int(t, "width", 0, 1 << 30, w)
    dtype = _get(t, "dtype", str, w)
    if dtype not in TABLE_DTYPES:
        raise _Invalid(f"{w}: dtype {_show(dtype)} is not one of {', '.join(TABLE_DTYPES)}")
    ch = _get(t, "chunks", list, w)
    ok = len(ch) >= 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in ch)
    if (
        not ok
        or ch[0] != 0
        or ch[-1] != n
        or any(a > b for a, b in zip(ch[:-1], ch[1:], strict=True))
    ):
        raise _Invalid(f"{w}: chunk bounds do not cover rows 0..{n}")
    if max(b - a for a, b in zip(ch[:-1], ch[1:], strict=True)) > MAX_CHUNK_ROWS:
        raise _Invalid(f"{w}: a chunk holds more than {MAX_CHUNK_ROWS} rows")
    if n * width * np.dtype(dtype).itemsize > MAX_BYTES:
        raise _Invalid(f"{w}: shape ({n}, {width}) is implausibly large")
    return Table(_get(t, "name", str, w), n, width, dtype, tuple(ch))


def _check_memory(tables: list[Table]) -> None:
    """Reading needs an index of every table's rows (``INDEX_BYTES_PER_ROW`` each) and, to
    read a table in full, its values: more than this machine's memory cannot be read here."""
    rows = sum(t.n_rows for t in tables)
    index = INDEX_BYTES_PER_ROW * rows
    values = max(t.n_rows * t.row_bytes for t in tables)
    have = physical_memory()
    if index + values > have:
        raise _Invalid(
            f"its tables need {_size(index + values)} of memory to read (an index of {rows} "
            f"rows and up to {_size(values)} of values), more than this machine's "
            f"{_size(have)}: it cannot be read here"
        )


def _manifest_from_doc(doc: Any, file_version: int | None) -> Manifest:
    if _get(doc, "format", str) != FORMAT:
        raise _Invalid(f"format is not {FORMAT!r}")
    version = _int(doc, "version", 0, MAX_VERSION)
    if file_version is not None and version != file_version:
        raise _Invalid(f"holds version {version}, but its name says {file_version}")
    tables = [_table(t, f"table {i}") for i, t in enumerate(_get(doc, "tables", list))]
    if not tables or len({t.name for t in tables}) != len(tables):
        raise _Invalid("tables are missing or not unique")
    _check_memory(tables)
    segments, seen = [], set()
    for i, s in enumerate(_get(doc, "segments", list)):
        segments.append(_segment(s, f"segment {i}", tables, version))
        if segments[-1].path in seen:
            raise _Invalid(f"segment {i}: path listed twice")
        seen.add(segments[-1].path)
    aux = doc.get("aux")
    if aux is not None:
        aux = _aux(aux, version)
    return Manifest(
        version,
        _int(doc, "iteration", -1, MAX_ITERATION),
        _get(doc, "complete", bool),
        _int(doc, "rows", 0),
        _int(doc, "value_bytes", 0),
        _int(doc, "stored_bytes", 0),
        _created(doc),
        tuple(tables),
        tuple(segments),
        aux,
    )


def _segment(s: Any, w: str, tables: list[Table], version: int) -> Segment:
    t = _int(s, "table", 0, len(tables) - 1, w)
    table = tables[t]
    c = _int(s, "chunk", 0, len(table.chunks) - 2, w)
    rows = _int(s, "rows", 1, table.chunk_rows(c), w)
    dense, row_iters = _get(s, "dense", bool, w), _get(s, "row_iters", bool, w)
    if dense and rows != table.chunk_rows(c):
        raise _Invalid(f"{w}: dense, but holds {rows} of {table.chunk_rows(c)} rows")
    codec = _get(s, "codec", str, w)
    if codec not in CODECS:
        raise _Invalid(f"{w}: unknown codec {_show(codec)}")
    coding = _get(s, "id_coding", str, w) if "id_coding" in s else "list"  # format 1: list
    if coding not in ID_CODINGS or (coding == "bitmap" and dense):
        raise _Invalid(f"{w}: bad id_coding {_show(coding)}")
    iter_bytes = _get(s, "iter_bytes", int, w) if "iter_bytes" in s else 8  # formats 1-2: 8
    if iter_bytes not in ITER_BYTES:
        raise _Invalid(f"{w}: iter_bytes {_show(iter_bytes)} is not one of {ITER_BYTES}")
    seg = Segment(
        check_path(_get(s, "path", str, w)),
        t,
        c,
        _int(s, "version", 0, version, w),
        _int(s, "iteration", -1, MAX_ITERATION, w),
        rows,
        dense,
        row_iters,
        codec,
        _int(s, "index_bytes", 0, MAX_BYTES, w),
        _crc(s, "index_crc", w),
        _int(s, "values_bytes", 0, MAX_BYTES, w),
        _crc(s, "values_crc", w),
        coding,
        iter_bytes,
    )
    index_raw, values_raw = seg.index_raw(table.chunk_rows(c)), rows * table.row_bytes
    if codec == "raw" and (seg.index_bytes != index_raw or seg.values_bytes != values_raw):
        raise _Invalid(f"{w}: section sizes do not match {rows} rows of table {table.name!r}")
    if codec == "zstd" and (
        seg.index_bytes > _zstd_bound(index_raw) or seg.values_bytes > _zstd_bound(values_raw)
    ):
        raise _Invalid(f"{w}: compressed sections larger than {rows} rows can compress to")
    return seg


def _aux_dtype(dt: str, i: int) -> np.dtype:
    """An aux array's dtype: a plain number type as numpy's ``dtype.str`` spells it, checked
    against the allow-list before numpy sees the string."""
    m = _AUX_DTYPE_RE.fullmatch(dt)
    if m is not None:
        order, kind, size = m.group(1), m.group(2), int(m.group(3))
        if size in _AUX_SIZES[kind] and (order == "|") == (size == 1):
            return np.dtype(dt)
    raise _Invalid(f"aux array {i}: dtype {_show(dt)} is not a plain number type")


def _aux_shape(shape: list, itemsize: int, i: int) -> tuple[int, ...]:
    if len(shape) > MAX_AUX_DIMS or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise _Invalid(f"aux array {i}: bad shape {_show(shape)}")
    # numpy refuses a shape whose nonzero sizes multiply past its index range, even with a 0
    if math.prod(max(n, 1) for n in shape) * itemsize > MAX_BYTES:
        raise _Invalid(f"aux arrays are implausibly large (array {i}: shape {_show(shape)})")
    return tuple(shape)


def _aux(a: Any, version: int) -> Aux:
    w = "aux"
    arrays = []
    for i, x in enumerate(_get(a, "arrays", list, w)):
        dt = _aux_dtype(_get(x, "dtype", str, w), i)
        shape = _aux_shape(_get(x, "shape", list, w), dt.itemsize, i)
        arrays.append(AuxArray(_get(x, "name", str, w), dt.str, shape))
    total = sum(x.nbytes for x in arrays)
    if total > MAX_BYTES:
        raise _Invalid("aux arrays are implausibly large")
    if total > (have := physical_memory()):
        raise _Invalid(
            f"aux arrays need {_size(total)} of memory, more than this machine's "
            f"{_size(have)}: they cannot be read here"
        )
    codec = _get(a, "codec", str, w)
    if codec not in CODECS:
        raise _Invalid(f"aux: unknown codec {_show(codec)}")
    path = _get(a, "path", str, w)
    if path or arrays:  # an aux without arrays has no file
        check_path(path)
    aux = Aux(
        path,
        _int(a, "version", 0, version, w),
        _int(a, "iteration", -1, MAX_ITERATION, w),
        codec,
        _int(a, "nbytes", 0, MAX_BYTES, w),
        _crc(a, "crc", w),
        tuple(arrays),
    )
    if codec == "raw" and aux.nbytes != total:
        raise _Invalid("aux: size does not match its arrays")
    if codec == "zstd" and aux.nbytes > _zstd_bound(total):
        raise _Invalid("aux: compressed larger than its arrays can compress to")
    return aux
