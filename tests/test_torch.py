"""TorchCheckpointer: a PyTorch model and optimizer as row tables (issue 23).

The oracle is independent of the store's reading: the test keeps a copy of every tensor after
every iteration, and the store says at which iteration each row was last saved
(``saved_iteration``); a lost row must come back as its copy at that iteration, bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from store_backends import new_url  # noqa: E402

from scar.errors import ConfigError, StoreError  # noqa: E402
from scar.policies import make_policy  # noqa: E402
from scar.store import open_store  # noqa: E402
from scar.tensors.layout import TAIL  # noqa: E402
from scar.torch import TorchCheckpointer  # noqa: E402

N_EMB, DIM = 600, 8


class Net(torch.nn.Module):
    """An embedding (rows kept), a linear layer whose weight does not divide into blocks (a
    tail), and a BatchNorm (floating buffers and an integer one)."""

    def __init__(self, dtype=torch.float32, sparse=False):
        super().__init__()
        self.emb = torch.nn.Embedding(N_EMB, DIM, sparse=sparse, dtype=dtype)
        self.fc = torch.nn.Linear(DIM, 5, dtype=dtype)  # 40 weights: blocks of 16 + a tail of 8
        self.bn = torch.nn.BatchNorm1d(5, dtype=dtype)

    def forward(self, x):
        return self.bn(self.fc(self.emb(x)))


def make(opt="adam", dtype=torch.float32, sparse=False, seed=0):
    torch.manual_seed(seed)
    model = Net(dtype, sparse)
    params = model.parameters()
    optimizer = {
        "adam": lambda: torch.optim.Adam(params, lr=1e-2),
        "adamw": lambda: torch.optim.AdamW(params, lr=1e-2, amsgrad=True),
        "sgd": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        "sgd0": lambda: torch.optim.SGD(params, lr=0.1),
        "adagrad": lambda: torch.optim.Adagrad(params, lr=0.1),
    }[opt]()
    return model, optimizer


def train(model, optimizer, it):
    g = torch.Generator().manual_seed(it)
    x = torch.randint(0, N_EMB // 3, (32,), generator=g)  # a third of the rows: sparse change
    optimizer.zero_grad()
    model(x).float().pow(2).mean().backward()
    optimizer.step()


def live(model, optimizer):
    """Every tensor of the model and optimizer (not the scalars), by its table name's prefix."""
    out = {n: t.detach() for n, t in model.state_dict(keep_vars=True).items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for p, st in optimizer.state.items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.shape == p.shape:
                out[f"{names[id(p)]}@{k}"] = v.detach()
    return out


def tensors(model, optimizer):
    """``live``, copied."""
    return {n: t.clone() for n, t in live(model, optimizer).items()}


def flat_rows(t: torch.Tensor, width: int, start: int = 0) -> np.ndarray:
    a = t.detach().reshape(-1)
    if a.dtype == torch.bfloat16:
        a = a.float()
    a = a.numpy()[start:]
    return a[: a.size // width * width].reshape(-1, width)


def table_rows(ck, copies, name):
    """Table ``name`` (as laid out) cut from a dict of tensor copies."""
    spec = next(d for d in ck.describe() if d["table"] == name)
    base = name.removesuffix(TAIL)
    start = 0
    if name.endswith(TAIL):
        whole = next(d for d in ck.describe() if d["table"] == base)
        start = whole["rows"] * whole["width"]
    return flat_rows(copies[base], spec["width"], start)


@pytest.mark.parametrize(
    "opt, kind",
    [("adam", "local"), ("adamw", "local"), ("sgd", "local"), ("adagrad", "local"), ("adam", "s3")],
)
def test_partial_recovery_brings_back_last_saved_rows_bitwise_and_touches_nothing_else(
    opt, kind, tmp_path
):
    model, optimizer = make(opt)
    ck = TorchCheckpointer(
        model, optimizer, policy="priority", period=8, fraction=1 / 4, block=16,
        store=new_url(kind, tmp_path), shards=4, async_writes=True,
    )  # fmt: skip
    history = {}
    for it in range(1, 26):
        train(model, optimizer, it)
        ck.step(it)
        history[it] = tensors(model, optimizer)
    ck.wait()
    before = tensors(model, optimizer)
    step_before = {k: v.get("step") for k, v in optimizer.state.items()}
    ck.fail([2])
    rec = ck.recover([2], "partial")
    after = tensors(model, optimizer)
    tables = [d["table"] for d in ck.describe()]
    assert any(t.endswith(TAIL) for t in tables) and any("@" in t for t in tables)
    lost = ck.state.rows_of([2])
    changed_somewhere = 0
    for name in tables:
        saved_at = ck.store.saved_iteration(name)
        now, was = table_rows(ck, after, name), table_rows(ck, before, name)
        rows = lost[name]
        assert rec.rows_restored[name] == rows.size
        other = np.setdiff1d(np.arange(now.shape[0]), rows)
        np.testing.assert_array_equal(now[other], was[other])  # untouched, bitwise
        for r in rows:
            expect = table_rows(ck, history[int(saved_at[r])], name)[r]
            assert now[r].tobytes() == expect.tobytes(), (name, r, saved_at[r])
            changed_somewhere += int(now[r].tobytes() != was[r].tobytes())
    assert changed_somewhere > 0  # priority saves left some rows older than live
    # Partial recovery leaves the scalars (Adam's step counts) as they were.
    for k, v in optimizer.state.items():
        if step_before[k] is not None:
            assert float(v["step"]) == float(step_before[k]) == 25
    # A follower's rows are saved exactly when its leader's are.
    for d in ck.describe():
        if d["follows"]:
            np.testing.assert_array_equal(
                ck.store.saved_iteration(d["table"]), ck.store.saved_iteration(d["follows"])
            )
    ck.close()


def test_full_recovery_rolls_every_row_and_the_step_counts_back(tmp_path):
    """``full``: every row of every table back to its last saved value, Adam's step counts and
    the BatchNorm's batch counter to the newest checkpoint's, which ``restart_iteration``
    names."""
    model, optimizer = make("adam")
    ck = TorchCheckpointer(
        model, optimizer, policy="priority", period=8, fraction=1 / 4, block=16,
        store=str(tmp_path / "s"), shards=4, async_writes=True,
    )  # fmt: skip
    history = {}
    for it in range(1, 24):  # saves every 2nd iteration: the newest at 22
        train(model, optimizer, it)
        ck.step(it)
        history[it] = tensors(model, optimizer)
    ck.wait()
    ck.fail([0, 1, 2, 3])
    rec = ck.recover([1], "full")
    assert rec.restart_iteration == 22
    after = tensors(model, optimizer)
    for d in ck.describe():
        name, saved_at = d["table"], ck.store.saved_iteration(d["table"])
        now = table_rows(ck, after, name)
        for r, at in enumerate(saved_at):
            assert now[r].tobytes() == table_rows(ck, history[int(at)], name)[r].tobytes()
    assert all(float(st["step"]) == 22 for st in optimizer.state.values())
    assert int(model.bn.num_batches_tracked) == 22
    ck.close()


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_background_saves_write_exactly_what_saves_on_the_loop_write(opt, tmp_path):
    """``background=True``: the rows are chosen and copied while the next iteration's forward
    and backward run; the optimizer's step (and the BatchNorm's forward) wait for it. Every
    version holds the same rows and values as with saves on the loop's thread."""
    got = []
    for background in (False, True):
        model, optimizer = make(opt)
        url = str(tmp_path / f"s{background}")
        with TorchCheckpointer(
            model, optimizer, policy="priority", period=8, fraction=1 / 4, block=16,
            store=url, shards=4, async_writes=True, background=background,
        ) as ck:  # fmt: skip
            for it in range(1, 26):
                train(model, optimizer, it)
                result = ck.step(it)
                assert (result is None) if background else True
            assert ck.last_save is not None
            if background:
                assert ck.fence_seconds > 0
        store = open_store(url, readonly=True)
        versions = [(v.iteration, v.rows) for v in store.versions()]
        snap = store.read_all(iterations=True)
        got.append((versions, snap.tables, snap.saved_iterations, snap.aux))
        store.close()
    (v0, t0, s0, a0), (v1, t1, s1, a1) = got
    assert v0 == v1 and t0.keys() == t1.keys()
    for name in t0:
        assert t0[name].tobytes() == t1[name].tobytes(), name
        np.testing.assert_array_equal(s0[name], s1[name])
    for name in a0:
        np.testing.assert_array_equal(a0[name], a1[name])


def test_background_needs_an_optimizer():
    with pytest.raises(ConfigError, match="background must be False when there is no optimizer"):
        TorchCheckpointer(torch.nn.Linear(2, 2), background=True)


def test_tables_share_memory_with_the_live_tensors():
    model, optimizer = make("adam")
    ck = TorchCheckpointer(model, optimizer, block=16)
    layout = {d["table"]: d for d in ck.describe()}
    assert layout["emb.weight"]["rows"] == N_EMB and layout["emb.weight"]["width"] == DIM
    assert (layout["fc.weight"]["rows"], layout["fc.weight"]["width"]) == (2, 16)
    assert (layout["fc.weight" + TAIL]["rows"], layout["fc.weight" + TAIL]["width"]) == (1, 8)
    assert layout["emb.weight@exp_avg"]["follows"] == "emb.weight"
    assert layout["fc.weight@exp_avg_sq" + TAIL]["follows"] == "fc.weight" + TAIL
    with torch.no_grad():
        model.fc.weight[4, 7] = 123.0  # flat element 39: the tail's last
        model.emb.weight[5, 3] = -7.0
    assert ck.state["fc.weight" + TAIL][0, 7] == 123.0
    assert ck.state["emb.weight"][5, 3] == -7.0
    # the BatchNorm's batch counter is no table (an integer): it travels in the aux arrays
    assert "bn.num_batches_tracked" not in layout and "bn.running_mean" in layout
    ck.close()


def expected_restore(ck_like, store_url, history):
    """Every table as the store's newest version resolves it, from the test's own copies: each
    row as it was at the iteration the store says it was last saved."""
    store = open_store(store_url, readonly=True)
    try:
        return {
            d["table"]: np.stack(
                [
                    table_rows(ck_like, history[int(at)], d["table"])[r]
                    for r, at in enumerate(store.saved_iteration(d["table"]))
                ]
            )
            for d in ck_like.describe()
        }
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_restore_in_a_fresh_process_gives_the_last_checkpoint_and_training_continues_exactly(
    kind, tmp_path
):
    """A process trains 20 iterations with priority checkpoints (C = 8, r = 1/4, async); a new
    process with the same constructors restores and trains 10 more. The restored state is the
    newest checkpoint's, bit for bit (each row as of its last save, the step counts of the
    save at 20), and training on from it is bitwise what this process gets by training on
    from the same values."""
    url = new_url(kind, tmp_path)
    script = f"""
import sys, torch
sys.path.insert(0, {os.path.dirname(__file__)!r})
torch.set_num_threads(1); torch.use_deterministic_algorithms(True)
from test_torch import make, train, tensors
from scar.torch import TorchCheckpointer
model, opt = make("adam")
ck = TorchCheckpointer(model, opt, policy="priority", period=8, fraction=1/4, block=16,
                       store={url!r}, shards=4, async_writes=True)
if sys.argv[1] == "first":
    for it in range(1, 21):
        train(model, opt, it); ck.step(it)
else:
    start = ck.restore() + 1
    assert start == 21, start
    torch.save(tensors(model, opt), sys.argv[2] + ".restored")
    for it in range(start, 31):
        train(model, opt, it); ck.step(it)
    torch.save(tensors(model, opt), sys.argv[2])
ck.close()
"""
    out = str(tmp_path / "resumed.pt")
    subprocess.run([sys.executable, "-c", script, "first", out], check=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model, opt = make("adam")
    layout = TorchCheckpointer(model, opt, block=16, shards=4)  # materializes Adam's state
    history = {}
    for it in range(1, 21):
        train(model, opt, it)
        history[it] = tensors(model, opt)
    want = expected_restore(layout, url, history)
    subprocess.run([sys.executable, "-c", script, "second", out], check=True)
    restored, resumed = torch.load(out + ".restored"), torch.load(out)
    for name, rows in want.items():
        assert table_rows(layout, restored, name).tobytes() == rows.tobytes(), name
    assert restored["bn.num_batches_tracked"] == 20
    # training on from the restored values in this process: the same bits as the new process
    with torch.no_grad():
        for name, t in live(model, opt).items():
            t.copy_(restored[name])
    for it in range(21, 31):
        train(model, opt, it)
    for name, t in tensors(model, opt).items():
        assert torch.equal(resumed[name], t), name
    assert float(opt.state[model.emb.weight]["step"]) == 30
    layout.close()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_double_precision_round_trip_bitwise(dtype, tmp_path):
    """Full checkpoints every 4th iteration: the newest one is the state at 8, which a model
    started from other values gets back bit for bit (parameters, buffers, momentum)."""
    model, optimizer = make("sgd", dtype=dtype)
    url = str(tmp_path / "s")
    opts = {"compression": "zstd"} if dtype == torch.bfloat16 else None  # shuffled, compressed
    with TorchCheckpointer(
        model, optimizer, policy="full", period=4, store=url, store_options=opts
    ) as ck:
        assert ck.state["emb.weight"].dtype.name == str(dtype).removeprefix("torch.")
        for it in range(1, 9):
            train(model, optimizer, it)
            ck.step(it)
        want = tensors(model, optimizer)
    model2, optimizer2 = make("sgd", dtype=dtype, seed=1)
    with TorchCheckpointer(model2, optimizer2, policy="full", period=4, store=url) as ck2:
        assert ck2.restore() == 8
    got = tensors(model2, optimizer2)
    assert set(got) == set(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype
        assert torch.equal(got[name].view(-1).view(torch.uint8), t.view(-1).view(torch.uint8)), name


def test_sparse_embeddings_track_touched_rows_and_choose_what_a_full_scan_chooses(tmp_path):
    """With sparse gradients, only rows a batch touched are candidates: the saves hold what
    the priority policy scanning every row saves, less the rows that had not changed (which
    that policy saves again to fill its quota): the same values, fewer bytes."""
    runs, written = [], []
    for tracked in (True, False):
        model, optimizer = make("sgd0", sparse=True)
        store = open_store(str(tmp_path / f"s{tracked}"))
        policy = "priority" if tracked else make_policy("priority", 8, 1 / 8)
        ck = TorchCheckpointer(
            model, optimizer, policy=policy, period=8, fraction=1 / 8, store=store
        )
        assert (type(ck.policy).__name__ == "TrackedPriority") is tracked
        for it in range(1, 33):
            train(model, optimizer, it)
            ck.step(it)
            if tracked and it > 1:  # rows no batch touches (ids >= N_EMB / 3) are not read again
                assert not ck.policy.dirty["emb.weight"][N_EMB // 3 :].any()
        ck.wait()
        assert len(np.unique(ck.store.saved_iteration("emb.weight"))) > 3
        runs.append(ck.store.read_rows("emb.weight").copy())
        written.append(ck.ckpt.value_bytes)
        ck.close()
    np.testing.assert_array_equal(runs[0], runs[1])
    assert written[0] < written[1]


def test_bad_input_says_what_is_wrong_and_writes_nothing(tmp_path):
    url = tmp_path / "s"
    model, optimizer = make("adam")
    with pytest.raises(ConfigError, match="fraction"):
        TorchCheckpointer(model, optimizer, fraction=1.5, store=str(url))
    assert not url.exists()
    meta = torch.nn.Linear(3, 3, device="meta")
    with pytest.raises(ConfigError, match="is on meta.*CPU tensors only"):
        TorchCheckpointer(meta, store=str(url))
    stray = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ConfigError, match="not a parameter of the model"):
        TorchCheckpointer(
            model, torch.optim.SGD([*model.parameters(), stray], lr=0.1), store=str(url)
        )
    with pytest.raises(ConfigError, match="not supported"):
        TorchCheckpointer(model, torch.optim.RMSprop(model.parameters()), store=str(url))
    assert not url.exists()
    # a store written for another model's shapes
    with TorchCheckpointer(model, optimizer, store=str(url)) as ck:
        ck.step(1)
    before = sorted(p.name for p in (url / "manifests").iterdir())
    other = torch.nn.Linear(4, 2)
    with pytest.raises(StoreError, match="other tables than the model's: only in the store: emb"):
        TorchCheckpointer(other, torch.optim.SGD(other.parameters(), lr=0.1), store=str(url))
    assert sorted(p.name for p in (url / "manifests").iterdir()) == before


def test_saves_leave_torch_thread_count_alone():
    """numba's OpenMP layer shares the thread-count setting with torch: a save must not
    change the user's ``torch.set_num_threads``."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        model, optimizer = make("adam")
        with TorchCheckpointer(model, optimizer, period=2, fraction=1 / 2) as ck:
            for it in range(1, 6):
                train(model, optimizer, it)
                ck.step(it)
                assert torch.get_num_threads() == 1
            ck.fail([0])
            ck.recover([0])
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_replaced_tensors_are_refused():
    model, optimizer = make("adam")
    ck = TorchCheckpointer(model, optimizer)
    ck.step(1)
    model.fc.bias.data = torch.zeros(5)
    with pytest.raises(StoreError, match="fc.bias was replaced"):
        ck.step(2)
