"""One model shared between Python threads (the README's thread-safety contract), and the
adaptive thread count of training steps.

Every test bounds its threads and its time: it must pass reliably on 2 cores, and under
AddressSanitizer in CI."""

from __future__ import annotations

import copy
import itertools
import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastmlp
from fastmlp.train import first_order
from fastmlp.errors import ConcurrentFitError

SIZES = [20, 128, 64, 5]
N = 2048


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], size=N)
    return X, y


def new_model(dtype="float32", threads=2):
    return fastmlp.MLP(SIZES, dtype=dtype, seed=1, threads=threads)


def digest(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


needs_openmp = pytest.mark.skipif(
    not fastmlp._engine.have_openmp(),
    reason="an engine built without OpenMP runs every step on one thread: no team to adapt")

FIT = dict(epochs=2, batch_size=16, lr=0.01)


def per_step_states(X, y, monkeypatch) -> set[bytes]:
    """The flat parameters after every training step of new_model().fit(X, y, **FIT) (and
    before the first), from a fit that calls the engine one step at a time."""
    m = new_model()
    states = {digest(m.get_flat_params())}
    train = m._backend_train

    def one_step(*args, **kwargs):
        out = train(*args, **kwargs)
        states.add(digest(m.get_flat_params()))
        return out

    m._backend_train = one_step
    with monkeypatch.context() as mp:
        mp.setattr(first_order, "CHUNK_SECONDS", 0.0)
        mp.setattr(first_order, "MAX_CHUNK_SECONDS", 0.0)
        m.fit(X, y, **FIT)
    assert len(states) == 2 * (N // 16) + 1
    return states


def run_during_fit(model, X, y, reader, min_reads=5):
    """Call reader() in a loop in another thread while model.fit(X, y, **FIT) runs; returns
    what it returned and the fit's result."""
    seen, done = [], threading.Event()

    def read_loop():
        while not done.is_set() or len(seen) < min_reads:
            seen.append(reader())

    t = threading.Thread(target=read_loop)
    t.start()
    try:
        history = model.fit(X, y, **FIT)
    finally:
        done.set()
        t.join(timeout=60)
    assert not t.is_alive()
    return seen, history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_concurrent_predicts_equal_serial_predict_bitwise(data, dtype):
    X, y = data
    m = new_model(dtype)
    m.fit(X, y, epochs=1, batch_size=32)
    X = X.astype(dtype)
    # below and above the row count from which predict uses its weight panels
    row_counts = [1, 7, 63, 64, 300, 1024]
    expected = {n: m.predict(X[:n]) for n in row_counts}
    jobs = [row_counts[i % len(row_counts)] for i in range(96)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: (n, m.predict(X[:n])), jobs))
    for n, out in results:
        np.testing.assert_array_equal(out, expected[n])


def test_predict_while_params_change_sees_one_state_or_the_other(data):
    X, y = data
    m = new_model()
    w_a, b_a = m.get_params()
    w_b = [w * -0.5 for w in w_a]
    m.set_params(w_b, b_a)
    out_b = m.predict(X)
    m.set_params(w_a, b_a)
    out_a = m.predict(X)
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            m.set_params(w_b, b_a)
            m.set_params(w_a, b_a)

    writer = threading.Thread(target=flip)
    writer.start()
    try:
        outs = [m.predict(X) for _ in range(60)]
    finally:
        stop.set()
        writer.join(timeout=60)
    for out in outs:
        assert np.array_equal(out, out_a) or np.array_equal(out, out_b)


def test_get_params_during_fit_sees_completed_steps_only(data, monkeypatch):
    X, y = data
    states = per_step_states(X, y, monkeypatch)
    m = new_model()
    seen, _ = run_during_fit(m, X, y, m.get_flat_params)
    assert all(digest(s) in states for s in seen)
    assert digest(m.get_flat_params()) in states


def test_predict_during_fit_uses_weights_of_a_completed_step(data, monkeypatch):
    X, y = data
    states = per_step_states(X, y, monkeypatch)
    probe = X[:64]  # the panel path of predict
    m = new_model()
    seen, _ = run_during_fit(m, X, y, lambda: m.predict(probe))
    replay = new_model()
    allowed = set()
    for s in states:
        replay.set_flat_params(np.frombuffer(s, dtype=np.float32))
        allowed.add(digest(replay.predict(probe)))
    assert all(digest(p) in allowed for p in seen)


def test_save_and_pickle_during_fit_hold_weights_of_a_completed_step(data, monkeypatch, tmp_path):
    X, y = data
    states = per_step_states(X, y, monkeypatch)
    m = new_model()
    path = tmp_path / "m.fastmlp"

    def save_and_pickle():
        m.save(path)
        return fastmlp.load(path).get_flat_params(), pickle.loads(pickle.dumps(m)).get_flat_params()

    seen, _ = run_during_fit(m, X, y, save_and_pickle)
    for saved, pickled in seen:
        assert digest(saved) in states and digest(pickled) in states


def test_a_second_concurrent_fit_raises(data):
    X, y = data
    m = new_model()
    inside, release = threading.Event(), threading.Event()

    def hold(model, history):  # runs inside the first fit, after its first epoch
        inside.set()
        release.wait(timeout=60)

    errors = []

    def first():
        try:
            m.fit(X, y, epochs=2, batch_size=64, callbacks=[hold])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(timeout=60)
        with pytest.raises(ConcurrentFitError, match="already being fitted"):
            m.fit(X, y, epochs=1)
        # readers still work while the first fit waits
        assert m.predict(X[:3]).shape == (3, SIZES[-1])
    finally:
        release.set()
        t.join(timeout=60)
    assert not errors
    m.fit(X, y, epochs=1)  # and fitting works again afterwards


def test_ensemble_rejects_the_same_model_twice():
    m = new_model()
    with pytest.raises(ValueError, match="distinct"):
        fastmlp.Ensemble([m, m])


def test_threads_setter_during_fit_is_safe_and_changes_nothing(data):
    X, y = data
    expected = new_model()
    expected.fit(X, y, **FIT)
    m = new_model()
    counts = itertools.cycle([1, 2, 3])
    run_during_fit(m, X, y, lambda: setattr(m, "threads", next(counts)))
    np.testing.assert_array_equal(m.get_flat_params(), expected.get_flat_params())


def test_gradients_from_threads_equal_serial(data):
    X, y = data
    m = new_model()
    expected = m.gradients(X[:50], y[:50])["flat"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda _: m.gradients(X[:50], y[:50])["flat"], range(16)))
    for g in outs:
        np.testing.assert_array_equal(g, expected)


