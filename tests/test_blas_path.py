"""The BLAS-backed kernel path ("blas": SciPy's sgemm/dgemm through csrc/blas.c), forced on
this machine: forward pass, input and weight gradients and training against the NumPy
reference over shapes that cross its fixed output blocks (128 columns, 512 rows), both
dtypes, strided inputs; results bitwise independent of the engine's thread count; the BLAS's
own thread count held and restored; and how the path is found, forced and refused.
(tests/test_kernels.py runs its every-path tests on this path too.)"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_problem, relative_error

import fastmlp
import fastmlp.reference
from fastmlp import _blas, _engine

pytest.importorskip("scipy")

TOL = {"float32": 1e-4, "float64": 1e-10}


@pytest.fixture
def blas():
    before = _engine.kernel()
    _engine.set_kernel("blas")
    yield
    _engine.set_kernel(before)


def check_against_reference(sizes, batch, dtype, act="tanh", loss="cross_entropy",
                            strided=False, threads=2):
    X, y = make_problem(loss, batch, sizes[0], sizes[-1], seed=batch + sum(sizes))
    if strided:  # every other column of a wider array, every other row of a taller one
        wide = np.zeros((2 * batch, 2 * sizes[0]))
        wide[::2, ::2] = X
        X = wide[::2, ::2]
    eng = fastmlp.MLP(sizes, activation=act, loss=loss, dtype=dtype, seed=2, bias_init=0.05,
                      threads=threads)
    ref = fastmlp.reference.MLP(sizes, activation=act, loss=loss, dtype=dtype, seed=2,
                                bias_init=0.05)
    tol = TOL[dtype]
    assert relative_error([eng.predict(X)], [ref.predict(X)]) <= tol
    ge, gr = eng.gradients(X, y), ref.gradients(X, y)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=tol)
    for layer in range(len(sizes) - 1):  # weight and bias gradients, layer by layer
        assert relative_error([ge["weights"][layer], ge["biases"][layer]],
                              [gr["weights"][layer], gr["biases"][layer]]) <= tol
    assert relative_error([ge["input"]], [gr["input"]]) <= tol  # input gradient


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [1, 127, 128, 129, 257])
def test_widths_across_column_blocks(blas, width, dtype):
    check_against_reference([width, width, 3], 9, dtype)  # dW rows, dX columns: width
    check_against_reference([5, 7, width], 9, dtype, loss="mse")  # Y columns: width


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 2, 511, 512, 513])
def test_batches_across_row_blocks(blas, batch, dtype):
    check_against_reference([20, 130, 4], batch, dtype, act="relu")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["identity", "sigmoid", "relu", "leaky_relu"])
def test_every_activation_strided_input(blas, act, dtype):
    check_against_reference([37, 140, 33, 10], 29, dtype, act=act, strided=True)


@pytest.mark.parametrize("act", ["tanh", "leaky_relu"])
def test_float64_gradients_against_central_differences(blas, act):
    """The path's analytic float64 gradients (eps 1e-6 differences of its own losses)."""
    from test_gradients import numeric_gradients

    X, y = make_problem("cross_entropy", 7, 4, 3, seed=4)
    m = fastmlp.MLP([4, 6, 3], activation=act, dtype="float64", seed=1, bias_init=0.1)
    _, dW, db = m.loss_and_grad(X, y)
    assert relative_error(dW + db, numeric_gradients(m, X, y)) <= 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_steps_match_the_reference(blas, dtype):
    X, y = make_problem("cross_entropy", 150, 40, 6, seed=7)
    models = [impl([40, 150, 30, 6], dtype=dtype, seed=4, bias_init=0.05)
              for impl in (fastmlp.MLP, fastmlp.reference.MLP)]
    for m in models:
        m.fit(X, y, epochs=2, batch_size=32, shuffle=False,
              optimizer=fastmlp.optim.Adam(lr=1e-3))
    assert relative_error([models[0].get_flat_params()], [models[1].get_flat_params()]) \
        <= TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_count_does_not_change_a_bit(blas, dtype):
    """Outputs split into fixed blocks: 1, 2 and 3 engine threads make the same BLAS calls
    (layers of 300 and 260 units: several column blocks; batch 600: two row blocks)."""
    assert _engine.blas_threads_controlled()
    X, y = make_problem("cross_entropy", 600, 150, 10, seed=1)
    runs = []
    for threads in (1, 2, 3):
        m = fastmlp.MLP([150, 300, 260, 10], dtype=dtype, seed=3, threads=threads,
                        dropout=0.1)
        g = m.gradients(X, y)
        m.fit(X, y, epochs=1, batch_size=200, optimizer=fastmlp.optim.Adam(lr=1e-3))
        runs.append([m.predict(X), g["flat"], g["input"], m.get_flat_params()])
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            np.testing.assert_array_equal(a, b)


def blas_thread_count():
    """get() and set(n) of SciPy's OpenBLAS thread count, through the functions the
    engine was handed."""
    found = _blas.scipy_blas()
    get = ctypes.CFUNCTYPE(ctypes.c_int)(found[2])
    set_ = ctypes.CFUNCTYPE(None, ctypes.c_int)(found[3])
    return get, set_


