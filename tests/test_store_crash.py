"""Crash consistency: a writer process is SIGKILLed at random instants, again and again. After
every kill the store opens, verifies intact, and reads exactly the last committed version
(never less than the child reported committed); the next writer recovers the lock and cleans up.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import store_crash_child as child

from scar.store import DurableStore
from scar.store.tools import verify

CHILD = os.path.abspath(child.__file__)
MODES = ("sync", "async", "zstd")


def kill_loop(path: str, kills: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    seen, last = [], -1
    for i in range(kills):
        mode = MODES[i % len(MODES)]
        p = subprocess.Popen(
            [sys.executable, CHILD, path, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if rng.random() < 0.85:  # most kills while writing, some while opening / cleaning up
            line = p.stdout.readline()
            assert line == "ready\n", (line, p.stderr.read())
            time.sleep(rng.uniform(0, 0.1))
        else:
            time.sleep(rng.uniform(0, 0.4))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate()
        assert p.returncode == -signal.SIGKILL, err  # it was writing, not failing
        committed = [int(x) for x in out.split() if x.isdigit()]
        reader = DurableStore(path, readonly=True)
        rep = verify(reader)
        assert rep.ok, rep.bad
        latest = reader.latest()
        k = -1 if latest is None else latest.version
        assert k >= max([last, *committed]), (k, last, committed)  # nothing committed is lost
        if k >= 0:
            values, iters = child.replay(k)
            for name in values:
                np.testing.assert_array_equal(reader.read_rows(name), values[name])
                np.testing.assert_array_equal(reader.saved_iteration(name), iters[name])
            it, aux = reader.read_aux()
            assert it == k and aux["version"].tolist() == [k]
            np.testing.assert_array_equal(aux["cursor"], child.version_rows(k)[1]["cursor"])
        seen.append(k)
        last = k
    # The next writer takes over the dead one's lock and removes what it left behind.
    DurableStore(path, **child.options("sync")).close()
    rep = verify(DurableStore(path, readonly=True))
    assert rep.ok and rep.notes == []
    return seen


def test_sigkill_at_random_instants_never_loses_or_tears_a_checkpoint(tmp_path):
    seen = kill_loop(str(tmp_path / "store"), kills=24, seed=0)
    assert seen[-1] > 20  # the children got well beyond the first versions


@pytest.mark.slow
def test_sigkill_two_hundred_times(tmp_path):
    seen = kill_loop(str(tmp_path / "store"), kills=210, seed=1)
    assert seen[-1] > 200