def test_deepcopy_of_a_model_trains_independently(data):
    X, y = data
    m = new_model()
    twin = copy.deepcopy(m)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda model: model.fit(X, y, **FIT), [m, twin]))
    np.testing.assert_array_equal(m.get_flat_params(), twin.get_flat_params())


# -- the adaptive thread count ------------------------------------------------------------------
@pytest.fixture(autouse=True)
def fresh_thread_timings():
    """Each test starts as if no model had measured a slow team (the process keeps the
    last ratio for new models)."""
    fastmlp._engine.forget_thread_timings()
    yield
    fastmlp._engine.forget_thread_timings()


@needs_openmp
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adaptive_threads_drop_to_one_when_teams_are_slow_with_identical_results(data, dtype):
    X, y = data
    reference = new_model(dtype, threads=1)
    reference.fit(X, y, **FIT)
    m = new_model(dtype)
    m._engine._simulate_load(0.0, 1.0)  # every 2-thread step looks 1 s slower
    m.fit(X, y, **FIT)
    stats = m.thread_stats()
    assert stats["one"] > 0.8 * (stats["one"] + stats["many"])
    np.testing.assert_array_equal(m.get_flat_params(), reference.get_flat_params())


@needs_openmp
def test_adaptive_threads_keep_the_team_when_one_thread_is_slow(data):
    X, y = data
    m = new_model()
    m._engine._simulate_load(1.0, 0.0)  # one-thread steps look 1 s slower
    m.fit(X, y, **FIT)
    stats = m.thread_stats()
    assert stats["many"] > 0.8 * (stats["one"] + stats["many"])
    assert stats["one"] > 0  # it did measure the alternative


