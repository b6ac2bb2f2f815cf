"""A PyTorch model and its optimizer as SCAR's row tables: numpy views of the live tensors
(:mod:`.layout`), the optimizer state that follows each parameter (:mod:`.optim`), and the
scalars that travel as aux arrays. Knows nothing of checkpoints or stores: the checkpointer
(:mod:`scar.torch`) and the torch models of the experiments (:mod:`scar.algorithms`) both
build on it."""

from .model import RNG, TorchTables

__all__ = ["RNG", "TorchTables"]
