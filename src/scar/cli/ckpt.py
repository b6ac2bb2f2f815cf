"""``scar ckpt``: list, inspect, verify and restore checkpoint stores, and unlock them.

Every command takes a store URL: a path, ``file://``, ``memory://`` or ``s3://bucket/prefix``
(S3 credentials and endpoint come from the usual AWS environment variables, e.g.
``AWS_ENDPOINT_URL`` for an S3-compatible server). Reading commands never take the writer lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
import zipfile
from pathlib import Path

import click
import numpy as np

from ..errors import StoreError
from ..store import CheckpointWarning, DurableStore
from ..store.backends import backend_for
from ..store.names import MANIFEST_DIR
from ..store.tools import describe
from ..store.tools import verify as verify_store
from ..store.urls import child_names, join_url
from .common import check_output, one_line, warn, warnings_to_stderr


def _open(url: str) -> DurableStore:
    return DurableStore(url, readonly=True)


def _children(url: str) -> list[str]:
    """The stores ``URL/shard-<k>`` or ``URL/trial-<seed>`` (in that order, by number) when
    URL holds no store of its own but those: what ``scar train`` and ``scar experiment``
    write under their ``--store``. Empty otherwise."""
    try:
        names = backend_for(url).list("")
    except StoreError:  # opening the URL as one store says what is wrong with it
        return []
    if MANIFEST_DIR in names:
        return []
    return [join_url(url, n) for n in child_names(names)]


def _one_store(url: str, kids: list[str]) -> None:
    """``inspect`` and ``restore`` read one store: a URL holding several is an error."""
    if kids:
        names = [k.rstrip("/").rsplit("/", 1)[-1] for k in kids]
        raise StoreError(
            f"{url} holds {len(kids)} checkpoint stores ({names[0]}"
            f"{f' .. {names[-1]}' if len(names) > 1 else ''}), one per shard or trial: give "
            f"one of them, e.g. {kids[0]}"
        )


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@click.group()
def ckpt() -> None:
    """Checkpoint stores: list, inspect, verify, restore (URL: path, file://, memory://, s3://)."""


@ckpt.command("ls")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def ls_cmd(ctx: click.Context, url: str, as_json: bool) -> None:
    """List the committed versions of a store (of each store, for the URL of a ``scar train``
    or ``scar experiment --store``); each unreadable manifest is named on stderr. Exit status
    0, or 1 if a store has unreadable manifests and no intact version left (a store with no
    version yet is 0)."""
    kids = _children(url)
    if not kids:
        docs = [_ls(url, as_json)]
    elif as_json:
        docs = [_ls(kid, True, echo=False) for kid in kids]
        click.echo(json.dumps({"url": url, "stores": docs}))
    else:
        docs = []
        for kid in kids:
            click.echo(f"{kid}:")
            docs.append(_ls(kid, False))
    if any(not d["versions"] and d["problems"] for d in docs):
        ctx.exit(1)


def _ls(url: str, as_json: bool, echo: bool = True) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        store = _open(url)
        rows = [
            {
                "version": m.version,
                "iteration": m.iteration,
                "complete": m.complete,
                "rows": m.rows,
                "stored_bytes": m.stored_bytes,
                "created": m.created,
            }
            for m in store.intact()
        ]
    # Each bad file once: the warning of a store read from an older version names them all.
    said = [one_line(str(w.message)) for w in caught]
    bad = [one_line(why) for why in store.problems.values()]
    said += [f"{url}: {why}" for why in bad if not any(why in s for s in said)]
    for line in said:
        warn(line)
    doc = {"url": url, "versions": rows, "problems": store.problems}
    if as_json:
        if echo:
            click.echo(json.dumps(doc))
        return doc
    if not rows:
        if store.problems:
            click.echo(f"{url}: no intact checkpoint: unreadable {', '.join(store.problems)}")
        else:
            click.echo(f"{url}: no committed checkpoint")
        return doc
    click.echo(f"{'version':>8} {'iteration':>10} {'kind':>8} {'rows':>10} {'bytes':>10}  created")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))
        kind = "full" if r["complete"] else "partial"
        click.echo(
            f"{r['version']:>8} {r['iteration']:>10} {kind:>8} {r['rows']:>10} "
            f"{_size(r['stored_bytes']):>10}  {when}"
        )
    return doc


