"""Store URLs, and the stores a run keeps under one URL.

A store is named by a URL: a path, ``file://PATH``, ``memory://NAME`` or
``s3://BUCKET[/PREFIX]``. A run of ``scar train --store URL`` gives every parameter-server shard
its own store, ``URL/shard-<k>``; ``scar experiment --store URL`` one per trial,
``URL/trial-<seed>``. ``scar ckpt`` finds them under the run's URL (:func:`children`).
"""

from __future__ import annotations

import os
import re

from ..errors import StoreError

URL_FORMS = "a path, file://PATH, memory://NAME or s3://BUCKET[/PREFIX]"
_CHILD = re.compile(r"(shard|trial)-(\d+)")


def check_url(url: str) -> str:
    """``url`` if it names a store; else a StoreError that says what a store URL looks like."""
    if not isinstance(url, str) or not url.strip():
        raise StoreError(f"not a store URL: {url!r} (expected {URL_FORMS})")
    if "://" in url:
        scheme, rest = url.split("://", 1)
        if not scheme or not rest.strip("/"):
            raise StoreError(f"not a store URL: {url!r}: nothing after {scheme}:// ({URL_FORMS})")
        if scheme in ("s3", "s3a") and not rest.split("/", 1)[0]:
            raise StoreError(f"not a store URL: {url!r}: no bucket (s3://BUCKET[/PREFIX])")
    return url


def join_url(url: str, name: str) -> str:
    """The URL of ``name`` inside ``url``."""
    return os.path.join(url, name) if "://" not in url else f"{url.rstrip('/')}/{name}"


def shard_url(base: str, shard: int) -> str:
    """The store of parameter-server shard ``shard`` of a run whose store URL is ``base``."""
    return join_url(base, f"shard-{shard}")


def trial_url(base: str, seed: int) -> str:
    """The store of the trial with seed ``seed`` of an experiment whose store URL is ``base``."""
    return join_url(base, f"trial-{seed}")


def child_names(names: list[str]) -> list[str]:
    """Of the entries of a run's URL, the shard and trial stores, ordered by kind and number."""
    found = sorted(((m[1], int(m[2])), n) for n in names if (m := _CHILD.fullmatch(n)))
    return [n for _, n in found]
