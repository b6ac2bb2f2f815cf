"""What ``scar ckpt`` shows and checks: verify every file of a store, describe its contents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CorruptCheckpointError
from .codec import decode_aux, decode_index, decode_values
from .format import Manifest, manifest_name, manifest_version
from .manifests import decode_manifest
from .names import DATA_DIR, MANIFEST_DIR, data_version
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
    if rep.bad:  # a running writer may have retired (and reused) them meanwhile: look again
        present = set(b.list(MANIFEST_DIR))
        for p in list(rep.bad):
            if p.startswith(f"{MANIFEST_DIR}/"):
                retired = p.rsplit("/", 1)[-1] not in present
            else:
                retired = not any(manifest_name(v) in present for v in listed.get(p, []))
            if retired:
                del rep.bad[p]
    unreadable = [
        manifest_version(p.rsplit("/", 1)[-1]) for p in rep.bad if p.startswith(MANIFEST_DIR)
    ]
    upto = max(unreadable, default=-1)
    kept = 0
    for p in b.files(DATA_DIR):
        if b.is_spare(p):
            rep.spares.append(p)
        elif p not in listed and (data_version(p) is None or data_version(p) > upto):
            rep.notes.append(
                f"{p}: listed by no manifest (an interrupted write; the next writer deletes it)"
                if data_version(p) is not None
                else f"{p}: not a file of this store (ignored)"
            )
        elif p not in listed:
            kept += 1
    if kept:
        rep.notes.append(
            f"{kept} file(s) listed by no intact manifest are kept: an unreadable manifest may "
            "list them (remove it once you no longer need what it held, and the next writer "
            "deletes them)"
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
    cat = store.catalog
    cat.require_view()
    live = store.reader.with_fallback(cat.index)
    view = cat.view
    if _check_sizes(store, view):  # rows of a missing dense segment: resolved again
        cat.live = None
        live = store.reader.with_fallback(cat.index)
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
        # bad or missing files of this version (its rows come from older copies, if any)
        "damaged": {p: why for p, why in store.problems.items() if p in set(view.paths())},
    }


def _check_sizes(store: DurableStore, view: Manifest) -> bool:
    """Record in ``store.problems`` each file ``view`` lists that is missing or not the size
    its manifest says (a dense segment is otherwise not opened until its rows are read)."""
    files = [(s.path, s.nbytes) for s in view.segments]
    if view.aux is not None and view.aux.path:
        files.append((view.aux.path, view.aux.nbytes))
    found = {}
    for path, nbytes in files:
        if path in store.problems:
            continue
        size = store.backend.size(path)
        if size is None:
            found[path] = f"{path}: file is missing"
        elif size != nbytes:
            found[path] = f"{path}: {size} bytes, the manifest says {nbytes}"
    if found and store.readonly and store.catalog.retired(view):
        raise store.catalog.gone(view)  # retired by a running writer meanwhile, not damaged
    store.problems.update(found)
    return bool(found)


def _lock_owner(store: DurableStore) -> dict | None:
    owner = store.backend.lock_owner()
    if isinstance(owner, dict):
        owner = {k: v for k, v in owner.items() if k != "token"}
    return owner
