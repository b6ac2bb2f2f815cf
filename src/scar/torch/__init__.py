"""SCAR for PyTorch: prioritized, partial checkpoints of a model and its optimizer.

``from scar.torch import TorchCheckpointer`` (needs torch, the ``scar[torch]`` extra). How a
model becomes row tables: :mod:`scar.tensors.layout`; the optimizers it knows:
:mod:`scar.tensors.optim`; the guide: docs/torch.md.
"""

from .checkpointer import TorchCheckpointer

__all__ = ["TorchCheckpointer"]
