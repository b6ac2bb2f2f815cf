"""The PyTorch networks of the torch models, written here (no torchvision).

* :class:`LeNet5`: LeCun et al.'s LeNet-5 for 28 x 28 images (MNIST): two 5 x 5 convolutions
  (6 and 16 channels, the first padded to keep 28 x 28) with 2 x 2 average pooling and tanh,
  then 120 - 84 - 10 fully connected layers.
* :class:`DLRM`: a DLRM-style recommender (after Naumov et al., 2019): one embedding table per
  categorical field (a multi-valued field, e.g. a movie's genres, is an ``EmbeddingBag`` taking
  the mean), a bottom MLP that maps the dense features to the embedding width, the pairwise dot
  products of all those vectors, and a top MLP over [bottom output, dot products] giving one
  logit (binary cross-entropy against the click).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LeNet5(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(torch.tanh(self.conv1(x)), 2)
        x = nn.functional.avg_pool2d(torch.tanh(self.conv2(x)), 2)
        x = torch.tanh(self.fc1(x.flatten(1)))
        x = torch.tanh(self.fc2(x))
        return self.fc3(x)


def mlp(sizes: Sequence[int], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """``fields``: rows of each single-valued field's table; ``bags``: rows of each
    multi-valued field's table; ``dense``: dense features; ``dim``: embedding width.

    ``forward(dense, ids, bags)``: ``dense`` (batch, dense) floats; ``ids`` (batch, fields)
    int64 rows; ``bags`` a list of (values, offsets) per multi-valued field, as
    ``nn.EmbeddingBag`` takes them."""

    def __init__(
        self,
        fields: Sequence[int],
        dense: int,
        dim: int = 16,
        bags: Sequence[int] = (),
        bottom: Sequence[int] = (64,),
        top: Sequence[int] = (64, 32),
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(n, dim, sparse=sparse) for n in fields)
        self.bags = nn.ModuleList(nn.EmbeddingBag(n, dim, mode="mean", sparse=sparse) for n in bags)
        self.bottom = mlp([dense, *bottom, dim], last_activation=True) if dense else None
        vectors = len(fields) + len(bags) + (1 if dense else 0)
        pairs = vectors * (vectors - 1) // 2
        self.top = mlp([pairs + (dim if dense else 0), *top, 1], last_activation=False)
        self._pairs = torch.triu_indices(vectors, vectors, offset=1)

    def forward(
        self,
        dense: torch.Tensor | None,
        ids: torch.Tensor,
        bags: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
    ) -> torch.Tensor:
        vecs = [e(ids[:, f]) for f, e in enumerate(self.emb)]
        vecs += [
            bag(values, offsets) for bag, (values, offsets) in zip(self.bags, bags, strict=True)
        ]
        head = []
        if self.bottom is not None:
            z = self.bottom(dense)
            vecs.append(z)
            head.append(z)
        v = torch.stack(vecs, dim=1)  # (batch, vectors, dim)
        dots = torch.bmm(v, v.transpose(1, 2))[:, self._pairs[0], self._pairs[1]]
        return self.top(torch.cat([*head, dots], dim=1)).squeeze(1)
