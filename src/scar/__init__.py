"""SCAR: fault tolerance for iterative-convergent machine learning.

Prioritized checkpoints and partial recovery, after Qiao, Aragam, Zhang and Xing,
"Fault Tolerance in Iterative-Convergent Machine Learning" (ICML 2019).
"""

from .checkpoint import Checkpointer
from .errors import ConfigError, DatasetError, ScarError, StoreError
from .policies import make_policy
from .state import Sharding, State
from .store import MemoryStore

__all__ = [
    "Checkpointer",
    "ConfigError",
    "DatasetError",
    "MemoryStore",
    "ScarError",
    "Sharding",
    "State",
    "StoreError",
    "make_policy",
]
__version__ = "0.1.0"
