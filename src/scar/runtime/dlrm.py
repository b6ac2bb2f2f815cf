"""The DLRM-style recommender (:class:`scar.algorithms.dlrm.DLRMModel`) on the parameter server.

**Tables.** One per parameter of the network, named as torch names it: each embedding
(``emb.<f>.weight``, ``bags.<b>.weight``) keeps its rows (one per bucket of its field, width
the embedding dimension); every other parameter (the bottom and top MLPs' weights and biases)
is the parameter as rows of its last dimension (a weight ``(out, in)`` is ``out`` rows of
``in``, a bias one row).

**Workers.** Worker ``w`` holds a contiguous slice of the training examples. In iteration
``k`` it takes its share of the minibatch ``DLRMModel.batch(k)`` and pulls, sparsely, the
embedding rows its examples use (its batch's unique ids per field) and every MLP table whole.
It runs the network on those values - a copy of the model's net whose embeddings are the
pulled rows, the examples' ids renumbered to them (``torch.func.functional_call``) - and
pushes the gradient *sums* of the binary cross-entropy: the rows it pulled for the embeddings,
every row for the MLPs. Torch runs on one thread with deterministic kernels.

**Shards.** The model's optimizer as a server rule with its learning rate: Adagrad
(:class:`~.split.AdagradRule`) or Adam (:class:`~.split.AdamRule`, row-wise: an embedding row's
moments move only when a batch uses it, as torch's SparseAdam), on the mean gradient
(``server_args``: ``scale`` = 1 / the global batch). With Adagrad and one worker, an iteration
is the single-process model's step to float rounding.

**Objective.** The model's own: the mean loss over its fixed evaluation examples, computed by
its network with the tables' values copied in.

Torch is imported when a part computes or the split is built (a DLRM model exists then): this
module itself loads without it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import validation as check
from ..datasets.clicks import Bag, Clicks
from ..errors import ScarError
from .split import AdagradRule, AdamRule, ServerRule, Split, Update, WorkerPart

if TYPE_CHECKING:
    import torch

    from ..algorithms.dlrm import DLRMModel

#: the model's optimizer -> the shards' rule (taking the model's learning rate)
RULES: dict[str, type[ServerRule]] = {"adagrad": AdagradRule, "adam": AdamRule}


def as_table(t: torch.Tensor) -> np.ndarray:
    """A parameter as a table: rows of its last dimension (a copy)."""
    return t.detach().reshape(-1, t.shape[-1]).numpy().copy()


def embedding_names(net: torch.nn.Module) -> list[str]:
    """The parameters of ``net`` that keep their rows: its embeddings' weights, in order."""
    import torch

    kinds = (torch.nn.Embedding, torch.nn.EmbeddingBag)
    return [f"{name}.weight" for name, m in net.named_modules() if isinstance(m, kinds)]


def _slice(data: Clicks, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Bag]]:
    """Examples ``lo:hi`` of ``data`` (dense, ids, labels, bags renumbered from 0), copies."""
    bags = [
        Bag(
            b.name,
            b.values[b.offsets[lo] : b.offsets[hi]].copy(),
            b.offsets[lo : hi + 1] - b.offsets[lo],
            b.rows,
        )
        for b in data.bags
    ]
    return data.dense[lo:hi].copy(), data.ids[lo:hi].copy(), data.y[lo:hi].copy(), bags


