"""Benchmark SCAR's collapsed Gibbs sampler for LDA against the ``lda`` package's, same run.

Run: ``.venv/bin/python benchmarks/lda_sampler.py [--dataset reuters] [--iterations 100]``.

Both samplers run on the same corpus with the same K, alpha and beta (20, 0.1, 0.01). What is
timed is what a training loop pays per Gibbs sweep, nothing else:

* ours: ``LDA.step`` (topic totals, the iteration's random-stream key, one compiled sweep);
* ``lda``: one iteration of ``LDA.fit`` (shuffle of its random numbers + its Cython sweep),
  measured as ``fit(n + m iterations) - fit(m iterations)`` so that its initialisation (a
  Python loop) and its log-likelihood evaluations cancel out.

Best of ``--repeat`` runs each, after a warm-up (numba compilation is not counted). Both
fits' perplexities (from their doc-topic and topic-word estimates, computed the same way) are
printed to show the two did the same work. The last line is a JSON object:
``ratio`` = our tokens per second / the ``lda`` package's.
"""

from __future__ import annotations

import os
import sys

# benchmarks/select.py would shadow the standard-library ``select`` module: drop this folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from scar import datasets  # noqa: E402
from scar.algorithms.lda_gibbs import LDA, LDAParams, perplexity, reference_lda  # noqa: E402

TOPICS, ALPHA, BETA = 20, 0.1, 0.01


def ours(corpus, iterations: int) -> tuple[float, float]:
    """Seconds for ``iterations`` sweeps, and the perplexity after them."""
    algo = LDA(corpus, LDAParams(TOPICS, ALPHA, BETA, seed=0))
    tables = algo.start()
    algo.step(tables, 1)  # compile (or load the numba cache)
    tables = algo.start()
    t0 = time.perf_counter()
    for k in range(1, iterations + 1):
        algo.step(tables, k)
    return time.perf_counter() - t0, algo.perplexity(tables)


def theirs(counts, iterations: int, base: int) -> tuple[float, float]:
    """Seconds for ``iterations`` sweeps of ``lda.LDA.fit`` (difference of two fits), and the
    perplexity of the longer fit."""

    def fit(n: int):
        model = reference_lda(TOPICS, ALPHA, BETA, n, seed=0)
        t0 = time.perf_counter()
        model.fit(counts)
        return time.perf_counter() - t0, model

    short, _ = fit(base)
    long, model = fit(base + iterations)
    return max(long - short, 1e-9), perplexity(counts, model.doc_topic_, model.topic_word_)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="reuters", help="an LDA dataset (scar datasets list)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpus = datasets.load(args.dataset)
    if not isinstance(corpus, datasets.Corpus):
        print(f"{args.dataset} is not a corpus", file=sys.stderr)
        return 2
    counts = corpus.counts()
    tokens = corpus.n_tokens * args.iterations
    runs_ours = [ours(corpus, args.iterations) for _ in range(args.repeat)]
    runs_theirs = [theirs(counts, args.iterations, 10) for _ in range(args.repeat)]
    t_ours = min(t for t, _ in runs_ours)
    t_theirs = min(t for t, _ in runs_theirs)
    p_ours, p_theirs = runs_ours[0][1], runs_theirs[0][1]
    ratio = t_theirs / t_ours
    print(
        f"LDA collapsed Gibbs on {corpus.name}: {corpus.n_docs:,} docs, {corpus.n_words:,} words, "
        f"{corpus.n_tokens:,} tokens; K={TOPICS}, alpha={ALPHA}, beta={BETA}; "
        f"{args.iterations} sweeps, best of {args.repeat}"
    )
    print(f"{'sampler':<26}{'seconds':>10}{'M tokens/s':>13}{'perplexity':>13}")
    print(f"{'scar (numba)':<26}{t_ours:>10.3f}{tokens / t_ours / 1e6:>13.2f}{p_ours:>13.1f}")
    print(
        f"{'lda 3.0.2 (Cython)':<26}{t_theirs:>10.3f}{tokens / t_theirs / 1e6:>13.2f}{p_theirs:>13.1f}"
    )
    print(f"ratio (ours / lda, tokens per second): {ratio:.2f}x")
    print(
        json.dumps(
            {
                "benchmark": "lda_sampler",
                "ratio": round(ratio, 3),
                "dataset": corpus.name,
                "tokens": corpus.n_tokens,
                "iterations": args.iterations,
                "ours_tokens_per_s": round(tokens / t_ours),
                "lda_tokens_per_s": round(tokens / t_theirs),
                "ours_perplexity": round(p_ours, 1),
                "lda_perplexity": round(p_theirs, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
