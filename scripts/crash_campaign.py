#!/usr/bin/env python3
"""Crash campaign for the checkpoint store: SIGKILL a writer at random instants, again and again.

    .venv/bin/python scripts/crash_campaign.py --kills 1000              # local and S3, 4 modes
    .venv/bin/python scripts/crash_campaign.py --kills 60 --backends local --modes sync-raw

Every configuration (a backend, local directory with fsync or S3, and a mode, sync or async
writes with raw or zstd segments) has one store, written by a chain of writer processes (this
script with ``--child``). Each writer opens the store, taking over the dead writer's lock and
cleaning up what it left, then saves version after version until it is killed; a version's
contents are a function of its number (``version_rows``), so the state of a store at version k
is known (``Replay``). Small chunks and ``keep_last=2`` make compaction and retention happen at
almost every version. Kills land while opening, while writing, during retention, during
compaction, and with async saves queued (the writer marks those phases on its stdout).

After every kill the store is opened read-only and checked: it verifies (``verify`` here, and
``scar ckpt verify URL`` every ``--cli-every`` kills), its newest version reads back exactly the
values, saved iterations and aux arrays saved up to it, and that version is not older than the
last one a writer reported durable. docs/crash-campaign.md says what each count means.

S3 is moto's server on 127.0.0.1, started in this process; the AWS variables point every client
(this process, the writers, the CLI) at it: no traffic leaves 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

SCRIPT = os.path.abspath(__file__)
TABLES = (("w", 40, 3, "float32"), ("b", 7, 1, "float64"))
BACKENDS = ("local", "s3")
MODES = ("sync-raw", "sync-zstd", "async-raw", "async-zstd")
BUCKET = "scar-crash"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
COUNTS = ("kills", "corrupt", "lost", "older_than_durable", "lock_failures", "child_errors")
PHASES = ("open", "write", "retire", "compact")
AHEAD = 2  # writers started ahead of their turn
# seconds: a writer that has not finished its imports / opened the store by then is stuck
START_LIMIT = {"local": 30.0, "s3": 60.0}
# seconds after it opened: a phase a kill waits for that has not come by then is given up
EVENT_LIMIT = {"local": 3.0, "s3": 10.0}


# -- what the writers save -------------------------------------------------------------------
def version_rows(v: int) -> tuple[dict, dict]:
    """(rows, aux) saved by version ``v``: every 6th version (and 0) is full, the rest partial."""
    rng = np.random.default_rng([v, 99])
    rows = {}
    for name, n, width, dtype in TABLES:
        if v % 6 == 0:
            ids = None
            k = n
        else:
            k = int(rng.integers(0, n // 3 + 1))
            ids = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
        values = (v * 1000 + rng.integers(0, 999, size=(k, width))).astype(dtype)
        rows[name] = (ids, values)
    return rows, {"version": np.array([v]), "cursor": rng.integers(0, 1 << 30, size=3)}


class Replay:
    """The values and saved iterations of every table after versions 0..k, advanced from the
    last k asked for (a campaign asks for ever higher versions: no replay from 0 each time)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.k = -1
        self.values = {name: np.zeros((n, w), dtype) for name, n, w, dtype in TABLES}
        self.iters = {name: np.full(n, -1, np.int64) for name, n, _, _ in TABLES}

    def at(self, k: int) -> tuple[dict, dict]:
        if k < self.k:
            self._reset()
        for v in range(self.k + 1, k + 1):
            for name, (ids, vals) in version_rows(v)[0].items():
                rows = slice(None) if ids is None else ids
                self.values[name][rows] = vals
                self.iters[name][rows] = v
        self.k = k
        return self.values, self.iters

    def compare(self, store, k: int) -> str:
        """What ``store`` (at version ``k``) reads back wrong; empty if all of it is right."""
        values, iters = self.at(k)
        for name in values:
            got = store.read_rows(name)
            if got.shape != values[name].shape or not np.array_equal(got, values[name]):
                return f"table {name}: values differ from those saved up to version {k}"
            if not np.array_equal(store.saved_iteration(name), iters[name]):
                return f"table {name}: saved iterations differ from versions 0..{k}"
        it, aux = store.read_aux()
        want = version_rows(k)[1]
        if it != k or sorted(aux) != sorted(want):
            return f"aux: iteration {it}, arrays {sorted(aux)}; saved: {k}, {sorted(want)}"
        for name, a in want.items():
            if not np.array_equal(aux[name], a):
                return f"aux array {name!r} differs from version {k}'s"
        return ""