@needs_openmp
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_curvature_products_adapt_their_threads_with_identical_results(data, dtype):
    """Hessian/Gauss-Newton/Jacobian products time their calls as train times its steps:
    with teams slow they run on one thread (a busy machine made them 20x slower on two),
    with one thread slow on the team, and the products are the same bits either way."""
    X, y = data
    X, y = X[:300], y[:300]
    reference = new_model(dtype, threads=1)
    v = np.random.default_rng(0).normal(size=reference.get_flat_params().size).astype(dtype)
    expected = [reference.hvp(X, y, v), reference.gnvp(X, y, v), reference.jvp(X, v)]
    for slow, faster in ((0.0, 1.0), "one"), ((1.0, 0.0), "many"):
        fastmlp._engine.forget_thread_timings()  # (the first case's slow teams would stand)
        m = new_model(dtype)
        m._engine._simulate_load(*slow)
        for _ in range(10):
            got = [m.hvp(X, y, v), m.gnvp(X, y, v), m.jvp(X, v)]
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(a, b)
        stats = m._engine.curvature_thread_stats()
        assert stats[faster] > 0.7 * (stats["one"] + stats["many"]), (slow, stats)
        assert min(stats.values()) > 0  # it measured the other choice too
    off = new_model(dtype)
    off.adaptive_threads = False
    off._engine._simulate_load(0.0, 1.0)
    off.hvp(X, y, v)
    assert off._engine.curvature_thread_stats() == {"one": 0, "many": 1}


