"""Every kernel path this machine supports (AVX-512, AVX2, portable C, SciPy's BLAS), in
float32 and float64, against the NumPy reference, over shapes that hit every tile tail; the
forced-path switch; and thread-count independence on each path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmlp
import fastmlp.reference
from fastmlp import _engine
from conftest import make_problem, relative_error

KERNELS = _engine.available_kernels()
SIZES = [1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 70, 129, 1000]


def assert_same_rows(kernel, actual, desired):
    """A row's (a column's) result computed in a batch (layer) of another size: bitwise on
    the hand-written paths, whose every element is one FMA chain whatever tile it lands in.
    The BLAS picks its kernels and blocking by shape (OpenBLAS hands a one-row product to
    gemv), so on the "blas" path only the last bits may differ."""
    if kernel != "blas":
        np.testing.assert_array_equal(actual, desired)
        return
    rtol = 1e-5 if actual.dtype == np.float32 else 1e-12  # of the largest (cancellation)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


def compare(sizes, batch, act="relu", loss="cross_entropy", strided=False, dtype="float32"):
    X, y = make_problem(loss, batch, sizes[0], sizes[-1], seed=sum(sizes) + batch)
    if strided:
        wide = np.zeros((batch, 2 * sizes[0]))
        wide[:, ::2] = X
        X = wide[:, ::2]
    eng, ref = (impl(sizes, activation=act, loss=loss, dtype=dtype, seed=1, bias_init=0.05)
                for impl in (fastmlp.MLP, fastmlp.reference.MLP))
    tol = 1e-4 if dtype == "float32" else 1e-10
    assert relative_error([eng.predict(X)], [ref.predict(X)]) <= tol
    ge, gr = eng.gradients(X, y), ref.gradients(X, y)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=tol)
    assert relative_error([ge["flat"], ge["input"]], [gr["flat"], gr["input"]]) <= tol


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", SIZES)
def test_widths_and_batches_at_every_tail(kernel, size, dtype):
    compare([size, size, 3], 11, dtype=dtype)           # input and hidden width (K of dW)
    compare([9, 13, size], 7, loss="mse", dtype=dtype)  # output width (narrow, wide dX)
    compare([10, 21, 4], size, dtype=dtype)             # batch (rows; K of dW)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["identity", "sigmoid", "tanh", "relu", "leaky_relu"])
def test_every_activation_strided_inputs(kernel, act, dtype):
    compare([37, 70, 33, 10], 29, act=act, strided=True, dtype=dtype)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 70), min_size=2, max_size=4), batch=st.integers(1, 70),
       which=st.sampled_from(KERNELS), dtype=st.sampled_from(["float32", "float64"]),
       strided=st.booleans())
def test_random_shapes_on_every_path(sizes, batch, which, dtype, strided):
    before = _engine.kernel()
    _engine.set_kernel(which)
    try:
        compare(sizes, batch, act="tanh", loss="mse", strided=strided, dtype=dtype)
    finally:
        _engine.set_kernel(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_switch_really_switches(kernel, dtype):
    model = fastmlp.MLP([20, 30, 5], seed=0, dtype=dtype)
    X = np.ones((16, 20), dtype)
    before = _engine.kernel_calls()
    model.predict(X)
    after = _engine.kernel_calls()
    assert _engine.kernel() == kernel
    assert after[kernel] > before[kernel]
    assert all(after[k] == before[k] for k in after if k != kernel)


def test_paths_agree_with_each_other():
    X, y = make_problem("cross_entropy", 64, 100, 10, seed=0)
    outs = []
    before = _engine.kernel()
    try:
        for k in KERNELS:
            _engine.set_kernel(k)
            m = fastmlp.MLP([100, 64, 10], seed=0)
            m.fit(X, y, epochs=2, batch_size=16, lr=0.05)
            outs.append(m.get_flat_params())
    finally:
        _engine.set_kernel(before)
    for o in outs[1:]:  # different summation orders: close, not bitwise
        assert relative_error([o], [outs[0]]) <= 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_bitwise_on_every_path(kernel, dtype):
    X, y = make_problem("cross_entropy", 200, 96, 10, seed=4)
    results = []
    for threads in (1, 2, 3):
        m = fastmlp.MLP([96, 160, 64, 10], seed=9, threads=threads, dropout=0.2, dtype=dtype)
        m.fit(X, y, epochs=2, batch_size=50, optimizer=fastmlp.optim.Adam(lr=1e-3))
        results.append(m.get_flat_params())
    assert all(np.array_equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_over_several_row_spans(kernel, dtype):
    """A left operand larger than half of L2 (300 x 2000 here: 2.4 MB in float32, 4.8 in
    float64; the forward product of the first layer, and X^T in its weight gradient) is
    run in spans of rows, every panel per span, in predict (prepacked panels); training's
    products, whose spans fill a quarter of L3, get spans of 64 rows forced: against the
    reference; the rows of a batch bitwise those computed alone; a fit on 1 and 2 threads
    and with derived spans bitwise."""
    sizes = [2000, 40, 3]
    X, y = make_problem("cross_entropy", 300, 2000, 3, seed=8)
    X = X.astype(dtype)
    m = fastmlp.MLP(sizes, seed=4, dtype=dtype, bias_init=0.1)
    full = m.predict(X)
    assert_same_rows(kernel, m.predict(X[250:257]), full[250:257])
    fits = []
    try:
        for threads, span in ((1, 64), (2, 64), (1, None)):
            _engine.set_blocking(span=span)
            if threads == 1 and span:
                compare(sizes, 300, dtype=dtype)
            m = fastmlp.MLP(sizes, seed=4, dtype=dtype, threads=threads)
            m.fit(X, y, epochs=1, batch_size=300, optimizer=fastmlp.optim.Adam(lr=1e-3))
            fits.append(m.get_flat_params())
    finally:
        _engine.set_blocking()
    np.testing.assert_array_equal(fits[0], fits[1])
    np.testing.assert_array_equal(fits[0], fits[2])


def test_kernel_choice_errors_and_environment():
    with pytest.raises(ValueError, match="kernel must be one of"):
        _engine.set_kernel("neon")
    for k in set(_engine.KERNELS) - set(KERNELS):
        with pytest.raises(ValueError, match="not available here"):
            _engine.set_kernel(k)
    env = dict(os.environ, FASTMLP_KERNEL="generic")
    out = subprocess.run([sys.executable, "-c", "import fastmlp._engine as e; print(e.kernel())"],
                         capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "generic"


LOSSES = ["cross_entropy", "binary_cross_entropy", "mse", "hinge", "multi_hinge"]


@pytest.mark.parametrize("loss", LOSSES)
def test_dropout_and_batch_norm_gradients_on_every_path(kernel, loss):
    """Training-mode gradients through dropout and batch norm (both placements), per path.
    (The optimizer updates are one C loop shared by every path: tests/test_optim.py.)"""
    X, y = make_problem(loss, 48, 20, 5, seed=3)
    eng, ref = (impl([20, 40, 33, 5], activation="tanh", loss=loss, seed=5, dropout=0.25,
                     input_dropout=0.1, batch_norm=["before", "after"], bias_init=0.05)
                for impl in (fastmlp.MLP, fastmlp.reference.MLP))
    ge, gr = (m.gradients(X, y, training=True, step=4, l2=1e-3, activity_l1=1e-3)
              for m in (eng, ref))
    assert ge["loss"] == pytest.approx(gr["loss"], rel=1e-5)
    assert relative_error([ge["flat"], ge["input"]], [gr["flat"], gr["input"]]) <= 1e-4
    for m in (eng, ref):
        m.fit(X, y, epochs=2, batch_size=16, optimizer=fastmlp.optim.SGD(lr=0.05, momentum=0.9))
    assert relative_error([eng.get_flat_params()], [ref.get_flat_params()]) <= 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_rows_prediction_does_not_depend_on_its_batch(kernel, dtype):
    """Every row is computed in the same order whatever tile it lands in (a lone row, a
    tile tail, a packed panel), so predictions of a subset equal those of the whole
    (bitwise on the hand-written paths: assert_same_rows)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 70))
    m = fastmlp.MLP([70, 97, 33, 10], seed=1, dtype=dtype, bias_init=0.1)
    full = m.predict(X)
    for start, stop in [(0, 1), (5, 6), (3, 12), (0, 9), (17, 82), (40, 150), (149, 150)]:
        assert_same_rows(kernel, m.predict(X[start:stop]), full[start:stop])
    order = rng.permutation(150)
    assert_same_rows(kernel, m.predict(X[order]), full[order])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_rows_split_between_threads_equal_one_threads(kernel, dtype):
    """On several threads a predict of enough rows (64 a thread) shares blocks of
    batch_cap / threads rows between the threads, each block through every layer on one
    (tails of every size); fewer rows, or the BLAS path, split each layer's products. Either
    way every row is what one thread computes (bitwise on the hand paths), for float64 and
    uint8 input converted per block, sparse input, batch norm and pruned (CSR) layers."""
    rng = np.random.default_rng(12)
    X = rng.normal(size=(403, 37))
    models = {t: fastmlp.MLP([37, 70, 33, 10], seed=2, dtype=dtype, threads=t, bias_init=0.1)
              for t in (1, 2, 3)}
    bn = {t: fastmlp.MLP([37, 40, 3], seed=2, dtype=dtype, threads=t, batch_norm=True)
          for t in (1, 2)}
    for m in (models[2], models[3], bn[2]):  # (a team measured slow elsewhere in the run
        m.adaptive_threads = False          # would make them predict on one thread)
    bn[1].fit(X, rng.integers(0, 3, 403), epochs=1, batch_size=50)
    bn[2].set_flat_params(bn[1].get_flat_params())
    bn[2].set_batch_norm_state(bn[1].batch_norm_state())
    for n in (1, 127, 128, 129, 191, 192, 193, 403):
        for ms in (models, bn):
            one = ms[1].predict(X[:n])
            for t in (2, 3):
                if t not in ms:
                    continue
                before = _engine.predict_split_calls()
                assert_same_rows(kernel, ms[t].predict(X[:n]), one)
                split = _engine.predict_split_calls() - before
                assert split == (n >= 64 * t and kernel != "blas")
    for t in (2, 3):  # several blocks a thread, the last one short
        one = models[1]._engine.predict(models[1]._check_input(X), 7)
        assert_same_rows(kernel, models[t]._engine.predict(models[t]._check_input(X), 7), one)
    images = rng.integers(0, 256, size=(300, 37), dtype=np.uint8)
    assert_same_rows(kernel, models[2].predict(images), models[1].predict(images))
    sparse = sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))
    assert_same_rows(kernel, models[2].predict(sparse), models[1].predict(sparse))
    for t in (1, 2):  # pruned: predict multiplies the sparse layers' CSR weights
        models[t].prune(0.95)
        assert models[t]._engine.sparse_density > 0.05
    assert_same_rows(kernel, models[2].predict(X), models[1].predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_evaluate_rows_split_between_threads_equal_one_thread(kernel, dtype):
    """On several threads an evaluate of enough rows (64 a thread) has the threads share
    chunks of batch_cap / threads rows, a window of whole blocks (up to 2,048 rows) at a
    time; fewer rows, or the BLAS path, split each layer's products. The loss and
    accuracy sums (each block's rows in order, then the blocks) are one thread's: bitwise
    on the hand paths, for labels and dense targets, float64, uint8 and sparse input,
    batch norm, chunks across blocks and several windows."""
    rng = np.random.default_rng(13)
    X = rng.normal(size=(403, 37))
    y = rng.integers(0, 10, 403)
    models = {t: fastmlp.MLP([37, 70, 33, 10], seed=2, dtype=dtype, threads=t, bias_init=0.1)
              for t in (1, 2, 3)}
    reg = {t: fastmlp.MLP([37, 40, 3], seed=2, dtype=dtype, threads=t, batch_norm=True,
                          loss="mse") for t in (1, 2)}
    for m in (models[2], models[3], reg[2]):  # (as in the predict test above)
        m.adaptive_threads = False
    Y = rng.normal(size=(403, 3))
    reg[1].fit(X, Y, epochs=1, batch_size=50)
    reg[2].set_flat_params(reg[1].get_flat_params())
    reg[2].set_batch_norm_state(reg[1].batch_norm_state())

    def sums(m, X, y, cap=512):
        X = m._check_input(X)
        return m._engine.evaluate(X, *m._targets(y, X.shape[0]), cap)

    def same(a, b):
        if kernel == "blas":
            np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == "float32" else 1e-12)
        else:
            assert a == b

    for n in (1, 127, 128, 129, 191, 192, 193, 403):
        for ms, targets in ((models, y), (reg, Y)):
            one = sums(ms[1], X[:n], targets[:n])
            for t in (2, 3):
                if t not in ms:
                    continue
                before = _engine.evaluate_split_calls()
                same(sums(ms[t], X[:n], targets[:n]), one)
                split = _engine.evaluate_split_calls() - before
                assert split == (n >= 64 * t and kernel != "blas")
    many = rng.normal(size=(4500, 37))  # three windows
    labels = rng.integers(0, 10, 4500)
    for t in (2, 3):
        for cap in (7, 100, 512):  # 7 rows on 3 threads: chunks of 2 across the blocks
            before = _engine.evaluate_split_calls()
            same(sums(models[t], many, labels, cap), sums(models[1], many, labels, cap))
            assert _engine.evaluate_split_calls() - before == (kernel != "blas")
    images = rng.integers(0, 256, size=(300, 37), dtype=np.uint8)
    same(sums(models[2], images, y[:300]), sums(models[1], images, y[:300]))
    sparse = sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))
    same(sums(models[2], sparse, y), sums(models[1], sparse, y))
    two, one = models[2].evaluate(X, y), models[1].evaluate(X, y)  # the public method
    same((two["loss"], two["accuracy"]), (one["loss"], one["accuracy"]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_lone_row_through_every_gemv_width(kernel, dtype):
    """Batch 1 runs the vector-matrix product (gemv: rows of W in groups of 8 and one at a
    time for the rest, the last vector of columns masked or full; a wide layer in several
    calls, one per thread at least): every width from 1 to 70 and wider ones, inputs
    of 1 to 23 (group tails), against the reference and bitwise against the same row in a
    batch (which runs the tiles) and on two threads."""
    rng = np.random.default_rng(11)
    tol = 1e-5 if dtype == "float32" else 1e-12
    cases = [(23, w) for w in range(1, 71)] + [(k, 33) for k in range(1, 23)] + \
        [(23, 96), (23, 129), (23, 257), (600, 1100), (600, 2100)]
    for inputs, width in cases:
        eng, ref = (impl([inputs, width, 5], seed=width, dtype=dtype, bias_init=0.1)
                    for impl in (fastmlp.MLP, fastmlp.reference.MLP))
        X = rng.normal(size=(9, inputs))
        batch = eng.predict(X)
        for i in (0, 4, 8):
            row = eng.predict(X[i:i + 1])
            assert_same_rows(kernel, row, batch[i:i + 1])
            assert relative_error([row], [ref.predict(X[i:i + 1])]) <= tol
        if width > 1000:  # large enough for two threads' blocks
            one = eng.predict(X[:1])
            eng.threads = 2
            np.testing.assert_array_equal(eng.predict(X[:1]), one)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [64, 75, 150])
def test_weight_gradient_from_the_transposed_input(kernel, batch, dtype):
    """From batch 64 the weight gradient reads X^T made once (16x16 register transposes on
    AVX-512, float32) and the forward pass copies weight panels: widths and batches off
    the 16-grid check their tails."""
    compare([100, 129, 70, 5], batch, dtype=dtype)
    compare([64, 1000, 3], batch, loss="mse", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [5, 70])
def test_a_column_does_not_depend_on_the_tile_width(kernel, dtype, batch):
    """A panel of full tile width and a narrower tail panel (masked moves on AVX2)
    compute a column with the same chain: the first 28 outputs of a 32-wide layer equal
    those of the same layer cut to 28 (a tail of 12 columns of a 16-wide float32 tile, 4
    of an 8-wide float64 one), bitwise (hand-written paths), unpacked (batch 5) and packed
    (batch 70)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(batch, 45)).astype(dtype)
    wide = fastmlp.MLP([45, 32], loss="mse", seed=2, dtype=dtype, bias_init=0.1)
    cut = fastmlp.MLP([45, 28], loss="mse", seed=2, dtype=dtype)
    cut.set_params([wide.weights[0][:, :28]], [wide.biases[0][:28]])
    assert_same_rows(kernel, cut.predict(X), wide.predict(X)[:, :28])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cut", [2, 4, 10, 20, 24, 26])
def test_panel_tails_of_one_vector(chain_kernel, dtype, cut):
    """A panel's last columns that fit one vector (float32: up to 8, float64: up to 4; a
    100-wide layer's last 4, a 10-wide one's last 2 doubles) run a one-vector tile on AVX2:
    its columns equal those of the full tile bitwise (a 32-wide layer cut to `cut`), in
    the forward pass unpacked and packed (batches 5, 70) and in the gradients (the weight
    gradient's columns, the input gradient's rows), which match the reference."""
    rng = np.random.default_rng(cut)
    wide = fastmlp.MLP([45, 32], loss="mse", seed=2, dtype=dtype, bias_init=0.1)
    narrow = fastmlp.MLP([45, cut], loss="mse", seed=2, dtype=dtype)
    narrow.set_params([wide.weights[0][:, :cut]], [wide.biases[0][:cut]])
    for batch in (5, 70):
        X = rng.normal(size=(batch, 45)).astype(dtype)
        np.testing.assert_array_equal(narrow.predict(X), wide.predict(X)[:, :cut])
    compare([9, 13, cut], 70, loss="mse", dtype=dtype)  # forward, dW of width cut
    compare([cut, cut, 3], 70, dtype=dtype)             # dX of width cut (K = 3, then cut)


def trained_on(threads, sizes, X, y, dtype, epochs, batch):
    """The parameters after training a seeded model with Adam on `threads` threads."""
    m = fastmlp.MLP(sizes, seed=3, threads=threads, dtype=dtype)
    m.fit(X, y, epochs=epochs, batch_size=batch, optimizer=fastmlp.optim.Adam(lr=1e-3))
    return m.get_flat_params()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_bitwise_with_one_vector_tails(kernel, dtype):
    """digits' shape (64 -> 100 -> 10): every product has a one-vector tail panel."""
    X, y = make_problem("cross_entropy", 400, 64, 10, seed=6)
    one, two = (trained_on(threads, [64, 100, 10], X, y, dtype, epochs=2, batch=200)
                for threads in (1, 2))
    assert np.array_equal(one, two)


