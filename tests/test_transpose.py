"""The kernel sets' transposing copies (csrc/transpose_avx2.c; gemm.h's pack_t) against
NumPy's transpose, and the products that use them: from batch 64 a layer's weight gradient
reads its input transposed (X^T made once per step) in float32 and float64 alike."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import kernel_has_tiles, make_problem, relative_error

import fastmlp
import fastmlp.reference
from fastmlp import _engine

# every tail of 4x4 (float64), 8x8 (float32 AVX2) and 16x16 (float32 AVX-512) blocks
# (75: a batch, as the weight gradient's X^T has it, with a panel of nr = nb = 75 columns)
ROWS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 75]
COLS = [1, 3, 4, 5, 8, 9, 12, 16, 17, 33, 70]


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def source(rng, nb, K, dtype, strided):
    """(nb, K) values with signed zeros, infinities and NaN among them; `strided`: a column
    slice of a wider array (a row stride of K + 7 elements, starting 3 in)."""
    m = rng.normal(size=(nb, K)).astype(dtype)
    m.flat[::5] = np.resize(np.array([-0.0, np.inf, -np.inf, np.nan], dtype), m.flat[::5].size)
    if not strided:
        return m
    wide = np.full((nb, K + 7), 99.0, dtype)
    wide[:, 3:3 + K] = m
    return wide[:, 3:3 + K]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strided", [False, True])
def test_copy_equals_numpy_transpose_at_every_tail(kernel, dtype, strided):
    """Bitwise (NaN payloads and signed zeros included) for every pair of row and column
    tails, contiguous and strided sources, panels as wide as the rows and wider; the panel's
    columns from nb on stay as they were."""
    rng = np.random.default_rng(18)
    m = source(rng, 4, 4, dtype, strided)
    if not kernel_has_tiles(kernel):  # the portable loop lives inside the products
        with pytest.raises(ValueError, match="no transposing copy"):
            _engine.transposing_copy(m, 4)
        return
    for nb in ROWS:
        for K in COLS:
            m = source(rng, nb, K, dtype, strided)
            for nr in sorted({nb, nb + 3, max(nb, 32)}):
                buf = _engine.transposing_copy(m, nr)
                assert buf.shape == (K, nr) and buf.dtype == dtype
                np.testing.assert_array_equal(bits(buf[:, :nb]), bits(np.ascontiguousarray(m.T)))
                assert np.isnan(buf[:, nb:]).all()


def test_copy_rejects_bad_input():
    m = np.ones((3, 5))
    with pytest.raises(TypeError, match="float32 or float64"):
        _engine.transposing_copy(m.astype(np.int64), 4)
    with pytest.raises(TypeError, match="float32 or float64"):
        _engine.transposing_copy(m.tolist(), 4)
    with pytest.raises(ValueError, match="2-D"):
        _engine.transposing_copy(np.ones((2, 3, 5)), 4)
    with pytest.raises(ValueError, match="nr"):
        _engine.transposing_copy(m, 2)
    with pytest.raises(ValueError, match="nr"):
        _engine.transposing_copy(m, 0)
    with pytest.raises(ValueError, match="contiguous"):
        _engine.transposing_copy(np.ones((3, 10))[:, ::2], 4)
    with pytest.raises(ValueError, match="row stride"):
        _engine.transposing_copy(m[::-1], 4)


@pytest.mark.parametrize("batch", [64, 100])
def test_float64_training_through_the_transposed_input(kernel, batch):
    """float64 SGD from batch 64 (the weight gradients of the 100- and 129-wide inputs read
    X^T) against the NumPy reference, and against the generic path's gradients."""
    sizes = [100, 129, 70, 10]
    X, y = make_problem("cross_entropy", 2 * batch + 13, sizes[0], sizes[-1], seed=batch)
    eng, ref = (impl(sizes, dtype="float64", seed=4, bias_init=0.05)
                for impl in (fastmlp.MLP, fastmlp.reference.MLP))
    he = eng.fit(X, y, epochs=2, batch_size=batch, lr=0.05, shuffle=False)
    hr = ref.fit(X, y, epochs=2, batch_size=batch, lr=0.05, shuffle=False)
    assert relative_error(eng.weights + eng.biases, ref.weights + ref.biases) <= 1e-9
    assert np.allclose(he.loss, hr.loss, rtol=1e-9)
    grads = eng.loss_and_grad(X[:batch], y[:batch], return_input_grad=True)
    _engine.set_kernel("generic")
    try:
        generic = eng.loss_and_grad(X[:batch], y[:batch], return_input_grad=True)
    finally:
        _engine.set_kernel(kernel)
    flat = [grads[0]] + grads[1] + grads[2] + [grads[3]]
    assert relative_error(flat, [generic[0]] + generic[1] + generic[2] + [generic[3]]) <= 1e-12


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_short_last_batch_whose_transposed_rows_are_longer(kernel, dtype):
    """Batches of 100 rows, then one of 96: 96 rows fill an even number of 64-byte lines,
    so X^T's rows get a line more (csrc/kernels.h's fm_xt_stride) and are longer than a
    full batch's (100 rows fill no whole number of lines). The workspace, sized for 100
    rows, holds them (the sanitizer build's redzones would catch an overrun), and the fit
    matches the NumPy reference."""
    sizes = [100, 129, 70, 10]
    X, y = make_problem("cross_entropy", 296, sizes[0], sizes[-1], seed=11)
    X = X.astype(dtype)
    eng, ref = (impl(sizes, dtype=dtype, seed=4, bias_init=0.05)
                for impl in (fastmlp.MLP, fastmlp.reference.MLP))
    he = eng.fit(X, y, epochs=2, batch_size=100, lr=0.05, shuffle=False)
    hr = ref.fit(X, y, epochs=2, batch_size=100, lr=0.05, shuffle=False)
    tol = 1e-9 if dtype == "float64" else 1e-4
    assert relative_error(eng.weights + eng.biases, ref.weights + ref.biases) <= tol
    assert np.allclose(he.loss, hr.loss, rtol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_bitwise_through_the_transposed_input(kernel, dtype):
    """Batches of 100 rows (X^T made by both threads, a block of 32 input columns each)
    train to the same bits on 1 and 2 threads."""
    X, y = make_problem("cross_entropy", 300, 200, 10, seed=7)
    results = []
    for threads in (1, 2):
        m = fastmlp.MLP([200, 160, 96, 10], seed=9, threads=threads, dtype=dtype)
        m.fit(X, y, epochs=2, batch_size=100, optimizer=fastmlp.optim.Adam(lr=1e-3))
        results.append(m.get_flat_params())
    assert np.array_equal(results[0], results[1])
