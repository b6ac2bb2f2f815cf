"""LeNet-5 on MNIST (:class:`scar.algorithms.nets.LeNet5`), trained by minibatches with SGD
(momentum 0.9) or Adam: cross-entropy over the first ``examples`` images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets import Classification
from .nets import LeNet5
from .torch_model import TorchModel


@dataclass(frozen=True)
class CNNParams:
    optimizer: str = "sgd"
    lr: float = 0.05
    batch_size: int = 64
    examples: int = 10_000  # the first images of the set
    eval_size: int = 1_000
    seed: int = 0


class CNN(TorchModel):
    name = "cnn"

    def __init__(self, data: Classification, params: CNNParams) -> None:
        if data.X.shape[1] != 28 * 28:
            raise ValueError(f"LeNet-5 takes 28 x 28 images, got {data.X.shape[1]} features")
        n = min(params.examples, data.X.shape[0])
        self.images = torch.from_numpy(
            np.ascontiguousarray(data.X[:n], dtype=np.float32).reshape(n, 1, 28, 28)
        )
        self.labels = torch.from_numpy(np.asarray(data.y[:n], dtype=np.int64))
        self.classes = data.n_classes
        self.p = params
        super().__init__(
            params.optimizer, params.lr, params.batch_size, n, params.eval_size, params.seed
        )

    def build(self) -> torch.nn.Module:
        return LeNet5(self.classes)

    def loss(self, ids: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(ids)
        return torch.nn.functional.cross_entropy(self.net(self.images[idx]), self.labels[idx])

    def metrics(self, tables) -> dict[str, float]:
        with self._bound(tables), torch.no_grad():
            idx = torch.from_numpy(self.eval_ids)
            hits = (self.net(self.images[idx]).argmax(1) == self.labels[idx]).float().mean()
        return {"accuracy": float(hits)}