def test_large_layers_at_small_batches(kernel):
    """A layer of >= 2^20 weights copies its panels from batch mr + 1 on, not from 64:
    gradients still match the reference, and the rows of small and large batches agree."""
    compare([1024, 1024, 5], 11)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 1024)).astype(np.float32)
    m = fastmlp.MLP([1024, 1024, 10], seed=1, bias_init=0.1)
    full = m.predict(X)
    for start, stop in [(0, 1), (0, 8), (3, 14), (10, 73)]:
        assert_same_rows(kernel, m.predict(X[start:stop]), full[start:stop])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_weight_panels_follow_every_parameter_change(kernel, dtype):
    """predict keeps the weights in panel layout between calls; every way the parameters
    change (training, set_params, pruning, loading) must show in the next predict."""
    X, y = make_problem("cross_entropy", 200, 70, 10, seed=8)

    def fresh_copy(m):
        twin = fastmlp.MLP([70, 97, 10], seed=99, dtype=dtype)
        twin.set_flat_params(m.get_flat_params())
        return twin.predict(X)

    m = fastmlp.MLP([70, 97, 10], seed=1, dtype=dtype)
    first = m.predict(X)
    m.fit(X, y, epochs=1, batch_size=50, lr=0.1)
    trained = m.predict(X)
    assert not np.array_equal(first, trained)
    np.testing.assert_array_equal(trained, fresh_copy(m))
    m.set_flat_params(np.random.default_rng(0).normal(size=m.get_flat_params().shape))
    np.testing.assert_array_equal(m.predict(X), fresh_copy(m))
    m.prune(0.5)
    np.testing.assert_array_equal(m.predict(X), fresh_copy(m))
    with pytest.raises(ValueError, match="read-only"):
        m._engine.params[0] = 1.0  # writes must go through set_params


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_weight_panels_follow_a_kernel_switch(dtype):
    X, _ = make_problem("cross_entropy", 200, 70, 10, seed=8)
    m = fastmlp.MLP([70, 97, 10], seed=1, dtype=dtype)
    before = _engine.kernel()
    try:
        outs = {}
        for k in _engine.available_kernels():
            _engine.set_kernel(k)
            outs[k] = m.predict(X)
            _engine.set_kernel(k)
            assert_same_rows(k, m.predict(X[:63]), outs[k][:63])  # unpacked path
    finally:
        _engine.set_kernel(before)
    for o in outs.values():
        assert relative_error([o], [outs["generic"]]) <= 1e-5


