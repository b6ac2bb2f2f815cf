"""Datasets: the bundled stand-ins SCAR runs on by default, the paper's datasets read from the
user's files, and where each comes from.

Bundled data comes from installed packages whose data files are read by path, never by
importing the package (several pin old numpy). A dataset that is not installed is a
:class:`~scar.errors.DatasetError` naming what to install, never a silent substitute.

The paper's own datasets (CoverType, Jester, 20 Newsgroups, RCV1) are read from files the user
already has, in the folder ``$SCAR_DATA_DIR`` (default ``~/scar_data``). Three kinds of data set:

* :class:`Classification` (MLR): features in [0, 1] and labels;
* :class:`Ratings` (MF): (user, item, rating) triples with contiguous ids;
* :class:`Corpus` (LDA): one (document, word) pair per token, sorted by document.

Modules (each imports only ``base`` and those above it in this list, never the other way):

* :mod:`~scar.datasets.base`: the three data classes, where files are found, the safe unpickler;
* :mod:`~scar.datasets.text`: the text pipeline (tokens, stop words, the capped vocabulary);
* :mod:`~scar.datasets.bundled`: the bundled stand-ins;
* :mod:`~scar.datasets.files`: the paper's datasets from the user's files (formats there);
* :mod:`~scar.datasets.registry`: every data set by name (:data:`DATASETS`) and :func:`load`.
"""

from .base import (
    DATA_DIR_ENV,
    DATA_INSTALL,
    Classification,
    Corpus,
    Ratings,
    data_dir,
    package_dir,
    package_file,
    ratings_from_triples,
)
from .registry import DATASETS, DatasetInfo, load

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DATA_INSTALL",
    "Classification",
    "Corpus",
    "DatasetInfo",
    "Ratings",
    "data_dir",
    "load",
    "package_dir",
    "package_file",
    "ratings_from_triples",
]
