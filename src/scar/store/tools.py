"""What ``scar ckpt`` shows and checks: verify every file of a store, describe its contents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CorruptCheckpointError
from .codec import decode_aux, decode_index, decode_values
from .format import DATA_DIR, MANIFEST_DIR, Manifest, decode_manifest, manifest_version
from .store import DurableStore


@dataclass
class VerifyReport:
    manifests: int = 0
    files: int = 0  # segment and aux files checked
    bytes: int = 0
    bad: dict[str, str] = field(default_factory=dict)  # path -> what is wrong
    notes: list[str] = field(default_factory=list)  # harmless leftovers
    spares: list[str] = field(default_factory=list)  # retired files a writer keeps (no note each)

    @property
    def ok(self) -> bool:
        return not self.bad


def verify(store: DurableStore) -> VerifyReport:
    """Check every manifest and every file they list: sizes, CRC-32C of every section, and
    that each decodes (row ids sorted inside their chunk, sizes after decompression)."""
    b, rep = store.backend, VerifyReport()
    manifests: dict[int, Manifest] = {}
    for name in b.list(MANIFEST_DIR):
        path = f"{MANIFEST_DIR}/{name}"
        v = manifest_version(name)
        if b.is_spare(name):
            rep.spares.append(path)
            continue
        if v is None:
            what = "temporary file of an interrupted commit" if b.is_temporary(name) else "stray"
            rep.notes.append(f"{path}: {what} (ignored by readers)")
            continue
        try:
            data = b.read(path)
        except FileNotFoundError:
            continue  # retired by a running writer
        rep.manifests += 1
        rep.bytes += len(data)
        try:
            manifests[v] = decode_manifest(data, path)
        except CorruptCheckpointError as e:
            rep.bad[path] = str(e)
    listed: dict[str, list[int]] = {}
    for v, m in sorted(manifests.items()):
        for seg in m.segments:
            if seg.path not in listed:
                table = m.tables[seg.table]
                _check_file(
                    store, rep, seg.path, seg.nbytes, lambda d, s=seg, t=table: _segment(d, s, t)
                )
            listed.setdefault(seg.path, []).append(v)
        if m.aux is not None and m.aux.path:
            if m.aux.path not in listed:
                _check_file(
                    store, rep, m.aux.path, m.aux.nbytes, lambda d, a=m.aux: decode_aux(d, a)
                )
            listed.setdefault(m.aux.path, []).append(v)
    gone = [p for p, why in rep.bad.items() if why.endswith("is missing")]
    if gone:  # a running writer may have retired them with their manifests: look again
        present = {manifest_version(n) for n in b.list(MANIFEST_DIR)}
        for p in gone:
            if not any(v in present for v in listed.get(p, [])):
                del rep.bad[p]
    for p in b.walk(DATA_DIR):
        if b.is_spare(p):
            rep.spares.append(p)
        elif p not in listed:
            rep.notes.append(
                f"{p}: listed by no manifest (an interrupted write; the next writer deletes it)"
            )
    if rep.spares:
        rep.notes.append(
            f"{len(rep.spares)} retired file(s) kept to write over (.spare-*, ignored by "
            "readers; the writer deletes them when it closes the store, or the next writer does)"
        )
    return rep


def _segment(data: bytes, seg, table) -> None:
    decode_index(data[: seg.index_bytes], seg, table)
    decode_values(data[seg.index_bytes :], seg, table)


def _check_file(store: DurableStore, rep: VerifyReport, path: str, size: int, decode) -> None:
    rep.files += 1
    try:
        data = store.backend.read(path)
    except FileNotFoundError:
        rep.bad[path] = f"{path}: file is missing"
        return
    rep.bytes += len(data)
    if len(data) != size:
        rep.bad[path] = f"{path}: {len(data)} bytes, the manifest says {size}" + (
            " (truncated)" if len(data) < size else ""
        )
        return
    try:
        decode(data)
    except CorruptCheckpointError as e:
        rep.bad[path] = str(e)


def _stats(x: np.ndarray) -> dict[str, Any]:
    if not x.size:
        return {"min": None, "median": None, "max": None}
    return {"min": int(x.min()), "median": float(np.median(x)), "max": int(x.max())}


def describe(store: DurableStore) -> dict[str, Any]:
    """Tables, rows, ages and bytes of the version the store reads (``store.checkout`` picks
    another), as plain data."""
    view = store._require_view()
    live = store._with_fallback(store._index)
    view = store._view
    tables = []
    for t, table in enumerate(view.tables):
        iters = live.iterations(t, slice(None))
        saved = iters[iters >= 0]
        segs = [s for s in view.segments if s.table == t]
        tables.append(
            {
                "name": table.name,
                "shape": [table.n_rows, table.width],
                "dtype": table.dtype,
                "chunks": len(table.chunks) - 1,
                "rows_saved": int(saved.size),
                "rows_never_saved": int(table.n_rows - saved.size),
                "saved_iteration": _stats(saved),
                "age": _stats(view.iteration - saved),
                "segments": len(segs),
                "bytes": int(sum(s.nbytes for s in segs)),
                "compressed_segments": sum(s.codec != "raw" for s in segs),
            }
        )
    aux = view.aux
    return {
        "url": store.url,
        "version": view.version,
        "iteration": view.iteration,
        "complete": view.complete,
        "versions": [m.version for m in store.intact()],
        "tables": tables,
        "aux": None
        if aux is None
        else {
            "iteration": aux.iteration,
            "bytes": aux.nbytes,
            "arrays": {a.name: {"dtype": a.dtype, "shape": list(a.shape)} for a in aux.arrays},
        },
        "lock": _lock_owner(store),
        "problems": dict(store.problems),
    }


def _lock_owner(store: DurableStore) -> dict | None:
    owner = store.backend.lock_owner()
    if isinstance(owner, dict):
        owner = {k: v for k, v in owner.items() if k != "token"}
    return owner