class DLRMPart(WorkerPart):
    """One worker: its slice of the examples and a copy of the network (embeddings empty:
    ``update`` gives them the pulled rows)."""

    def __init__(
        self,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, list[Bag]],
        net: torch.nn.Module,
        fields: Sequence[str],
        bag_tables: Sequence[str],
        dense_shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        self.dense, self.ids, self.y, self.bags = data
        self.net = net
        self.fields, self.bag_tables = list(fields), list(bag_tables)
        self.dense_shapes = dict(dense_shapes)

    def _ids(self, args: np.ndarray) -> dict[str, np.ndarray]:
        """Per embedding, the sorted unique ids the examples ``args`` use."""
        out = {name: np.unique(self.ids[args, f]) for f, name in enumerate(self.fields)}
        for name, bag in zip(self.bag_tables, self.bags, strict=True):
            out[name] = np.unique(bag.select(args)[0])
        return out

    def rows(self, iteration, args):
        """The unique ids of the batch's examples per embedding; every MLP row (None)."""
        return self._ids(args) | dict.fromkeys(self.dense_shapes)

    def update(self, tables, iteration, args):
        if len(args) == 0:  # none of this iteration's examples is this worker's
            return {}
        import torch

        from ..algorithms.torch_model import one_thread

        one_thread()
        ids = self._ids(args)
        params = {n: torch.from_numpy(tables[n]).requires_grad_() for n in tables}
        net_params = {
            n: p.reshape(self.dense_shapes[n]) if n in self.dense_shapes else p
            for n, p in params.items()
        }
        local = np.stack(
            [np.searchsorted(ids[n], self.ids[args, f]) for f, n in enumerate(self.fields)], axis=1
        )
        bags = []
        for name, bag in zip(self.bag_tables, self.bags, strict=True):
            values, offsets = bag.select(args)
            bags.append(
                (torch.from_numpy(np.searchsorted(ids[name], values)), torch.from_numpy(offsets))
            )
        dense = torch.from_numpy(self.dense[args]) if self.dense.shape[1] else None
        logits = torch.func.functional_call(
            self.net, net_params, (dense, torch.from_numpy(local), bags)
        )
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(self.y[args]), reduction="sum"
        )
        loss.backward()
        return {n: Update(ids.get(n), params[n].grad.numpy()) for n in params}


class DLRMSplit(Split):
    """Data-parallel DLRM: sparse embedding pulls and pushes, dense MLP tables, the model's
    optimizer on the shards (see the module docstring)."""

    algorithm: DLRMModel
    sparse_pulls = True

    def __init__(self, algorithm: DLRMModel) -> None:
        super().__init__(algorithm)
        a = algorithm
        check.one_of("optimizer", a.optimizer_name, RULES, note="(the parameter server's rules)")
        self.rule = RULES[a.optimizer_name](lr=a.lr)
        embeddings = embedding_names(a.net)
        self.fields = [n for n in embeddings if n.startswith("emb.")]
        self.bag_tables = [n for n in embeddings if n.startswith("bags.")]
        if len(self.fields) != len(a.data.field_rows) or len(self.bag_tables) != len(a.data.bags):
            raise ScarError(
                f"the DLRM's embeddings {embeddings} do not match its data's "
                f"{len(a.data.field_rows)} fields and {len(a.data.bags)} bags"
            )
        self.dense_shapes = {
            n: tuple(p.shape) for n, p in a.net.named_parameters() if n not in embeddings
        }
        self._template = self._worker_net(embeddings)

    def _worker_net(self, embeddings: list[str]) -> torch.nn.Module:
        """The model's network with every embedding emptied (a worker gives it pulled rows)."""
        import torch

        net = copy.deepcopy(self.algorithm.net)
        for name in embeddings:
            module = net.get_submodule(name.removesuffix(".weight"))
            module.weight = torch.nn.Parameter(module.weight.new_empty(0, module.weight.shape[1]))
        return net.requires_grad_(False)

    @property
    def n_examples(self) -> int:
        return len(self.algorithm.data)

    def initial_tables(self):
        self.algorithm.start()
        return {n: as_table(p) for n, p in self.algorithm.net.named_parameters()}

    def parts(self, n_workers):
        data = self.algorithm.data
        return [
            DLRMPart(
                _slice(data, lo, hi),
                self._template,
                self.fields,
                self.bag_tables,
                self.dense_shapes,
            )
            for lo, hi in self._ranges(n_workers)
        ]

    def worker_args(self, iteration, n_workers):
        return self._local_batches(self.algorithm.batch(iteration), n_workers)

    def server_args(self, iteration):
        return {"scale": 1.0 / len(self.algorithm.batch(iteration))}

    def load(self, tables: Mapping[str, np.ndarray]) -> None:
        """Copy ``tables`` into the model's network (its parameters, in place)."""
        import torch

        with torch.no_grad():
            for name, p in self.algorithm.net.named_parameters():
                p.copy_(torch.from_numpy(np.asarray(tables[name])).reshape(p.shape))

    def objective(self, tables, states=()):
        self.load(tables)
        a = self.algorithm
        return a.objective(a.tables.arrays)  # the network's own tables: nothing copied