@pytest.mark.parametrize("batch", [7, 70])
def test_float64_paths_against_torch(kernel, batch):
    """The float64 products of every path against PyTorch's autograd in float64: logits'
    softmax, mean cross-entropy, weight, bias and input gradients of a ReLU MLP whose
    widths and batch are off every tile grid (batch 70: packed panels and X^T)."""
    torch = pytest.importorskip("torch")
    sizes = [37, 70, 33, 10]
    X, y = make_problem("cross_entropy", batch, sizes[0], sizes[-1], seed=batch)
    model = fastmlp.MLP(sizes, activation="relu", dtype="float64", seed=3, bias_init=0.05)
    loss, dW, db, dX = model.loss_and_grad(X, y, return_input_grad=True)
    Ws = [torch.tensor(w, requires_grad=True) for w in model.weights]
    bs = [torch.tensor(b, requires_grad=True) for b in model.biases]
    x = torch.tensor(X, requires_grad=True)
    h = x
    for i, (w, b) in enumerate(zip(Ws, bs)):
        h = h @ w + b
        h = torch.relu(h) if i < len(Ws) - 1 else h
    t_loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(model.predict(X), torch.softmax(h, 1).detach().numpy(),
                               rtol=1e-10, atol=1e-14)
    assert relative_error(dW + db + [dX], [t.grad.numpy() for t in Ws + bs + [x]]) <= 1e-10


