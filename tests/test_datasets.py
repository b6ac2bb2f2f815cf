"""Datasets: the bundled stand-ins, the loaders of the paper's datasets from a user's files, the
safe readers, `scar datasets list`, and one clear line + exit 2 for every data mistake."""

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from scar import datasets as D
from scar.algorithms import registry as models
from scar.datasets import text as T
from scar.datasets.base import ArraysOnly
from scar.datasets.bundled import frame_columns
from scar.errors import DatasetError


def scar(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "scar.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_movielens_100k():
    d = D.load("movielens-100k")
    assert (len(d), d.n_users, d.n_items) == (100_000, 943, 1682)
    assert set(np.unique(d.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert d.users.min() == 0 and d.users.max() == 942 and d.items.max() == 1681
    # no user rates a movie twice
    assert len(np.unique(d.users.astype(np.int64) * 10_000 + d.items)) == 100_000


def test_movielens_small_is_read_from_a_pickled_frame_without_pandas():
    d = D.load("movielens-small")
    assert (len(d), d.n_users, d.n_items) == (100_004, 671, 9066)
    assert d.ratings.min() == 0.5 and d.ratings.max() == 5.0
    assert set(np.unique(d.ratings * 2)) <= set(range(1, 11))
    assert "pandas" not in sys.modules


def test_reuters_matches_the_lda_package():
    import lda.datasets

    c = D.load("reuters")
    assert (c.n_docs, c.n_words, c.n_tokens) == (395, 4258, 84010)
    assert np.all(np.diff(c.docs) >= 0)  # sorted by document
    assert np.array_equal(c.counts().toarray(), lda.datasets.load_reuters())
    assert c.vocab == lda.datasets.load_reuters_vocab()


def test_news_articles_tokenised_stopped_and_capped():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    c = D.load("news-articles")
    assert c.n_docs == 3824
    assert c.n_words == T.VOCAB_CAP == 5000
    assert 800_000 < c.n_tokens < 1_000_000
    assert list(c.vocab) == sorted(c.vocab)
    assert not set(c.vocab) & ENGLISH_STOP_WORDS
    assert all(w.isalpha() and w.islower() and len(w) >= 3 for w in c.vocab)
    doc_freq = np.bincount(np.unique(c.docs.astype(np.int64) * 10**6 + c.words) % 10**6)
    assert doc_freq.min() >= T.MIN_DOCS and doc_freq.max() <= T.MAX_DOC_FRACTION * c.n_docs


def test_registry_is_complete_and_consistent_with_the_models():
    for name, info in D.DATASETS.items():
        assert info.name == name
        assert info.source and info.size and info.licence and info.stands_in_for
        assert info.kind in ("classification", "ratings", "corpus")
        for model in info.models:
            assert name in models.MODEL_DATASETS[model]
    generated = {"criteo-synth"}  # made from a seed by scar.algorithms.sparse_lr, not loaded
    for model, names in models.MODEL_DATASETS.items():
        assert all(model in D.DATASETS[n].models for n in names if n not in generated)
    paper = {n for n, i in D.DATASETS.items() if not i.bundled}
    assert paper == {"covtype", "jester", "20newsgroups", "rcv1"}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_data_files_cannot_run_code(tmp_path):
    raw = pickle.dumps(_Evil())
    with pytest.raises(DatasetError, match="refusing"):
        ArraysOnly(io.BytesIO(raw)).load()
    import lzma

    path = tmp_path / "evil.pkl.compress"
    with lzma.open(path, "wb") as f:
        f.write(raw)
    with pytest.raises(DatasetError, match="refusing"):
        frame_columns(path)


# -- the paper's datasets, from files ------------------------------------------------------------
@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    "name,needs",
    [
        ("covtype", "covtype.data.gz"),
        ("jester", "jester_ratings.dat"),
        ("20newsgroups", "20news-bydate.tar.gz"),
        ("rcv1", "lyrl2004_tokens_train.dat.gz"),
    ],
)
def test_missing_paper_dataset_says_what_to_download_and_where(data_dir, name, needs):
    with pytest.raises(DatasetError) as e:
        D.load(name)
    msg = str(e.value)
    assert needs in msg and str(data_dir) in msg and D.DATA_DIR_ENV in msg and "http" in msg
    assert "\n" not in msg
    assert D.DATASETS[name].status().startswith("missing")


def test_covtype_from_the_uci_file(data_dir):
    rng = np.random.default_rng(0)
    rows = np.hstack([rng.integers(0, 3000, (40, 54)), rng.integers(1, 8, (40, 1))])
    with gzip.open(data_dir / "covtype.data.gz", "wt") as f:
        f.write("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    d = D.load("covtype")
    assert d.X.shape == (40, 54) and d.n_classes == 7
    assert d.X.min() >= 0 and d.X.max() <= 1
    assert np.array_equal(d.y, rows[:, 54] - 1)
    assert D.DATASETS["covtype"].status().startswith("found")


def test_jester_triples_and_dense_sheets(tmp_path, monkeypatch):
    triples, dense = tmp_path / "a", tmp_path / "b"
    triples.mkdir()
    dense.mkdir()
    (triples / "jester_ratings.dat").write_text("1\t\t5\t\t0.219\n1 7 -9.281\n63978 150 2.5\n")
    (dense / "jester-data-1.csv").write_text("2,1.5,99,-3\n1,99,99,7.25\n")
    monkeypatch.setenv(D.DATA_DIR_ENV, str(triples))
    d = D.load("jester")
    assert (len(d), d.n_users, d.n_items) == (3, 2, 3)
    assert np.allclose(d.ratings, [0.219, -9.281, 2.5])
    monkeypatch.setenv(D.DATA_DIR_ENV, str(dense))
    d = D.load("jester")
    assert (len(d), d.n_users) == (3, 2)
    assert sorted(d.ratings) == [-3.0, 1.5, 7.25]


def _docs(n):
    topics = ["alpha bravo charlie delta", "echo foxtrot golf hotel", "india juliet kilo lima"]
    return [f"{topics[i % 3]} the and of" for i in range(n)]  # each word in n/3 documents


def test_20newsgroups_from_the_archive(data_dir):
    with tarfile.open(data_dir / "20news-bydate.tar.gz", "w:gz") as tar:
        for i, text in enumerate(_docs(15)):
            raw = f"From: someone@example.com\nSubject: header words\n\n{text}\n".encode()
            info = tarfile.TarInfo(f"20news-bydate-train/sci.space/{i}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    c = D.load("20newsgroups")
    assert c.n_docs == 15 and c.n_words == 12
    assert "alpha" in c.vocab and "the" not in c.vocab  # stop words removed
    assert "someone" not in c.vocab and "subject" not in c.vocab  # headers dropped
    assert c.n_tokens == 15 * 4


def test_rcv1_from_the_token_files(data_dir):
    with gzip.open(data_dir / "lyrl2004_tokens_train.dat.gz", "wt") as f:
        for i, text in enumerate(_docs(15)):
            f.write(f".I {2286 + i}\n.W\n{text}\n\n")
    with gzip.open(data_dir / "lyrl2004_tokens_test_pt0.dat.gz", "wt") as f:
        f.write(".I 9999\n.W\nalpha bravo\n\n")
    c = D.load("rcv1")
    assert c.n_docs == 16 and "the" not in c.vocab  # in every document: above the cap
    assert c.n_tokens == 15 * 4 + 2


# -- the command line ----------------------------------------------------------------------------
def test_datasets_list(tmp_path):
    (tmp_path / "covtype.data").write_text("")
    r = scar("datasets", "list", "--json", "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert set(rows) == set(D.DATASETS)
    assert rows["movielens-100k"]["status"] == "installed"
    assert rows["movielens-100k"]["source"].startswith("recbole==1.2.1")
    assert rows["reuters"]["stands_in_for"] == "Reuters (RCV1)"
    assert rows["covtype"]["status"].startswith("found")
    assert rows["rcv1"]["status"].startswith("missing")
    table = scar("datasets", "list")
    assert table.returncode == 0 and "news-articles" in table.stdout and "licence" in table.stdout


@pytest.mark.parametrize(
    "args,env,needle",
    [
        (
            ["--model", "lda", "--dataset", "covtype", "--optimizer", "gibbs"],
            {},
            "--dataset must be one of reuters, news-articles, 20newsgroups or rcv1 for model lda, "
            "got 'covtype'",
        ),
        (
            ["--model", "mf", "--dataset", "reuters", "--optimizer", "als"],
            {},
            "--dataset must be one of movielens-100k, movielens-small or jester for model mf, "
            "got 'reuters'",
        ),
        (["--model", "mf", "--dataset", "nope", "--optimizer", "als"], {}, "model mf, got 'nope'"),
        (
            ["--model", "mf", "--dataset", "movielens-100k", "--optimizer", "gd"],
            {},
            "--optimizer must be als for model mf, got 'gd'",
        ),
        (["--model", "mlr", "--dataset", "covtype"], "EMPTY", "covtype.data.gz"),
        (
            ["--model", "lda", "--dataset", "20newsgroups", "--optimizer", "gibbs"],
            "EMPTY",
            "20news-bydate.tar.gz",
        ),
    ],
)
def test_data_mistakes_end_with_one_line_and_status_2(tmp_path, args, env, needle):
    if env == "EMPTY":
        env = {D.DATA_DIR_ENV: str(tmp_path)}
    out = tmp_path / "out.json"
    r = scar("experiment", *args, "--lost-shards", "2", "--trials", "1", "-o", str(out), env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scar: error:") and needle in lines[0], lines
    assert not out.exists()


def test_datasets_show_reads_a_dataset_and_reports_a_missing_one(tmp_path):
    r = scar("datasets", "show", "movielens-100k")
    assert r.returncode == 0 and "100,000 ratings" in r.stdout
    r = scar("datasets", "show", "jester", env={D.DATA_DIR_ENV: str(tmp_path)})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "jester_ratings.dat" in r.stderr