def test_curvature_workspace_from_more_threads_serves_a_larger_block():
    """A workspace sized on 8 threads for 100 rows is large enough, in bytes, for 110 rows
    on one thread; the product must then run with blocks of 110 rows (training mode: one
    block of all rows), not with the 100 the workspace was first made for."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(110, 784)), rng.integers(0, 10, 110)
    model = fastmlp.MLP([784, 512, 10], dropout=0.1, dtype="float64", seed=0, threads=8)
    model.adaptive_threads = False
    v = rng.normal(size=model.get_flat_params().size)
    model.hvp(X[:100], y[:100], v, training=True)  # the workspace: 8 threads, 100 rows
    model._engine.threads = 1
    got = model.hvp(X, y, v, training=True)
    fresh = fastmlp.MLP([784, 512, 10], dropout=0.1, dtype="float64", seed=0, threads=1)
    np.testing.assert_array_equal(got, fresh.hvp(X, y, v, training=True))


def test_adaptive_threads_off_uses_every_thread(data):
    X, y = data
    m = new_model()
    m.adaptive_threads = False
    m._engine._simulate_load(0.0, 1.0)
    m.fit(X, y, **FIT)
    assert m.thread_stats()["one"] == 0
    assert m.adaptive_threads is False


@needs_openmp
def test_a_new_model_remembers_that_the_team_was_slow(data):
    """After one model measured a slow team, a new model whose steps do about as much work
    does not pay for a team step at its start: its first probe waits as long as a later
    probe would. Steps of other sizes, and a forgotten measurement, do not wait."""
    X, y = data
    first = new_model()
    first._engine._simulate_load(0.0, 0.01)
    first.fit(X, y, **FIT)  # batch 16
    second = new_model()  # (at once: the measurement stands for 2 s)
    second.fit(X[:512], y[:512], epochs=1, batch_size=16)  # 32 steps, fewer than the wait
    assert second.thread_stats() == {"one": 32, "many": 0}
    assert first._engine.hinted_threads(48) == 1  # predict blocks of that work: one thread
    assert first._engine.hinted_threads(512) == 2  # 10x the work: not measured
    out = first.predict(X)
    larger = new_model()
    larger.fit(X, y, epochs=1, batch_size=256)  # 16x the work per step: probes early
    assert larger.thread_stats()["many"] > 0
    time.sleep(2.1)  # the measurement is the machine's state for 2 s, then forgotten
    later = new_model()
    later.fit(X[:512], y[:512], epochs=1, batch_size=16)
    assert later.thread_stats()["many"] > 0
    fastmlp._engine.forget_thread_timings()
    again = new_model()  # measured again: from scratch it probes the team within ~8 steps,
    again._engine._simulate_load(0.0, 0.01)  # and a short fit ends well inside the 2 s
    again.fit(X[:192], y[:192], epochs=1, batch_size=16)  # (12 steps; a slow build too)
    assert again.thread_stats()["many"] > 0  # it did measure the team
    assert first._engine.hinted_threads(48) == 1
    fastmlp._engine.forget_thread_timings()
    assert first._engine.hinted_threads(48) == 2
    np.testing.assert_array_equal(first.predict(X), out)
    third = new_model()
    third.fit(X[:512], y[:512], epochs=1, batch_size=16)
    assert third.thread_stats()["many"] > 0  # without that memory it probes the team early


def test_curvature_products_from_threads_equal_serial(data):
    X, y = data
    m = new_model("float64")
    v = np.random.default_rng(3).normal(size=m.get_flat_params().shape)
    expected = m.hvp(X[:40], y[:40], v)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda _: m.hvp(X[:40], y[:40], v), range(12)))
    for out in outs:
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("bad", [0, -1, 100000, 2**40, 1.5, "2"])
def test_threads_setter_checks_its_range(bad):
    m = new_model()
    with pytest.raises((ValueError, TypeError), match="threads"):
        m.threads = bad
    assert m.threads == 2


@needs_openmp
def test_a_new_model_starts_with_the_team_when_it_was_faster(data):
    X, y = data
    first = new_model()
    first._engine._simulate_load(0.01, 0.0)  # one-thread steps look slower
    first.fit(X, y, **FIT)
    second = new_model()
    second.fit(X[:512], y[:512], epochs=1, batch_size=16)
    assert second.thread_stats() == {"one": 0, "many": 32}


def _engine_threads() -> int:
    return fastmlp.default_threads()


@pytest.mark.skipif("OMP_NUM_THREADS" in os.environ,
                    reason="OMP_NUM_THREADS is set in this environment, and joblib keeps a "
                           "value set by hand, so there is no share to check")
def test_loky_workers_get_their_share_of_the_cores():
    """joblib's loky workers (GridSearchCV(n_jobs=...), cross_val_score, ...) limit
    OMP_NUM_THREADS to their share of the cores, and fastmlp's default follows it."""
    joblib = pytest.importorskip("joblib")
    shares = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_engine_threads)() for _ in range(2))
    assert shares == [max(1, (os.cpu_count() or 1) // 2)] * 2


def test_ensemble_jobs_share_the_threads_and_give_them_back(data):
    X, y = data
    members = [fastmlp.MLP(SIZES, seed=s, threads=4) for s in range(2)]
    seen = []
    fastmlp.Ensemble(members).fit(X, y, epochs=1, n_jobs=2, bagging=False,
                                  callbacks=[lambda model, h: seen.append(model.threads)])
    assert seen == [2, 2]
    assert [m.threads for m in members] == [4, 4]


ONE_THREAD_CHILD = r"""
import os, numpy as np, scipy.sparse, fastmlp
rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 784))  # float64 input: converted, then checked for NaN
y = rng.integers(0, 10, 3000)
m = fastmlp.MLP([784, 64, 10], seed=0, threads=1)
before = len(os.listdir("/proc/self/task"))
m.fit(X[:600], y[:600], epochs=1, batch_size=128)
m.predict(X)
m.predict(X.astype(np.float32))
m.predict(scipy.sparse.random(3000, 784, density=0.2, format="csr", random_state=0))
print(before, len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_a_one_thread_model_starts_no_threads():
    """threads=1 means one thread for everything a call does, the input's NaN check of a
    large X included (it once ran on every core: an OpenMP team whose workers then spun on
    the other cores, doubling the CPU time of a predict at 512 rows). Counted in a fresh
    process: the OS threads before and after a fit and three predicts (dense float64 and
    float32 X, and a sparse one of 470,000 stored values)."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", ONE_THREAD_CHILD], capture_output=True,
                         text=True, env=env, check=True).stdout.split()
    assert out[0] == out[1], f"threads before / after: {out}"