def widened(n_out: int) -> int:
    """A width n_out * 2^m above 16 (the widest weight gradient computed transposed)."""
    wide = n_out
    while wide <= 16:
        wide *= 2
    return wide


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_in", [16, 24, 36, 44, 64, 100, 129])
@pytest.mark.parametrize("n_out", [1, 4, 5, 10, 12])
def test_narrow_weight_gradient_is_the_wide_ones_columns(chain_kernel, dtype, n_in, n_out):
    """A layer of few outputs and many inputs (digits' 100 -> 10) computes its weight
    gradient transposed on the register tiles (dW^T = D^T X: tiles across the inputs, no
    empty lanes). Every element is still the same multiply-add chain over the batch: the
    gradient of an n_out-wide layer is, bitwise, the first columns of that of a layer
    2^m times wider (mse scales its deltas by 1 / outputs, exactly here), whose gradient
    takes the usual order. Inputs hit every panel tail (none, one vector, masked), the
    copied panel (rows 256 bytes apart: 64 floats, 32 or 64 doubles), and batches the
    small path, the packed one and two k-blocks (300)."""
    wide = widened(n_out)
    rng = np.random.default_rng(n_in * 100 + n_out)
    m_wide = fastmlp.MLP([n_in, wide], loss="mse", seed=2, dtype=dtype, bias_init=0.1)
    m_narrow = fastmlp.MLP([n_in, n_out], loss="mse", seed=2, dtype=dtype)
    m_narrow.set_params([m_wide.weights[0][:, :n_out]], [m_wide.biases[0][:n_out]])
    for batch in (7, 70, 300):
        X = rng.normal(size=(batch, n_in)).astype(dtype)
        t = rng.normal(size=(batch, wide)).astype(dtype)
        g_wide, g_narrow = m_wide.gradients(X, t), m_narrow.gradients(X, t[:, :n_out])
        factor = wide // n_out
        np.testing.assert_array_equal(g_narrow["weights"][0],
                                      g_wide["weights"][0][:, :n_out] * factor)
        np.testing.assert_array_equal(g_narrow["biases"][0],
                                      g_wide["biases"][0][:n_out] * factor)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrow_weight_gradient_on_threads_and_against_the_reference(kernel, dtype):
    """The transposed weight gradient of a wide-input 10-unit layer (1000 -> 10: panels
    split over two threads, 100 rows: enough multiply-adds for both) matches the NumPy
    reference, and training gives the same bits on one thread and on two."""
    compare([30, 1000, 10], 100, dtype=dtype)
    compare([30, 256, 7], 90, loss="mse", dtype=dtype)  # copied panels (1 KiB rows)
    X, y = make_problem("cross_entropy", 200, 30, 10, seed=8)
    one, two = (trained_on(threads, [30, 1000, 10], X, y, dtype, epochs=1, batch=100)
                for threads in (1, 2))
    assert np.array_equal(one, two)
