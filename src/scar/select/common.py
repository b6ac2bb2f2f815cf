"""What every selection kernel shares: numba's options, a bit primitive, the thread count
of small inputs (and ``single_threaded`` for callers that share their cores), and the checks of
float inputs."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from llvmlite import ir
from numba import get_num_threads, set_num_threads
from numba.core import types
from numba.extending import intrinsic

_PARALLEL_N = 1 << 20  # below this many values, kernels run on the calling thread only
_U = np.uint64
_OPTS = {"cache": True, "nogil": True}


@intrinsic
def _ctz(typingctx, x):
    """Count trailing zero bits of a non-zero uint64 (LLVM ``cttz``)."""

    def codegen(context, builder, sig, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(types.uint64), codegen


@contextmanager
def single_threaded():
    """Run this thread's numba kernels on one thread (numba's thread count is per thread):
    for callers that share few cores with other busy processes, where a parallel kernel only
    fights them (a parameter-server shard selecting rows while its workers compute)."""
    old = get_num_threads()
    set_num_threads(1)
    try:
        yield
    finally:
        set_num_threads(old)


@contextmanager
def _threads(size: int):
    """Run numba kernels on one thread for small inputs: waking the pool costs more then."""
    if size >= _PARALLEL_N or get_num_threads() == 1:
        yield get_num_threads()
        return
    old = get_num_threads()
    set_num_threads(1)
    try:
        yield 1
    finally:
        set_num_threads(old)


def _as_float_array(name: str, a: np.ndarray, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.dtype.name in ("float16", "bfloat16"):  # scored in float32 (a copy)
        return a.astype(np.float32)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise ValueError(f"{name} must be float16, bfloat16, float32 or float64, got {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _check_pair(live: np.ndarray, saved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    live = _as_float_array("live", live, 2)
    saved = _as_float_array("saved", saved, 2)
    if live.shape != saved.shape:
        raise ValueError(f"live and saved shapes differ: {live.shape} vs {saved.shape}")
    return live, saved