def test_the_blas_own_thread_count_is_restored(blas):
    """The path holds SciPy's OpenBLAS to one thread during its calls and gives it back
    its count afterwards (2, and a user's limit of 1)."""
    get, set_ = blas_thread_count()
    before = get()
    X, y = make_problem("cross_entropy", 256, 200, 10, seed=2)
    try:
        for count in (2, 1):
            set_(count)
            m = fastmlp.MLP([200, 256, 10], seed=1, threads=2)
            m.fit(X, y, epochs=1, batch_size=64)
            m.predict(X)
            assert get() == count
    finally:
        set_(before)


def test_the_path_is_reported(blas):
    before = _engine.kernel_calls()
    fastmlp.MLP([20, 30, 5], seed=0).predict(np.ones((4, 20)))
    after = _engine.kernel_calls()
    assert _engine.kernel() == "blas"
    assert after["blas"] > before["blas"]
    assert all(after[k] == before[k] for k in after if k != "blas")


def test_sparse_input_runs_its_own_first_layer_then_blas(blas):
    """The BLAS path leaves a sparse first layer to the engine's CSR kernels (the layers
    after it run on the BLAS): predictions match the reference on the dense rows, and
    training on sparse X matches training on dense X to rounding (not bitwise, as on the
    other paths: the BLAS blocks its sums by shape)."""
    sp = pytest.importorskip("scipy.sparse")
    X, y = make_problem("cross_entropy", 60, 30, 4, seed=3)
    X[np.abs(X) < 1.0] = 0.0
    eng = fastmlp.MLP([30, 140, 4], seed=6)
    ref = fastmlp.reference.MLP([30, 140, 4], seed=6)
    before = _engine.kernel_calls()["blas"]
    np.testing.assert_allclose(eng.predict(sp.csr_matrix(X)), ref.predict(X), rtol=1e-4,
                               atol=1e-6)
    assert _engine.kernel_calls()["blas"] > before
    for dtype in ("float32", "float64"):
        sparse, dense = (fastmlp.MLP([30, 140, 4], seed=6, dtype=dtype) for _ in range(2))
        sparse.fit(sp.csr_matrix(X), y, epochs=2, batch_size=8, lr=0.05)
        dense.fit(X, y, epochs=2, batch_size=8, lr=0.05)
        assert relative_error([sparse.get_flat_params()], [dense.get_flat_params()]) \
            <= TOL[dtype]


def run_python(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, **env), check=True)
    return out.stdout.strip()


def test_forced_by_the_environment():
    assert run_python("import fastmlp._engine as e; print(e.kernel())",
                      FASTMLP_KERNEL="blas") == "blas"


def test_scipy_is_not_imported_unless_the_path_is_wanted():
    """On a CPU with hand kernels, importing the engine looks for no BLAS (no import of
    scipy.linalg); asking for the kernels does."""
    code = ("import sys, fastmlp._engine as e; a = 'scipy.linalg' in sys.modules; "
            "e.available_kernels(); print(a, 'scipy.linalg' in sys.modules)")
    if set(_engine.available_kernels()) & {"avx2", "avx512"}:
        assert run_python(code, FASTMLP_KERNEL="") == "False True"


def test_without_scipy_the_path_is_unavailable_with_a_clear_error():
    code = ("import sys; sys.modules['scipy'] = None\n"  # import scipy raises ImportError
            "import fastmlp._engine as e\n"
            "print(e.kernel() != 'blas', 'blas' not in e.available_kernels())\n"
            "try:\n"
            "    e.set_kernel('blas')\n"
            "except ValueError as err:\n"
            "    print(err)\n")
    first, message = run_python(code, FASTMLP_KERNEL="blas").splitlines()
    assert first == "True True"
    assert "needs SciPy" in message and "available:" in message


def test_thread_functions_of_a_library_without_openblas():
    libm = ctypes.util.find_library("m")
    if libm is not None:
        assert _blas.openblas_thread_functions(libm) == (0, 0)
    assert _blas.openblas_thread_functions("/nonexistent/libnothing.so") == (0, 0)


def test_scipy_blas_is_registered_once():
    found = _blas.scipy_blas()
    assert found is not None and all(found[2:])  # SciPy's wheels: OpenBLAS, thread control
    _engine.available_kernels()  # registered by now
    _engine._register_blas(*found)  # a second registration changes nothing
    assert "blas" in _engine.available_kernels() and _engine.blas_threads_controlled()


def test_concurrent_predicts_on_the_path(blas):
    """Predicts from several Python threads at once (each its own engine threads, all
    calling the BLAS): the same results as one at a time, and the BLAS's own thread count
    given back once the last call returns."""
    from concurrent.futures import ThreadPoolExecutor

    get, set_ = blas_thread_count()
    before = get()
    rng = np.random.default_rng(8)
    m = fastmlp.MLP([64, 300, 10], seed=2, threads=2)
    batches = [rng.normal(size=(400, 64)) for _ in range(8)]
    expected = [m.predict(X) for X in batches]
    try:
        set_(2)
        with ThreadPoolExecutor(max_workers=4) as pool:
            outs = list(pool.map(m.predict, batches * 3))
        assert get() == 2
    finally:
        set_(before)
    for out, want in zip(outs, expected * 3):
        np.testing.assert_array_equal(out, want)
