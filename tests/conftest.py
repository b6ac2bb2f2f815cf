import os

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def ray_cluster():
    """One loopback-only Ray cluster for the whole test session (ray.init takes seconds)."""
    from scar.runtime.ray_ps import LOOPBACK_ENV, RayCluster

    os.environ.update(LOOPBACK_ENV)  # before the first import of ray: loopback only
    import ray  # a requirement: a missing Ray fails the Ray tests, never skips them

    cluster = RayCluster(num_cpus=2)
    yield cluster
    ray.shutdown()