@ckpt.command()
@click.argument("url")
@click.option("--version", "version", type=int, default=None, help="A version [default: latest].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def inspect(ctx: click.Context, url: str, version: int | None, as_json: bool) -> None:
    """Show tables, rows, ages (iterations since each row was saved) and bytes. Exit status
    1 if a file of that version is missing or damaged (each is named on stderr)."""
    _one_store(url, _children(url))
    with warnings_to_stderr():
        store = _open(url)
        if version is not None:
            store.checkout(version)
        doc = describe(store)
    for why in doc["damaged"].values():
        warn(why)
    if as_json:
        click.echo(json.dumps(doc))
        ctx.exit(1 if doc["damaged"] else 0)
    click.echo(
        f"{url}: version {doc['version']} (iteration {doc['iteration']}, "
        f"{'full' if doc['complete'] else 'partial'}); versions kept: "
        f"{', '.join(map(str, doc['versions']))}"
    )
    for t in doc["tables"]:
        age, it = t["age"], t["saved_iteration"]
        click.echo(
            f"  table {t['name']}: {t['shape'][0]} x {t['shape'][1]} {t['dtype']}, "
            f"{t['chunks']} chunks, {t['segments']} segments, {_size(t['bytes'])}"
            f" ({t['compressed_segments']} compressed)"
        )
        click.echo(
            f"    rows saved {t['rows_saved']} (never: {t['rows_never_saved']}); saved at "
            f"iteration {it['min']}..{it['max']}; age min/median/max "
            f"{age['min']}/{age['median']}/{age['max']} iterations"
        )
    if doc["aux"]:
        names = ", ".join(f"{k}{tuple(v['shape'])}" for k, v in doc["aux"]["arrays"].items())
        click.echo(f"  aux (iteration {doc['aux']['iteration']}): {names}")
    if doc["lock"]:
        click.echo(
            f"  locked by a writer: pid {doc['lock'].get('pid')} on {doc['lock'].get('host')}"
        )
    ctx.exit(1 if doc["damaged"] else 0)


@ckpt.command()
@click.argument("url")
@click.option("--quiet", "-q", is_flag=True, help="Print only the bad files.")
@click.pass_context
def verify(ctx: click.Context, url: str, quiet: bool) -> None:
    """Check every manifest and checksum (of each store, for the URL of a ``scar train`` or
    ``scar experiment --store``). Exit status 0 if intact, 1 if not."""
    ok = True
    for one in _children(url) or [url]:
        ok &= _verify(one, quiet)
    ctx.exit(0 if ok else 1)


def _verify(url: str, quiet: bool) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)  # verify names every bad file itself
        rep = verify_store(_open(url))
    for why in rep.bad.values():
        click.echo(f"BAD {one_line(why)}")
    if not quiet:
        for note in rep.notes:
            click.echo(f"note: {note}")
        state = "intact" if rep.ok else f"{len(rep.bad)} bad file(s)"
        click.echo(
            f"{url}: {rep.manifests} manifests, {rep.files} files, {_size(rep.bytes)} checked: "
            f"{state}"
        )
    return rep.ok


@ckpt.command()
@click.argument("url")
@click.option("--version", "version", type=int, default=None, help="A version [default: latest].")
@click.option("--output", "-o", required=True, help="The .npz file to write.")
@click.option("--iterations", is_flag=True, help="Also write <table>.saved_iteration arrays.")
def restore(url: str, version: int | None, output: str, iterations: bool) -> None:
    """Write the saved value of every row (as of a version) to a .npz of plain arrays: table
    NAME is the array ``np.load(FILE)[NAME]`` (member NAME.npy), whatever the name; with
    --iterations its rows' saved iterations are NAME.saved_iteration.

    Nothing is written (exit status 2) when a key would be ambiguous or unsafe: with
    --iterations, a table whose NAME.saved_iteration is the name of another table (restore
    without --iterations); two keys NAME and NAME.npy (np.load reads member NAME.npy for
    both); a name that is absolute (/x, \\x, C:x), has a '..' part (split at / and \\: an
    unzip tool would write it outside the folder it extracts to), a NUL character, or is not
    valid Unicode."""
    path = check_output(output)
    _one_store(url, _children(url))
    with warnings_to_stderr():
        store = _open(url)
        if version is not None:
            store.checkout(version)
        store.catalog.require_view()  # a clear error for a store with no (intact) version
        keys = _npz_keys(list(store.specs), iterations)
        # one version, read whole (again, on a newer one, if a running writer retires it)
        snap = store.read_all(iterations=iterations)
        arrays = {
            key: (snap.saved_iterations if its else snap.tables)[name]
            for key, (name, its) in keys.items()
        }
        info = snap.version
    _write_npz(path, arrays)
    click.echo(
        f"{path}: {len(arrays)} arrays from version {info.version} (iteration {info.iteration})"
    )


