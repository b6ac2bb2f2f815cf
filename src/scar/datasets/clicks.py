"""Click data for a DLRM-style recommender, and MovieLens-100k as clicks.

:class:`Clicks`: per example, dense features in [0, 1], one row in each single-valued
categorical field's table, a bag of rows in each multi-valued field's table (as
``nn.EmbeddingBag`` takes them), and a 0/1 label (the click).

:func:`load_movielens_clicks`: MovieLens-100k from recbole's bundled atomic files (read by
path): ``ml-100k.inter`` (user, item, rating, timestamp), ``ml-100k.user`` (user, age, gender,
occupation, zip code) and ``ml-100k.item`` (item, title, release year, genres). One example per
rating, a click when the rating is >= 4 (55.4 % of them). Fields: user (943 rows) and item
(1,682 rows); genres a multi-valued field (19 rows, 1-6 a movie); dense: the user's age and the
movie's release year, each scaled to [0, 1] over its range (two movies without a year get the
median), and the user's gender (1 = female).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import package_file

PIN = "recbole==1.2.1 (no-deps)"
CLICK_RATING = 4.0  # a rating at least this high is a click


@dataclass(frozen=True)
class Bag:
    """A multi-valued field: example ``i`` takes rows ``values[offsets[i]:offsets[i + 1]]``
    (``offsets`` has n + 1 entries) of a table of ``rows`` rows."""

    name: str
    values: np.ndarray  # int64
    offsets: np.ndarray  # int64, (n + 1,), non-decreasing from 0
    rows: int

    def select(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bags of examples ``ids`` as ``nn.EmbeddingBag`` takes them: (values, start of
        each example's bag)."""
        start, stop = self.offsets[ids], self.offsets[ids + 1]
        lengths = stop - start
        starts = np.zeros(len(ids), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
        return self.values[np.repeat(start, lengths) + within], starts


@dataclass(frozen=True)
class Clicks:
    """Labelled click data: ``dense`` (n, d) float32 in [0, 1]; ``ids[i, f]`` the row of
    example ``i`` in field ``f``'s table of ``field_rows[f]`` rows (int64); ``bags`` the
    multi-valued fields; ``y`` (n,) float32 0/1."""

    name: str
    dense: np.ndarray
    ids: np.ndarray
    field_rows: tuple[int, ...]
    y: np.ndarray
    bags: tuple[Bag, ...] = ()
    fields: tuple[str, ...] = ()  # names of the single-valued fields
    dense_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.dense.shape[0] != n or self.ids.shape != (n, len(self.field_rows)):
            raise DatasetError(
                f"{self.name}: {n} labels, dense {self.dense.shape}, ids {self.ids.shape} for "
                f"{len(self.field_rows)} fields"
            )
        if n and np.any((self.ids < 0) | (self.ids >= np.asarray(self.field_rows, np.int64))):
            raise DatasetError(f"{self.name}: a field's row is outside its table")
        for b in self.bags:
            if b.offsets.shape != (n + 1,) or b.offsets[0] != 0 or b.offsets[-1] != b.values.size:
                raise DatasetError(f"{self.name}: bag {b.name} has bad offsets")
            if b.values.size and (b.values.min() < 0 or b.values.max() >= b.rows):
                raise DatasetError(f"{self.name}: a row of bag {b.name} is outside its table")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def click_rate(self) -> float:
        return float(self.y.mean()) if len(self.y) else 0.0

    def head(self, n: int) -> Clicks:
        """The first ``n`` examples, every table cut to the rows they use (renumbered in
        order): a row no training example touches would never change."""
        if n >= len(self):
            return self
        ids = self.ids[:n]
        cols, rows = [], []
        for f in range(ids.shape[1]):
            used, inverse = np.unique(ids[:, f], return_inverse=True)
            cols.append(inverse.reshape(-1))
            rows.append(len(used))
        bags = []
        for b in self.bags:
            values = b.values[: b.offsets[n]]
            used, inverse = np.unique(values, return_inverse=True)
            bags.append(
                Bag(b.name, inverse.reshape(-1).astype(np.int64), b.offsets[: n + 1], len(used))
            )
        return Clicks(
            self.name,
            self.dense[:n],
            np.stack(cols, axis=1).astype(np.int64) if cols else ids,
            tuple(rows),
            self.y[:n],
            tuple(bags),
            self.fields,
            self.dense_names,
        )


def _table(path: Path, header: tuple[str, ...]) -> list[list[str]]:
    """Rows of a recbole atomic file (tab separated, a typed header), checked for shape."""
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    if not lines or tuple(c.split(":")[0] for c in lines[0].split("\t")) != header:
        raise DatasetError(f"{path}: expected the header columns {', '.join(header)}")
    rows = []
    for k, line in enumerate(lines[1:], 2):
        row = line.split("\t")
        if len(row) != len(header):
            raise DatasetError(
                f"{path}: line {k} has {len(row)} tab-separated fields, expected {len(header)}"
            )
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def _ints(path: Path, rows: list[list[str]], column: int, what: str) -> np.ndarray:
    try:
        return np.array([int(float(r[column])) for r in rows], dtype=np.int64)
    except ValueError as e:
        raise DatasetError(f"{path}: {what} must be numbers ({e})") from None


def _scaled(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / (span if span > 0 else 1.0)


def _index(path: Path, keys: np.ndarray, known: np.ndarray, what: str) -> np.ndarray:
    """Position of each key in ``known`` (a DatasetError naming the first unknown key)."""
    order = np.argsort(known)
    pos = np.searchsorted(known, keys, sorter=order).clip(0, len(known) - 1)
    found = order[pos]
    bad = known[found] != keys
    if bad.any():
        raise DatasetError(f"{path}: {what} {keys[bad][0]} is not in the {what} file")
    return found


def movielens_clicks(folder: Path) -> Clicks:
    """MovieLens-100k as clicks, from ``ml-100k.inter``, ``.user`` and ``.item`` in
    ``folder`` (see the module docstring)."""
    inter_path, user_path, item_path = (folder / f"ml-100k.{s}" for s in ("inter", "user", "item"))
    inter = _table(inter_path, ("user_id", "item_id", "rating", "timestamp"))
    users = _table(user_path, ("user_id", "age", "gender", "occupation", "zip_code"))
    items = _table(item_path, ("item_id", "movie_title", "release_year", "class"))
    try:
        rating = np.array([float(r[2]) for r in inter])
    except ValueError as e:
        raise DatasetError(f"{inter_path}: ratings must be numbers ({e})") from None
    user_ids = _ints(user_path, users, 0, "user ids")
    item_ids = _ints(item_path, items, 0, "item ids")
    u = _index(inter_path, _ints(inter_path, inter, 0, "user ids"), user_ids, "user")
    i = _index(inter_path, _ints(inter_path, inter, 1, "item ids"), item_ids, "item")

    age = _ints(user_path, users, 1, "ages").astype(np.float64)
    female = np.array([r[2] == "F" for r in users], dtype=np.float64)
    year = np.array([float(r[2]) if r[2].isdigit() else np.nan for r in items])
    if np.isnan(year).all():
        raise DatasetError(f"{item_path}: no release year is a number")
    year[np.isnan(year)] = np.median(year[~np.isnan(year)])
    dense = np.column_stack([_scaled(age)[u], female[u], _scaled(year)[i]]).astype(np.float32)

    genres = [r[3].split() for r in items]
    vocab = sorted({g for gs in genres for g in gs})
    code = {g: k for k, g in enumerate(vocab)}
    item_len = np.array([len(gs) for gs in genres], dtype=np.int64)
    item_off = np.concatenate([[0], np.cumsum(item_len)])
    item_values = np.array([code[g] for gs in genres for g in gs], dtype=np.int64)
    lengths = item_len[i]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    picked = Bag("item-genres", item_values, item_off.astype(np.int64), len(vocab)).select(i)[0]
    bag = Bag("genre", picked, offsets, len(vocab))
    return Clicks(
        "movielens-100k",
        dense,
        np.column_stack([u, i]).astype(np.int64),
        (len(user_ids), len(item_ids)),
        (rating >= CLICK_RATING).astype(np.float32),
        (bag,),
        ("user", "item"),
        ("age", "female", "release_year"),
    )


@lru_cache(maxsize=2)
def load_movielens_clicks() -> Clicks:
    """MovieLens-100k clicks from recbole's bundled files (cached per process)."""
    folder = package_file("recbole", "dataset_example/ml-100k/ml-100k.inter", PIN).parent
    data = movielens_clicks(folder)
    if (len(data), data.field_rows) != (100_000, (943, 1682)):
        raise DatasetError(f"MovieLens-100k files in {folder} have an unexpected size")
    return data