def options(mode: str) -> dict:
    return {
        "async_writes": mode.startswith("async"),
        "compression": "zstd" if mode.endswith("zstd") else None,
        "keep_last": 2,
        "compact_after": 3,
        "chunk_bytes": 64,  # several chunks per table: compaction and retention at work
        "fsync": True,
    }


def store_module():
    """``scar.store`` without ``scar/__init__.py`` (which loads numba) unless ``scar`` is
    imported already: a writer starts in a fraction of the time."""
    if "scar" not in sys.modules:
        spec = importlib.util.find_spec("scar")
        pkg = types.ModuleType("scar")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["scar"] = pkg
    import scar.store

    return scar.store


# -- the writer process ----------------------------------------------------------------------
# Its stdout, one event a line: "i" imports done (it then waits for "go" on stdin), "o" opening
# the store, "ready V" opened (V: the next version), "q V" save(V) returned (async: queued),
# "d V" version V is durable (sync: saved; async: after wait(), every 3rd version), "r"/"R"
# retention begins/ends, "m"/"M" a compaction merge begins/ends, "nolock WHY" / "openfail WHY"
# the store could not be opened.
def child(mode: str, url: str) -> None:
    def emit(line: str) -> None:
        os.write(1, line.encode() + b"\n")  # one write: atomic between the two threads

    st = store_module()
    from scar.errors import StoreError
    from scar.store.backends import backend_for

    if url.startswith("s3://"):
        backend_for(url).fs.ls(BUCKET)  # S3 client made and connected before "go"
    for name, begin, end in (("_retire", "r", "R"), ("_merge", "m", "M")):
        inner = getattr(st.DurableStore, name, None)
        if inner is not None:  # (renamed: those kills fall back to kills while writing)
            setattr(st.DurableStore, name, _marked(inner, begin, end, emit))
    emit("i")
    if sys.stdin.readline().strip() != "go":
        return
    emit("o")
    try:
        store = st.DurableStore(url, **options(mode))
    except StoreError as e:
        why = " ".join(str(e).split())
        emit(f"{'nolock' if 'in use' in why else 'openfail'} {why}")
        sys.exit(3)
    store.open([st.TableSpec(name, n, w, dtype) for name, n, w, dtype in TABLES])
    latest = store.latest()
    v = 0 if latest is None else latest.version + 1
    emit(f"ready {v}")
    background = mode.startswith("async")
    while True:
        rows, aux = version_rows(v)
        result = store.save(v, rows, aux)
        if result.version != v:
            raise SystemExit(f"save({v}) wrote version {result.version}")
        if not background:
            emit(f"d {v}")
        else:
            emit(f"q {v}")
            if v % 3 == 2:
                store.wait()
                emit(f"d {v}")
        v += 1


def _marked(inner: Callable, begin: str, end: str, emit: Callable[[str], None]) -> Callable:
    def run(self, *args, **kwargs):
        emit(begin)
        try:
            return inner(self, *args, **kwargs)
        finally:
            emit(end)

    return run


