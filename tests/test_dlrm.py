"""The DLRM-style recommender of the experiments (issue 23): model dlrm on criteo-synth and on
MovieLens-100k clicks.

What the experiment harness relies on, as for the CNN (tests/test_torch_models.py): ``start``
gives the same tables every time, an iteration is a deterministic function of (tables, step
counts, iteration) so the replay of the clean run is exact, the tables are the live tensors
(embedding rows included), the optimizer's state follows its parameters. And the data: the
MovieLens click loader's shape and click rate, one clear error for a malformed file, and
criteo-synth's click view leaving ``criteo_synth`` untouched.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from scar import datasets as D  # noqa: E402
from scar.algorithms import registry  # noqa: E402
from scar.algorithms.dlrm import CRITEO, auc, clicks, criteo_clicks  # noqa: E402
from scar.algorithms.sparse_lr import CriteoSynthConfig, criteo_synth  # noqa: E402
from scar.datasets.clicks import load_movielens_clicks, movielens_clicks  # noqa: E402
from scar.errors import DatasetError  # noqa: E402

SMALL = {"examples": 2000, "eval_size": 300, "batch_size": 64, "dim": 8}


@pytest.fixture(
    scope="module",
    params=[("criteo-synth", "adam"), ("movielens-100k", "adagrad")],
    ids=["criteo-adam", "movielens-adagrad"],
)
def dlrm(request):
    dataset, optimizer = request.param
    return registry.build("dlrm", dataset, optimizer, dict(SMALL))


def test_tables_are_the_network_and_optimizer_state_follows(dlrm):
    tables = dlrm.start()
    key = "exp_avg" if dlrm.optimizer_name == "adam" else "sum"
    follows = dlrm.follows()
    assert follows[f"emb.0.weight@{key}"] == "emb.0.weight"
    assert follows[f"top.4.bias@{key}"] == "top.4.bias"
    assert tables["emb.0.weight"].shape == (dlrm.data.field_rows[0], SMALL["dim"])  # row = value
    tables["emb.0.weight"][1, 0] = 0.25  # a row of the table is a row of the embedding
    assert float(dlrm.net.emb[0].weight.detach()[1, 0]) == 0.25
    f0 = dlrm.objective(tables)
    tables["top.4.bias"][0, 0] = 50.0  # always a click, through the network: loss jumps
    assert dlrm.objective(tables) > f0 + 1.0
    tables = dlrm.start()
    for it in range(1, 31):
        dlrm.step(tables, it)
    f0 = dlrm.objective(tables)
    tables["emb.1.weight"][:] *= 3.0  # one field's vectors scaled, through the dot products
    assert abs(dlrm.objective(tables) - f0) > 1e-2


def test_the_objective_falls_with_training_and_the_metrics_are_measured(dlrm):
    tables = dlrm.start()
    f0 = dlrm.objective(tables)
    for it in range(1, 61):
        dlrm.step(tables, it)
    assert dlrm.objective(tables) < 0.95 * f0
    m = dlrm.metrics(tables)
    assert 0.5 < m["auc"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0


def test_movielens_clicks_fields_and_click_rate():
    d = load_movielens_clicks()
    assert len(d) == 100_000 and d.fields == ("user", "item") and d.field_rows == (943, 1682)
    assert d.ids.shape == (100_000, 2) and d.ids.dtype == np.int64
    assert d.dense.shape == (100_000, 3) and d.dense.dtype == np.float32
    assert d.dense.min() == 0.0 and d.dense.max() == 1.0
    assert abs(d.click_rate - 0.5537) < 1e-4  # 55,375 ratings of 4 or 5
    (genre,) = d.bags
    assert genre.rows == 19 and genre.offsets.shape == (100_001,)
    lengths = np.diff(genre.offsets)
    assert lengths.min() >= 1 and lengths.max() <= 6
    ratings = D.load("movielens-100k")  # the same examples, in the same order
    np.testing.assert_array_equal(d.y, (ratings.ratings >= 4).astype(np.float32))
    np.testing.assert_array_equal(d.ids[:, 0], ratings.users)
    ids = np.array([7, 0, 5])
    values, starts = genre.select(ids)
    bags = [genre.values[genre.offsets[i] : genre.offsets[i + 1]] for i in ids]
    np.testing.assert_array_equal(values, np.concatenate(bags))
    np.testing.assert_array_equal(starts, [0, len(bags[0]), len(bags[0]) + len(bags[1])])
    head = d.head(500)  # the first examples, each table cut to the rows they use
    for f in range(2):
        used = np.unique(d.ids[:500, f])
        assert head.field_rows[f] == len(used)
        np.testing.assert_array_equal(used[head.ids[:, f]], d.ids[:500, f])
    used = np.unique(genre.values[: genre.offsets[500]])
    np.testing.assert_array_equal(used[head.bags[0].values], genre.values[: genre.offsets[500]])
    assert clicks("movielens-100k") is d


def _ml_copy(tmp_path):
    src = D.package_file("recbole", "dataset_example/ml-100k/ml-100k.inter", "recbole").parent
    for suffix in ("inter", "user", "item"):
        shutil.copy(src / f"ml-100k.{suffix}", tmp_path / f"ml-100k.{suffix}")
    return tmp_path


@pytest.mark.parametrize(
    "suffix, line, message",
    [
        ("inter", "196\t242\n", r"ml-100k\.inter: line 2 has 2 tab-separated fields, expected 4"),
        ("user", "x\t24\tM\tother\t0\n", r"ml-100k\.user: user ids must be numbers"),
        ("inter", "196\t99999\t3\t0\n", r"ml-100k\.inter: item 99999 is not in the item file"),
        ("item", None, r"ml-100k\.item: expected the header columns item_id, movie_title"),
    ],
)
def test_a_malformed_movielens_file_is_one_clear_dataset_error(tmp_path, suffix, line, message):
    folder = _ml_copy(tmp_path)
    path = folder / f"ml-100k.{suffix}"
    lines = path.read_text(encoding="latin-1").splitlines(keepends=True)
    if line is None:
        lines[0] = "item_id:token\tyear:token\n"
    else:
        lines[1] = line
    path.write_text("".join(lines), encoding="latin-1")
    with pytest.raises(DatasetError, match=message):
        movielens_clicks(folder)


def test_a_missing_movielens_file_is_a_dataset_error(tmp_path):
    folder = _ml_copy(tmp_path)
    (folder / "ml-100k.user").unlink()
    with pytest.raises(DatasetError, match=r"cannot read .*ml-100k\.user"):
        movielens_clicks(folder)


def test_criteo_clicks_leave_criteo_synth_untouched_and_dense_carries_the_click():
    cfg = CriteoSynthConfig(examples=3000, fields=5, hash_bits=8, seed=2)
    raw = criteo_synth(cfg)
    c = criteo_clicks(cfg)
    np.testing.assert_array_equal(c.y, raw.y)
    for f in range(cfg.fields):  # each field's rows: its buckets renumbered, in order
        buckets = np.unique(raw.idx[:, f])
        assert c.field_rows[f] == len(buckets)
        np.testing.assert_array_equal(buckets[c.ids[:, f]], raw.idx[:, f])
    again = criteo_synth(cfg)  # the dense stream did not disturb the generator
    np.testing.assert_array_equal(again.idx, raw.idx)
    assert c.dense.shape == (3000, 4) and 0.0 < c.dense.min() and c.dense.max() < 1.0
    click = c.y > 0.5
    assert c.dense[click, 0].mean() > c.dense[~click, 0].mean() + 0.1
    assert CRITEO.examples == 200_000 and CRITEO.hash_bits == 10


def test_auc_counts_ties_as_half():
    y = np.array([0, 0, 1, 1], dtype=np.float32)
    assert auc(np.array([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert auc(np.array([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), y) == 0.5
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([1.0, 1.0])))
