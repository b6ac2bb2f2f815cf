"""Your own recommender on SCAR's parameter server: a factorization machine on MovieLens-100k
clicks, trained on Ray while shards are SIGKILLed and recovered from partial checkpoints.

    python examples/ps_recommender.py [--iterations 60] [--kill-every 15] [--json]
        [--ray-address HOST:PORT]   # join a running Ray cluster instead of starting one

The model (Rendle's second-order factorization machine): every feature ``i`` of an example -
its user, its movie, each of the movie's genres (value 1 / their number), the user's age and
gender and the movie's release year (their values in [0, 1]) - has a weight ``w_i`` and a
factor ``v_i``; the logit of a click is ``b + sum_i x_i w_i + sum_{i<j} x_i x_j <v_i, v_j>``.

On the parameter server it is two tables: ``features``, one row ``[w_i, v_i]`` per feature,
which each worker pulls sparsely (the rows of its batch's features), and ``bias``, one row. A
worker holds a slice of the examples and pushes the gradient sums of the binary cross-entropy
over its share of the minibatch; the shards apply Adagrad to the mean gradient.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from scar.datasets.clicks import load_movielens_clicks
from scar.runtime import AdagradRule, Split, TrainConfig, Update, WorkerPart, train

FACTORS = 8
BATCH = 512
EVAL = 4000
GENRES = 6  # most genres a movie has


def features(seed: int = 0):
    """Per example its features (ids into the ``features`` table, padded with value 0), their
    values and the click; the table's row count; a fixed evaluation sample."""
    data = load_movielens_clicks()
    n = len(data)
    (genre,) = data.bags
    users, items = data.field_rows
    first = np.cumsum([0, users, items, genre.rows])  # where each kind of feature starts
    ids = np.zeros((n, 2 + GENRES + data.dense.shape[1]), np.int64)
    x = np.zeros(ids.shape, np.float32)
    ids[:, 0], ids[:, 1] = data.ids[:, 0], first[1] + data.ids[:, 1]
    x[:, :2] = 1.0
    count = np.diff(genre.offsets)
    example = np.repeat(np.arange(n), count)
    slot = 2 + np.arange(len(genre.values)) - np.repeat(genre.offsets[:-1], count)
    ids[example, slot] = first[2] + genre.values
    x[example, slot] = 1.0 / count[example]
    dense = slice(2 + GENRES, None)
    ids[:, dense] = first[3] + np.arange(data.dense.shape[1])
    x[:, dense] = data.dense
    rows = int(first[3]) + data.dense.shape[1]
    sample = np.sort(np.random.default_rng([seed, 1]).choice(n, EVAL, replace=False))
    return ids, x, data.y, rows, sample


def fm_logits(table: torch.Tensor, bias: torch.Tensor, ids: np.ndarray, x: np.ndarray):
    """The factorization machine's logits; ``ids`` index rows of ``table``."""
    e = table[torch.from_numpy(ids)]  # (batch, features, 1 + factors)
    xs = torch.from_numpy(x)
    v = xs.unsqueeze(2) * e[..., 1:]
    pairs = 0.5 * (v.sum(1).square() - v.square().sum(1)).sum(1)
    return bias[0, 0] + (xs * e[..., 0]).sum(1) + pairs