class Writer:
    """A writer process, started ahead of its turn: it imports, then waits for "go"."""

    def __init__(self, mode: str, url: str, env: dict) -> None:
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, "--child", mode, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            env=env,
        )
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.lines: list[tuple[float, str]] = []  # (monotonic time read, line)
        self.pos = 0  # lines pump() has looked at
        self.eof = False

    def go(self) -> None:
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: its exit status says so

    def _read(self) -> None:
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
            return
        t = time.monotonic()
        *full, self.buf = (self.buf + data).split(b"\n")
        self.lines.extend((t, x.decode(errors="replace")) for x in full)

    def pump(self, deadline: float, until: Callable[[str], bool] | None = None) -> bool:
        """Read its lines until one makes ``until`` true (True), or ``deadline`` passes or its
        stdout closes (False)."""
        while True:
            while self.pos < len(self.lines):
                line = self.lines[self.pos][1]
                self.pos += 1
                if until is not None and until(line):
                    return True
            if self.eof:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if select.select([self.fd], [], [], left)[0]:
                self._read()

    def kill(self) -> int:
        """SIGKILL it (unless it exited already) and read what it wrote: its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        while not self.eof:
            self._read()
        self.proc.stdout.close()
        self.proc.stdin.close()
        return self.proc.returncode

    def stderr(self) -> str:
        self.err.seek(0)
        text = self.err.read().decode(errors="replace").strip()
        self.err.close()
        return text


def _nth(kinds: tuple[str, ...], n: int) -> Callable[[str], bool]:
    seen = 0

    def hit(line: str) -> bool:
        nonlocal seen
        seen += line.split(" ", 1)[0] in kinds
        return seen >= n

    return hit


def landed(lines: list[str]) -> tuple[str, bool]:
    """Where a writer was when it died, from the last events it wrote: (phase, whether an async
    save was pending: saved, not yet waited for)."""
    phase, depth, queued, durable = "startup", Counter(), -1, -1
    for line in lines:
        kind, _, arg = line.partition(" ")
        if kind == "o":
            phase = "open"
        elif kind == "ready":
            phase = "write"
        elif kind in ("r", "m"):
            depth[kind] += 1
        elif kind in ("R", "M"):
            depth[kind.lower()] -= 1
        elif kind == "q":
            queued = int(arg)
        elif kind == "d":
            durable = int(arg)
    if phase == "write" and depth["m"] > 0:
        phase = "compact"
    elif phase == "write" and depth["r"] > 0:
        phase = "retire"
    return phase, queued > durable


# -- the checks after a kill -----------------------------------------------------------------
def scar_command() -> list[str]:
    exe = Path(sys.executable).with_name("scar")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "scar.cli"]


def cli_verify(url: str, env: dict) -> str:
    """``scar ckpt verify URL``: empty if it exits 0, else what it said."""
    try:
        r = subprocess.run(
            [*scar_command(), "ckpt", "verify", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return "scar ckpt verify did not finish in 300 s"
    if r.returncode == 0:
        return ""
    said = " | ".join((r.stdout + r.stderr).strip().splitlines()[-4:])
    return f"scar ckpt verify exit {r.returncode}: {said}"


def inspect(url: str, floor: int, replay: Replay) -> tuple[int, list[tuple[str, str]], bool]:
    """Open ``url`` read-only and check it: (newest version or -1, [(count, what)], whether
    there is a store to run the CLI on). ``floor``: the version it must be at least at."""
    st = store_module()
    from scar.errors import CorruptCheckpointError, StoreError
    from scar.store.backends import backend_for
    from scar.store.tools import verify

    bad: list[tuple[str, str]] = []
    k, reader = -1, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", st.CheckpointWarning)
        try:
            reader = st.DurableStore(url, readonly=True)
        except Exception as e:
            why = f"{type(e).__name__}: {' '.join(str(e).split())}"
            if not isinstance(e, StoreError) or isinstance(e, CorruptCheckpointError):
                bad.append(("corrupt", f"opening it read-only raised {why}"))
            elif floor >= 0:
                bad.append(("lost", f"nothing readable ({why}) after version {floor} was durable"))
            elif backend_for(url).is_store():  # (nothing committed: no store is fine)
                bad.append(("corrupt", f"opening it read-only raised {why}"))
            return k, bad, False
        try:
            rep = verify(reader)
            if not rep.ok:
                bad.append(("corrupt", "verify: " + "; ".join(rep.bad.values())))
            latest = reader.latest()
            k = -1 if latest is None else latest.version
            if k < 0 and floor >= 0:
                bad.append(("lost", f"no version readable after version {floor} was durable"))
            elif k < floor:
                bad.append(("older_than_durable", f"reads version {k}, {floor} was durable"))
            if k >= 0:
                wrong = "" if latest.iteration == k else f"its iteration is {latest.iteration}"
                wrong = wrong or replay.compare(reader, k)
                if wrong:
                    bad.append(("lost", f"version {k}: {wrong}"))
        except CorruptCheckpointError as e:
            bad.append(("corrupt", f"read: {e}"))
        except Exception as e:  # a bug in reading is a store that cannot be trusted either
            bad.append(("corrupt", f"read raised {type(e).__name__}: {e}"))
    warned = [str(w.message) for w in caught if issubclass(w.category, st.CheckpointWarning)]
    if warned or reader.problems:
        why = warned or [f"{p}: {w}" for p, w in reader.problems.items()]
        bad.append(("corrupt", "reads fell back: " + "; ".join(" ".join(w.split()) for w in why)))
    return k, bad, True


def final_check(url: str, mode: str) -> str:
    """One more writer (this process) takes over the last dead one's lock, cleans up and
    closes; the store must then verify with no leftovers. Empty if so."""
    st = store_module()
    from scar.store.tools import verify

    try:
        st.DurableStore(url, **options(mode)).close()
        rep = verify(st.DurableStore(url, readonly=True))
    except Exception as e:
        return f"{type(e).__name__}: {' '.join(str(e).split())}"
    if not rep.ok or rep.notes:
        return "; ".join([*rep.bad.values(), *rep.notes])
    return ""


# -- one configuration -----------------------------------------------------------------------
def draw_plan(rng: np.random.Generator, background: bool) -> tuple[str, int, float]:
    """(what to kill in, the how-manieth such event, the fraction of its duration to wait)."""
    u = rng.random()
    if u < 0.15:
        return "open", 1, rng.random()
    if u < 0.30:
        return "retire", int(rng.integers(1, 7)), rng.random()
    if u < 0.42:
        return "compact", int(rng.integers(1, 5)), rng.random()
    if background and u < 0.52:
        return "queued", int(rng.integers(1, 9)), 0.0
    return "write", int(rng.integers(0, 9)), rng.random()


class Durations:
    """Running estimates of how long the phases last (seconds), from when the events arrive."""

    def __init__(self, backend: str, progress: tuple[str, ...]) -> None:
        s3, self.progress = backend == "s3", progress
        self.est = {"open": 0.3 if s3 else 0.008, "retire": 0.01 if s3 else 0.001}
        self.est.update(compact=0.01 if s3 else 0.001, write=0.05 if s3 else 0.005)

    def learn(self, lines: list[tuple[float, str]]) -> None:
        start: dict[str, float] = {}
        last = None
        for t, line in lines:
            kind = line.split(" ", 1)[0]
            if kind in ("o", "r", "m"):
                start[kind] = t
            elif kind == "ready" and "o" in start:
                self._add("open", t - start["o"])
            elif kind in ("R", "M") and kind.lower() in start:
                self._add("retire" if kind == "R" else "compact", t - start.pop(kind.lower()))
            elif kind in self.progress:
                if last is not None:
                    self._add("write", t - last)
                last = t

    def _add(self, phase: str, seconds: float) -> None:
        self.est[phase] += 0.3 * (max(seconds, 2e-4) - self.est[phase])


def _kill(w: Writer, plan: tuple[str, int, float], est: dict, backend: str, progress) -> bool:
    """Let writer ``w`` open the store and run until the instant ``plan`` names, then SIGKILL it
    (``w.kill()``, by the caller). Whether the planned event came (else it is killed when
    the time allowed for it is up)."""
    kind, n, frac = plan
    limit = START_LIMIT[backend]
    w.go()
    if not w.pump(time.monotonic() + limit, _nth(("o",), 1)):
        return False
    if kind == "open":
        w.pump(time.monotonic() + frac * est["open"])
        return True
    if not w.pump(time.monotonic() + limit, _nth(("ready",), 1)):
        return False
    events = {"write": progress, "queued": ("q",), "retire": ("r",), "compact": ("m",)}[kind]
    if n and not w.pump(time.monotonic() + EVENT_LIMIT[backend], _nth(events, n)):
        return False
    if kind != "queued":  # (queued: at once, while the save just queued waits)
        w.pump(time.monotonic() + frac * est[kind])
    return True


def run_config(
    backend: str,
    mode: str,
    kills: int,
    seed: int,
    url: str,
    env: dict,
    cli_every: int,
    log: Callable[[str], None],
) -> dict:
    """``kills`` writers of one store killed, each checked after: the counts (see COUNTS)."""
    rng = np.random.default_rng([seed, BACKENDS.index(backend), MODES.index(mode)])
    background = mode.startswith("async")
    progress = ("q",) if background else ("d",)
    res = {c: 0 for c in COUNTS}
    res.update(backend=backend, mode=mode, url=url, attempts=kills, highest_version=-1)
    res.update(cli_verifies=0, landed=dict.fromkeys(PHASES, 0), queued=0, missed_plans=0)
    failures: list[dict] = []
    spent = dict.fromkeys(("start", "writer", "check", "cli"), 0.0)  # seconds, see docs
    durations, replay = Durations(backend, progress), Replay()
    floor = -1  # the newest version known durable: reported by a writer, or read after a kill
    began = time.monotonic()
    ahead: deque[Writer] = deque()  # the next writers, started: their imports overlap this one
    try:
        for i in range(kills):
            while len(ahead) < min(AHEAD, kills - i):
                ahead.append(Writer(mode, url, env))
            w = ahead.popleft()
            plan = draw_plan(rng, background)
            t0 = time.monotonic()
            started = w.pump(t0 + START_LIMIT[backend], _nth(("i",), 1))
            t1 = time.monotonic()
            hit = started and _kill(w, plan, durations.est, backend, progress)
            rc = w.kill()
            t2 = time.monotonic()
            spent["start"] += t1 - t0
            spent["writer"] += t2 - t1
            lines = [line for _, line in w.lines]
            err = w.stderr()
            durations.learn(w.lines)
            durable = max((int(x.split()[1]) for x in lines if x.startswith("d ")), default=-1)
            ready_v = next((int(x.split()[1]) for x in lines if x.startswith("ready ")), None)
            problems: list[tuple[str, str]] = []
            phase = landed(lines)[0]
            if not started:
                why = f"exit {rc}: {err[-2000:]}" if rc != -signal.SIGKILL else "no start"
                problems.append(("child_errors", f"the writer did not start: {why}"))
            elif rc == -signal.SIGKILL:
                res["kills"] += 1
                phase, queued = landed(lines)
                res["landed"][phase] = res["landed"].get(phase, 0) + 1
                res["queued"] += queued
                res["missed_plans"] += not hit
                if ready_v is None and (plan[0] != "open" or "o" not in lines):
                    problems.append(("child_errors", "it had not opened the store in time"))
            else:
                nolock = next((x for x in lines if x.startswith("nolock ")), None)
                said = next((x for x in lines if x.startswith("openfail ")), None)
                if nolock:
                    problems.append(("lock_failures", nolock[len("nolock ") :]))
                else:
                    problems.append(("child_errors", f"exit {rc}: {said or err[-2000:]}"))
            prev = floor
            floor = max(floor, durable)
            k, bad, exists = inspect(url, floor, replay)
            t3 = time.monotonic()
            spent["check"] += t3 - t2
            problems += bad
            if ready_v is not None and ready_v - 1 != prev:
                what = f"the writer opened the store at version {ready_v - 1}; it read {prev}"
                problems.append(("older_than_durable", what))
            if exists and ((i + 1) % cli_every == 0 or i + 1 == kills or bad):
                res["cli_verifies"] += 1
                said = cli_verify(url, env)
                spent["cli"] += time.monotonic() - t3
                if said:
                    problems.append(("corrupt", said))
            floor = max(floor, k)
            res["highest_version"] = max(res["highest_version"], k, durable)
            for count in dict(problems):  # each count at most once per kill
                res[count] += 1
            at = plan[0] if plan[0] == "open" else f"{plan[0]} #{plan[1]}"
            at = f"planned: {at}, landed: {phase}"
            for count, what in problems:
                failures.append({"kill": i, "count": count, "at": at, "what": what})
                log(f"  {backend} {mode} kill {i} ({at}): {count}: {what[:500]}")
    finally:
        for w in ahead:
            w.kill()
            w.stderr()
    final = final_check(url, mode)
    if final:
        failures.append({"kill": None, "count": "final", "what": final})
        log(f"  {backend} {mode} final writer: {final[:500]}")
    res.update(final_clean=not final, failures=failures, seconds=time.monotonic() - began)
    res["spent"] = {k: round(v, 2) for k, v in spent.items()}
    return res


# -- the campaign ----------------------------------------------------------------------------
def start_s3() -> tuple[str, object]:
    """moto's S3 server on 127.0.0.1 in this process: (its endpoint URL, the server)."""
    os.environ.update(AWS_ENV)  # before boto is imported (moto imports it)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    if not host.startswith("127."):
        server.stop()
        raise RuntimeError(f"moto's server is on {host}, not on loopback")
    return f"http://{host}:{port}", server


