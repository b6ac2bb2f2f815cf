"""What the runtime records of a failure, and the error that ends a run it cannot go on with."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ScarError


class RuntimeFailure(ScarError):
    """The run cannot go on (a worker died, recovery failed)."""


@dataclass
class Failure:
    iteration: int  # the iteration after which the shards were lost
    shards: list[int]
    detection_seconds: float  # kill (or the failing call) -> death noticed
    restore_seconds: float  # death noticed -> replacement serving restored rows
    rows_restored: int
    bytes_restored: int
    perturbation_norm: float | None
    resume_iteration: int  # partial: = iteration; full: the checkpoint rolled back to
    restored_from: list[int]  # per lost shard: the iteration of its newest committed save
    committed_before: list[int]  # per lost shard: newest save it had reported committed
    objective_after: float  # the objective of the recovered state
    rows_rebuilt: int = 0  # --recovery rebuild: of the rows restored, those recomputed


@dataclass
class WorkerFailure:
    iteration: int  # the last iteration done before the workers were found dead
    workers: list[int]
    detection_seconds: float  # kill (or the failing iteration's start) -> death noticed
    restore_seconds: float  # death noticed -> replacements started (and their state set)
    state_from: int | None  # the iteration of the worker state given back (stateful splits)