class FMWorker(WorkerPart):
    def __init__(self, ids: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        self.ids, self.x, self.y = ids, x, y

    def rows(self, iteration, batch):
        return {"features": self.ids[batch][self.x[batch] != 0], "bias": [0]}

    def update(self, tables, iteration, batch):
        if len(batch) == 0:
            return {}
        torch.set_num_threads(1)
        rows = np.unique(self.rows(iteration, batch)["features"])  # as the runtime pulled them
        local = np.searchsorted(rows, self.ids[batch]).clip(max=len(rows) - 1)  # padding: x 0
        table = torch.from_numpy(tables["features"]).requires_grad_()
        bias = torch.from_numpy(tables["bias"]).requires_grad_()
        logits = fm_logits(table, bias, local, self.x[batch])
        y = torch.from_numpy(self.y[batch])
        torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum").backward()
        return {
            "features": Update(rows, table.grad.numpy()),
            "bias": Update(None, bias.grad.numpy()),
        }


class FMSplit(Split):
    sparse_pulls = True

    def __init__(self, lr: float = 0.1, seed: int = 0) -> None:
        super().__init__()  # no scar Algorithm behind it
        self.ids, self.x, self.y, self.n_rows, self.sample = features(seed)
        self.rule = AdagradRule(lr=lr)
        self.seed = seed

    def initial_tables(self):
        rng = np.random.default_rng(self.seed)
        table = np.zeros((self.n_rows, 1 + FACTORS), np.float32)
        table[:, 1:] = rng.normal(0.0, 0.01, (self.n_rows, FACTORS))
        return {"features": table, "bias": np.zeros((1, 1), np.float32)}

    def _slices(self, n_workers: int) -> list[tuple[int, int]]:
        """Worker w holds examples [a, b) of the w-th slice."""
        cuts = np.linspace(0, len(self.y), n_workers + 1).astype(np.int64).tolist()
        return list(zip(cuts[:-1], cuts[1:], strict=True))

    def parts(self, n_workers):
        return [
            FMWorker(self.ids[a:b], self.x[a:b], self.y[a:b]) for a, b in self._slices(n_workers)
        ]

    def worker_args(self, iteration, n_workers):
        """Iteration k's minibatch (drawn from (seed, k)), each worker's share of it."""
        rng = np.random.default_rng([self.seed, iteration])
        batch = np.sort(rng.choice(len(self.y), BATCH, replace=False))
        return [batch[(batch >= a) & (batch < b)] - a for a, b in self._slices(n_workers)]

    def server_args(self, iteration):
        return {"scale": 1.0 / BATCH}

    def objective(self, tables, states=()):
        with torch.no_grad():
            t = {n: torch.from_numpy(v) for n, v in tables.items()}
            z = fm_logits(t["features"], t["bias"], self.ids[self.sample], self.x[self.sample])
            y = torch.from_numpy(self.y[self.sample])
            return float(torch.nn.functional.binary_cross_entropy_with_logits(z, y))


def main() -> None:
    p = argparse.ArgumentParser(description="A factorization machine on the parameter server.")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--kill-every", type=int, default=15)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ray-address", default=None, help="Join this Ray cluster (HOST:PORT).")
    p.add_argument("--json", action="store_true", help="End with the summary as one JSON line.")
    args = p.parse_args()
    split = FMSplit()
    with tempfile.TemporaryDirectory(prefix="fm-store-") as store:
        cfg = TrainConfig(
            runtime="ray",
            model="fm",  # labels of the result: the model is ``split``
            dataset="movielens-100k",
            ray_address=args.ray_address,
            shards=args.shards,
            workers=args.workers,
            iterations=args.iterations,
            kill_every=args.kill_every,
            checkpoint="priority",
            fraction=1 / 8,
            period=16,
            recovery="partial",
            eval_every=10,
            store=store,
        )
        doc = train(cfg, split=split)
    before, after = doc["objective"][0], doc["objective_final"]
    print(f"log loss {before:.4f} -> {after:.4f} after {doc['totals']['iterations']} iterations")
    for f in doc["failures"]:
        print(
            f"  after iteration {f['iteration']}: shard {f['shards'][0]} SIGKILLed; its "
            f"{f['rows_restored']} rows (tables and Adagrad slots) back from its saves up to "
            f"iteration {f['restored_from'][0]} in {f['restore_seconds']:.2f} s"
        )
    if args.json:
        summary = {
            "iterations": doc["totals"]["iterations"],
            "failures": len(doc["failures"]),
            "objective_before": before,
            "objective_after": after,
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