_ITERATIONS = ".saved_iteration"
_DRIVE = re.compile(r"[A-Za-z]:")


def _npz_keys(tables: list[str], iterations: bool) -> dict[str, tuple[str, bool]]:
    """The keys ``restore`` writes, in order: key -> (table, whether it holds the table's saved
    iterations). :class:`StoreError` for a key that cannot round-trip through ``np.load`` or
    that could escape the folder a zip tool extracts the archive to."""
    keys = {name: (name, False) for name in tables}
    if iterations:
        for name in tables:
            key = name + _ITERATIONS
            if key in keys:
                raise StoreError(
                    f"--iterations would write the saved iterations of table {_shown(name)} as "
                    f"{_shown(key)}, which is the name of another table; restore without "
                    "--iterations"
                )
            keys[key] = (name, True)

    def what(key: str) -> str:
        name, its = keys[key]
        if its:
            return f"the saved iterations of table {_shown(name)} ({_shown(key)})"
        return f"table {_shown(key)}"

    for key in keys:
        if key.endswith(".npy") and key[:-4] in keys:
            raise StoreError(
                f"cannot write both {what(key[:-4])} and {what(key)} to a .npz: np.load "
                f"reads member {_shown(key)} for both names"
            )
        why = _unsafe_member(key)
        if why:
            raise StoreError(f"cannot write {what(key)} to a .npz: the name {why}")
    return keys


def _shown(name: str) -> str:
    """A table name for a message: quoted, and cut short if long."""
    return repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name)} characters)"


def _unsafe_member(key: str) -> str | None:
    """Why ``key + '.npy'`` cannot be a zip member (None: it can)."""
    if "\0" in key:
        return "has a NUL character, which ends a zip member name"
    try:
        size = len(key.encode("utf-8")) + 4
    except UnicodeEncodeError:
        return "is not valid Unicode (zip member names are UTF-8)"
    if size > 0xFFFF:
        return f"is {size} bytes long in UTF-8 (zip member names are at most 65535)"
    if key.startswith(("/", "\\")) or _DRIVE.match(key):
        return "is an absolute path (an unzip tool would write it outside its folder)"
    if ".." in re.split(r"[/\\]", key):
        return "has a '..' part (an unzip tool would write it outside its folder)"
    return None


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez`` writes (an uncompressed zip, one ``<key>.npy`` member per array), for
    any key: to a temporary file in the same folder, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, a in arrays.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
        os.replace(tmp, path)
    except OSError as e:
        raise StoreError(f"cannot write output {str(path)!r}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@ckpt.command()
@click.argument("url")
@click.option(
    "--force",
    is_flag=True,
    help="Remove the lock even if its lease is fresh or its writer runs on this machine. "
    "Risky: a writer that is still alive loses its lock, and the version it is writing "
    "may be lost (it commits nothing more once it notices).",
)
def unlock(url: str, force: bool) -> None:
    """Remove the writer lock of a dead writer. An object store's lock is a lease its writer
    renews: it is removed only if its writer is provably gone (it ran on this machine and
    has exited) or its lease has expired. A local store's lock frees itself (the kernel
    releases it when its writer exits)."""
    store = _open(url)
    owner = store.backend.break_lock(force=force)
    click.echo(f"{url}: lock removed (was {_owner(owner)})" if owner else f"{url}: not locked")


def _owner(owner: dict) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "another writer"
