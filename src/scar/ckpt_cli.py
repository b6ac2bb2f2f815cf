"""``scar ckpt``: list, inspect, verify and restore checkpoint stores; and the stores that
``scar experiment --store`` gives its trials.

Every command takes a store URL: a path, ``file://``, ``memory://`` or ``s3://bucket/prefix``
(S3 credentials and endpoint come from the usual AWS environment variables, e.g.
``AWS_ENDPOINT_URL`` for an S3-compatible server). Reading commands never take the writer lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator

import click
import numpy as np

from .errors import ConfigError, StoreError
from .store import CheckpointWarning, DurableStore
from .store.backends import backend_for
from .store.format import MANIFEST_DIR

# the stores `scar train --store URL` (one per shard) and `scar experiment --store URL` (one
# per trial) write under URL
_CHILD = re.compile(r"(shard|trial)-(\d+)")


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
    found = sorted(((m[1], int(m[2])), n) for n in names if (m := _CHILD.fullmatch(n)))
    return [join_url(url, n) for _, n in found]


def _one_store(url: str, kids: list[str]) -> None:
    """``inspect`` and ``restore`` read one store: a URL holding several is an error."""
    if kids:
        names = [k.rstrip("/").rsplit("/", 1)[-1] for k in kids]
        raise StoreError(
            f"{url} holds {len(kids)} checkpoint stores ({names[0]}"
            f"{f' .. {names[-1]}' if len(names) > 1 else ''}), one per shard or trial: give "
            f"one of them, e.g. {kids[0]}"
        )


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        try:
            yield
        finally:
            for w in caught:
                msg = " ".join(str(w.message).split())
                click.echo(f"scar: warning: {msg}", err=True)


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
def ls_cmd(url: str, as_json: bool) -> None:
    """List the committed versions of a store (of each store, for the URL of a ``scar train``
    or ``scar experiment --store``)."""
    kids = _children(url)
    if not kids:
        _ls(url, as_json)
    elif as_json:
        docs = [_ls(kid, True, echo=False) for kid in kids]
        click.echo(json.dumps({"url": url, "stores": docs}))
    else:
        for kid in kids:
            click.echo(f"{kid}:")
            _ls(kid, False)


def _ls(url: str, as_json: bool, echo: bool = True) -> dict:
    with _warnings_to_stderr():
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
    doc = {"url": url, "versions": rows, "problems": store.problems}
    if as_json:
        if echo:
            click.echo(json.dumps(doc))
        return doc
    if not rows:
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
    for why in store.problems.values():
        click.echo(f"scar: warning: {why}", err=True)
    return doc


@ckpt.command()
@click.argument("url")
@click.option("--version", "version", type=int, default=None, help="A version [default: latest].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect(url: str, version: int | None, as_json: bool) -> None:
    """Show tables, rows, ages (iterations since each row was saved) and bytes."""
    from .store.tools import describe

    _one_store(url, _children(url))
    with _warnings_to_stderr():
        store = _open(url)
        if version is not None:
            store.checkout(version)
        doc = describe(store)
    if as_json:
        click.echo(json.dumps(doc))
        return
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
    from .store.tools import verify as run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)  # verify names every bad file itself
        rep = run(_open(url))
    for why in rep.bad.values():
        click.echo(f"BAD {' '.join(why.split())}")
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
    """Write the saved value of every row (as of a version) to a .npz of plain arrays."""
    from .cli import check_output

    path = check_output(output)
    _one_store(url, _children(url))
    with _warnings_to_stderr():
        store = _open(url)
        if version is not None:
            store.checkout(version)
        store._require_view()  # a clear error for a store with no (intact) version
        arrays = {}
        for name in store.specs:
            arrays[name] = store.read_rows(name)
            if iterations:
                arrays[f"{name}.saved_iteration"] = store.saved_iteration(name)
        info = store.latest()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    click.echo(
        f"{path}: {len(arrays)} arrays from version {info.version} (iteration {info.iteration})"
    )


@ckpt.command()
@click.argument("url")
def unlock(url: str) -> None:
    """Remove the writer lock of a dead writer (object stores; a local lock frees itself)."""
    store = _open(url)
    if store.backend.local:
        owner = store.backend.lock_owner()
        if owner is not None:  # a live process holds the flock: nothing a file removal frees
            raise StoreError(
                f"{url} is locked by a running writer ({_owner(owner)}); a local lock is "
                "released by the kernel when its writer exits: stop that process"
            )
        click.echo(f"{url}: not locked")
        return
    owner = store.backend.break_lock()
    click.echo(f"{url}: lock removed (was {_owner(owner)})" if owner else f"{url}: not locked")


def _owner(owner: dict) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "another writer"


# -- the stores of `scar experiment --store` --------------------------------------------------
def join_url(url: str, name: str) -> str:
    return os.path.join(url, name) if "://" not in url else f"{url.rstrip('/')}/{name}"


@contextlib.contextmanager
def trial_stores(url: str | None) -> Iterator[Callable[[int], DurableStore]]:
    """A factory ``seed -> store`` for the trials of an experiment: ``URL/trial-<seed>``, each
    written asynchronously. Without a URL: a temporary directory, removed afterwards, whose
    writes skip fsync (no crash can ever need a store that is deleted after the run; the
    format, checksums and atomic commits are the same)."""
    tmp = None
    if url is None:
        tmp = tempfile.mkdtemp(prefix="scar-ckpt-")
        url = tmp
    try:
        if not url.strip():
            raise ConfigError("--store must be a path or URL")
        probe = join_url(url, f".probe-{os.getpid()}")
        DurableStore(probe, keep_last=1).close()  # an unwritable store fails now, not mid-run
        _remove(probe)
        fsync = tmp is None
        yield lambda seed: DurableStore(
            join_url(url, f"trial-{seed}"), async_writes=True, fsync=fsync
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _remove(url: str) -> None:
    """Delete a store made only to check that ``--store`` is writable."""
    b = backend_for(url)
    if b.local:
        shutil.rmtree(b.root, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            b.fs.rm(b.root, recursive=True)