def _loopback_env(endpoint: str) -> None:
    os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint)
    for var in ("NO_PROXY", "no_proxy"):  # no proxy between the clients and the server
        have = [x for x in os.environ.get(var, "").split(",") if x]
        os.environ[var] = ",".join(dict.fromkeys([*have, "127.0.0.1", "localhost"]))


def campaign(
    kills: int,
    backends: tuple[str, ...] = BACKENDS,
    modes: tuple[str, ...] = MODES,
    seed: int = 0,
    workdir: str | None = None,
    cli_every: int = 5,
    s3_endpoint: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the campaign: ``kills`` spread over every backend x mode. ``workdir``: where the local
    stores go (a temporary folder, removed after, if None); ``s3_endpoint``: an S3 server on
    loopback to use instead of starting one. Returns what ``--json`` writes."""
    configs = [(b, m) for b in backends for m in modes]
    share = [kills // len(configs) + (i < kills % len(configs)) for i in range(len(configs))]
    began, server = time.monotonic(), None
    tmp = None
    if "local" in backends:
        if workdir is None:
            tmp = workdir = tempfile.mkdtemp(prefix="scar-crash-")
        else:
            workdir = tempfile.mkdtemp(prefix=f"crash-seed{seed}-", dir=workdir)
    run = f"run-{os.getpid()}-{int(time.time())}"
    results = []
    try:
        if "s3" in backends:
            if s3_endpoint is None:
                s3_endpoint, server = start_s3()
            _loopback_env(s3_endpoint)
            import s3fs

            fs = s3fs.S3FileSystem(use_listings_cache=False)
            if not fs.exists(BUCKET):
                fs.mkdir(BUCKET)
        env = dict(os.environ)
        for (backend, mode), n in zip(configs, share, strict=True):
            url = f"{workdir}/{mode}" if backend == "local" else f"s3://{BUCKET}/{run}/{mode}"
            res = run_config(backend, mode, n, seed, url, env, cli_every, log)
            results.append(res)
            log(_row(res))
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    total = {c: sum(r[c] for r in results) for c in (*COUNTS, "cli_verifies", "queued")}
    total["landed"] = dict(sum((Counter(r["landed"]) for r in results), Counter(PHASES)))
    total["landed"] = {p: n - (p in PHASES) for p, n in total["landed"].items()}
    total["highest_version"] = max((r["highest_version"] for r in results), default=-1)
    total["final_unclean"] = sum(not r["final_clean"] for r in results)
    ok = not any(total[c] for c in (*COUNTS[1:], "final_unclean"))
    return {
        "ok": ok,
        "seed": seed,
        "kills_requested": kills,
        "backends": list(backends),
        "modes": list(modes),
        "cli_every": cli_every,
        "local_dir": None if tmp is not None else workdir,
        "seconds": round(time.monotonic() - began, 1),
        "configs": results,
        "total": total,
    }


HEADER = (
    f"{'config':<19} {'kills':>5} {'corrupt':>7} {'lost':>4} {'older':>5} {'nolock':>6} "
    f"{'errors':>6} {'highest':>7} {'cli':>4} {'secs':>6}  landed: open/write/retire/compact, "
    "queued"
)


def _row(r: dict, name: str | None = None) -> str:
    name = name or f"{r['backend']} {r['mode']}"
    land = "/".join(str(r["landed"][p]) for p in PHASES)
    secs = f"{r['seconds']:6.1f}" if "seconds" in r else " " * 6
    return (
        f"{name:<19} {r['kills']:>5} {r['corrupt']:>7} {r['lost']:>4} "
        f"{r['older_than_durable']:>5} {r['lock_failures']:>6} {r['child_errors']:>6} "
        f"{r['highest_version']:>7} {r['cli_verifies']:>4} {secs}  {land}, {r['queued']}"
    )


def summary(doc: dict, rows: bool = True) -> str:
    """The table (``rows=False``: its total line only, after rows printed as they came)."""
    lines = [HEADER, *(_row(r) for r in doc["configs"])] if rows else []
    lines.append(_row({**doc["total"], "seconds": doc["seconds"]}, "total"))
    unclean = [f"{r['backend']} {r['mode']}" for r in doc["configs"] if not r["final_clean"]]
    if unclean:
        lines.append(f"final writer found leftovers or failed: {', '.join(unclean)}")
    lines.append(
        "OK: no corrupt, lost or older-than-durable store; every writer took over the lock"
        if doc["ok"]
        else "FAILED (the lines above name each failure)"
    )
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _names(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        got = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
        wrong = [x for x in got if x not in allowed]
        if wrong or not got:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}"
            )
        return got

    return parse


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or n < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return n

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(
        prog="crash_campaign.py",
        description="SIGKILL checkpoint-store writers at random instants and check the store "
        "after every kill (docs/crash-campaign.md). Exit 0 if nothing was corrupt, lost or "
        "older than durable (and every writer got the lock), 1 if something was, 2 on a usage "
        "error.",
    )
    p.add_argument("--kills", type=_at_least(1), default=1000, help="total kills [1000]")
    p.add_argument("--backends", type=_names(BACKENDS), default=BACKENDS,
                   help="comma-separated: local, s3 [both]")  # fmt: skip
    p.add_argument("--modes", type=_names(MODES), default=MODES,
                   help=f"comma-separated: {', '.join(MODES)} [all]")  # fmt: skip
    p.add_argument("--seed", type=_at_least(0), default=0, help="kill plans' seed [0]")
    p.add_argument("--dir", help="where the local stores go, kept after the run [a temporary "
                   "folder, removed after]")  # fmt: skip
    p.add_argument("--cli-every", type=_at_least(1), default=5,
                   help="run `scar ckpt verify URL` after every Nth kill [5]")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    a = p.parse_args(argv)
    configs = len(a.backends) * len(a.modes)
    if a.kills < configs:
        p.error(f"--kills {a.kills} is fewer than the {configs} configurations (backends x modes)")
    if a.dir is not None:
        d = Path(a.dir)
        if d.exists() and not d.is_dir():
            p.error(f"--dir {a.dir!r} is not a directory")
        if not d.exists() and not d.parent.is_dir():
            p.error(f"--dir {a.dir!r}: its parent directory does not exist")
        if not _writable(d if d.exists() else d.parent):
            p.error(
                f"--dir {a.dir!r}: cannot create files in {str(d if d.exists() else d.parent)!r}"
            )
    if a.json is not None:
        j = Path(a.json)
        if j.is_dir():
            p.error(f"--json {a.json!r} is a directory; give a file name")
        if not (j.parent if str(j.parent) else Path(".")).is_dir():
            p.error(f"--json {a.json!r}: directory {str(j.parent)!r} does not exist")
        if not _writable(j.parent):
            p.error(f"--json {a.json!r}: cannot create files in {str(j.parent)!r}")
    missing = []
    if any(m.endswith("zstd") for m in a.modes) and importlib.util.find_spec("zstandard") is None:
        missing.append("zstandard (for the zstd modes)")
    if "s3" in a.backends:
        missing += [f"{m} (for --backends s3)" for m in ("moto", "s3fs") if not _found(m)]
    if missing:
        p.error(f"missing packages: {', '.join(missing)} (pip install -e '.[dev]')")
    return a


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _found(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # a writer: --child MODE URL
        if len(argv) != 3 or argv[1] not in MODES:
            print(f"usage: {SCRIPT} --child {{{','.join(MODES)}}} URL", file=sys.stderr)
            return 2
        child(argv[1], argv[2])
        return 0
    a = parse_args(argv)
    # a SIGTERM ends the run as Ctrl-C does: writers killed, the temporary folder removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.dir is not None:
        os.makedirs(a.dir, exist_ok=True)

    def log(line: str) -> None:
        if not a.quiet:
            print(line, flush=True)

    log(
        f"crash campaign: {a.kills} kills, seed {a.seed}, backends {','.join(a.backends)}, "
        f"modes {','.join(a.modes)}; `scar ckpt verify` every {a.cli_every} kills"
    )
    log(HEADER)
    doc = campaign(a.kills, a.backends, a.modes, a.seed, a.dir, a.cli_every, log=log)
    print(summary(doc, rows=a.quiet), flush=True)
    if doc["local_dir"]:
        print(f"local stores kept in {doc['local_dir']}", flush=True)
    if a.json is not None:
        tmp = f"{a.json}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, a.json)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
