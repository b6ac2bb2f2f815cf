"""What an optimizer keeps per parameter, and making it exist before the first step.

SCAR lays every table out once, when the checkpointer starts; an optimizer creates its state at
its first ``step``. So the state is created up front here, as that first step would create it:

* Adam, AdamW, SparseAdam: ``step`` 0, ``exp_avg`` and ``exp_avg_sq`` zeros (and
  ``max_exp_avg_sq`` with ``amsgrad``) - exactly the optimizer's own initial state;
* Adagrad: made by its constructor already (``sum`` = ``initial_accumulator_value``);
* SGD with momentum: ``momentum_buffer`` zeros, where the optimizer's first step would start
  it at the gradient. With ``dampening`` 0 that first step gives the same buffer (0·momentum
  + gradient); with ``dampening`` d > 0 the first step adds (1 − d)·gradient instead of the
  gradient. Parameters whose buffer exists already (the optimizer has stepped) keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import ConfigError

SUPPORTED = "SGD, Adam, AdamW, Adagrad and SparseAdam"


def tensor_keys(opt: torch.optim.Optimizer, group: dict) -> tuple[str, ...]:
    """The per-parameter state tensors shaped like the parameter, in a fixed order."""
    if isinstance(opt, torch.optim.Adam):  # AdamW too
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
    if isinstance(opt, torch.optim.SparseAdam):
        return ("exp_avg", "exp_avg_sq")
    if isinstance(opt, torch.optim.Adagrad):
        return ("sum",)
    if isinstance(opt, torch.optim.SGD):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()
    raise ConfigError(
        f"optimizer {type(opt).__name__} is not supported: TorchCheckpointer knows the state of "
        f"{SUPPORTED}"
    )


def scalar_keys(opt: torch.optim.Optimizer) -> tuple[str, ...]:
    """The per-parameter scalars (saved as aux arrays, not rows)."""
    if isinstance(opt, torch.optim.Adam | torch.optim.SparseAdam | torch.optim.Adagrad):
        return ("step",)
    return ()


def params(opt: torch.optim.Optimizer) -> Iterator[tuple[dict, torch.Tensor]]:
    for group in opt.param_groups:
        for p in group["params"]:
            yield group, p


def materialize(opt: torch.optim.Optimizer) -> None:
    """Create every parameter's state that does not exist yet (see the module docstring)."""
    for group, p in params(opt):
        state = opt.state[p]
        keys = tensor_keys(opt, group)
        if isinstance(opt, torch.optim.Adam | torch.optim.SparseAdam) and "step" not in state:
            if isinstance(opt, torch.optim.SparseAdam):
                state["step"] = 0
            elif group.get("capturable") or group.get("fused"):
                return_dtype = torch.float32 if group.get("fused") else _scalar_dtype()
                state["step"] = torch.zeros((), dtype=return_dtype, device=p.device)
            else:
                state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        for key in keys:
            if state.get(key) is None:
                state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
