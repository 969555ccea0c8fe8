"""scipy.sparse input: the engine's first layer multiplies CSR rows (csrc/sparse.c) and never
densifies X.

Sparse and dense X give the same bits: fastmlp.io.csr makes the rows canonical (sorted
column indices, repeated entries summed), so layer 0's forward product sums each output
over the non-zero inputs in the dense kernels' order (the zeros they add change nothing),
and its weight gradient sums over the batch rows in order, as the dense kernels do. The
rows of a thread-count change are split so that each output element is summed by one
thread: 1 and 2 threads agree bit for bit too. All this on every kernel path but "blas"
(conftest.chain_kernel): a BLAS blocks its sums by shape, so there sparse and dense X agree
to rounding (tests/test_blas_path.py).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn import neural_network
from sklearn.datasets import make_classification

import fastmlp
import fastmlp.reference
from fastmlp import _engine, optim
from conftest import kernel_has_tiles, relative_error

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DTYPES = ["float32", "float64"]
N, D, K = 160, 40, 3
KINDS = ["csr", "unsorted", "duplicates", "int64", "csc", "coo"]


def sparse_problem(kind: str = "csr", seed: int = 0):
    """(sparse X, the equal dense X, labels): about 20% non-zeros, row 3 empty, column 5
    without non-zeros; `kind` picks the format or the oddity of its arrays."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(N, D)) * (rng.random((N, D)) < 0.2)
    dense[3] = 0.0
    dense[:, 5] = 0.0
    y = rng.integers(0, K, size=N)
    X = sp.csr_matrix(dense)
    if kind in ("csc", "coo"):
        return X.asformat(kind), dense, y
    if kind == "int64":
        X.indices, X.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
        assert X.indices.dtype == np.int64  # (scipy's constructor would make them int32)
        return X, dense, y
    indices, data = X.indices.copy(), X.data.copy()
    if kind == "unsorted":  # each row's entries reversed
        for i in range(N):
            s, e = X.indptr[i], X.indptr[i + 1]
            indices[s:e], data[s:e] = indices[s:e][::-1].copy(), data[s:e][::-1].copy()
        X = sp.csr_matrix((data, indices, X.indptr.copy()), shape=X.shape)
        assert not X.has_sorted_indices
    elif kind == "duplicates":  # every value stored as two entries of its column
        lengths = np.diff(X.indptr)
        X = sp.csr_matrix((np.repeat(data * 0.5, 2), np.repeat(indices, 2),
                           np.concatenate([[0], np.cumsum(2 * lengths)])), shape=X.shape)
        dense = X.toarray()  # what scipy's sum of the two halves is
        assert not X.has_canonical_format
    return X, dense, y


OPTIMIZERS = [lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
              lambda: optim.Adam(lr=0.01), lambda: optim.RMSprop(lr=0.005)]


def pair(sizes, dtype, **kwargs):
    return [fastmlp.MLP(sizes, seed=1, dtype=dtype, bias_init=0.05, **kwargs)
            for _ in range(2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_training_and_inference_equal_dense_bitwise(chain_kernel, kind, dtype):
    Xs, Xd, y = sparse_problem(kind)
    layout_before = _engine.panel_layout_calls()
    for make in OPTIMIZERS:
        sparse, dense = pair([D, 32, K], dtype)
        # batch 2: 80 steps an epoch, so that calls of >= 32 steps train in the panel
        # layout where the kernel set has one (layer 0's width 32 is a multiple of it)
        hs = sparse.fit(Xs, y, epochs=2, batch_size=2, optimizer=make())
        hd = dense.fit(Xd, y, epochs=2, batch_size=2, optimizer=make())
        np.testing.assert_array_equal(sparse.get_flat_params(), dense.get_flat_params())
        assert hs.loss == hd.loss
    if kernel_has_tiles(chain_kernel) and dtype == "float32":
        assert _engine.panel_layout_calls() > layout_before
    assert not np.array_equal(sparse.get_flat_params(), pair([D, 32, K], dtype)[0]
                              .get_flat_params())  # it did train
    np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(Xd))
    np.testing.assert_array_equal(sparse.predict_logits(Xs), dense.predict_logits(Xd))
    np.testing.assert_array_equal(sparse.predict_labels(Xs), dense.predict_labels(Xd))
    assert sparse.evaluate(Xs, y) == dense.evaluate(Xd, y)
    assert sparse.score(Xs, y) == dense.score(Xd, y)
    gs, gd = sparse.gradients(Xs, y), dense.gradients(Xd, y)
    np.testing.assert_array_equal(gs["flat"], gd["flat"])
    assert gs["loss"] == gd["loss"] and gs["input"] is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net", [
    {"sizes": [D, K]},  # layer 0 is the output layer
    {"sizes": [D, 24, 16, K], "batch_norm": True, "dropout": 0.2},
    {"sizes": [D, 20, K], "batch_norm": "after", "activation": "tanh"},
], ids=["linear", "bn-before-dropout", "bn-after"])
def test_other_networks_equal_dense_bitwise(chain_kernel, net, dtype):
    Xs, Xd, y = sparse_problem("csr", seed=3)
    net = dict(net)
    sparse, dense = pair(net.pop("sizes"), dtype, **net)
    sparse.fit(Xs, y, epochs=3, batch_size=10, optimizer=optim.Adam(lr=0.01), l2=1e-3,
               activity_l2=1e-3, validation_data=(Xs, y))
    dense.fit(Xd, y, epochs=3, batch_size=10, optimizer=optim.Adam(lr=0.01), l2=1e-3,
              activity_l2=1e-3, validation_data=(Xd, y))
    np.testing.assert_array_equal(sparse.get_flat_params(), dense.get_flat_params())
    np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(Xd))


def test_validation_split_of_sparse_rows_equals_dense():
    Xs, Xd, y = sparse_problem("csr", seed=4)
    sparse, dense = pair([D, 16, K], "float64")
    hs = sparse.fit(Xs, y, epochs=2, validation_fraction=0.2)
    hd = dense.fit(Xd, y, epochs=2, validation_fraction=0.2)
    assert hs.val_loss == hd.val_loss
    np.testing.assert_array_equal(sparse.get_flat_params(), dense.get_flat_params())


@pytest.mark.skipif(not _engine.have_openmp(), reason="built without OpenMP: one thread only")
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_bitwise(dtype):
    # large enough that both sparse kernels split their work over the threads
    rng = np.random.default_rng(5)
    X = sp.random(1024, 2000, density=0.025, format="csr", random_state=5)
    y = rng.integers(0, 10, size=1024)
    models = []
    for threads in (1, 2):
        m = fastmlp.MLP([2000, 128, 10], seed=2, dtype=dtype, threads=threads)
        m.adaptive_threads = False
        m.fit(X, y, epochs=2, batch_size=256, optimizer=optim.Adam(lr=0.01))
        models.append(m)
    np.testing.assert_array_equal(models[0].get_flat_params(), models[1].get_flat_params())
    np.testing.assert_array_equal(models[0].predict(X), models[1].predict(X))
    dense = fastmlp.MLP([2000, 128, 10], seed=2, dtype=dtype, threads=2)
    dense.fit(X.toarray(), y, epochs=2, batch_size=256, optimizer=optim.Adam(lr=0.01))
    np.testing.assert_array_equal(models[1].get_flat_params(), dense.get_flat_params())


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kind", ["csr", "duplicates"])
def test_gradients_match_the_reference_in_float64(kind, training):
    Xs, Xd, y = sparse_problem(kind, seed=6)
    kwargs = {"dtype": "float64", "seed": 3, "bias_init": 0.05, "dropout": 0.3,
              "batch_norm": True, "activation": "tanh"}
    eng = fastmlp.MLP([D, 12, 7, K], **kwargs)
    ref = fastmlp.reference.MLP([D, 12, 7, K], **kwargs)
    ge = eng.gradients(Xs, y, training=training, step=4, l2=0.01, activity_l1=0.01)
    gr = ref.gradients(Xs, y, training=training, step=4, l2=0.01, activity_l1=0.01)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=1e-12)
    assert relative_error([ge["flat"]], [gr["flat"]]) <= 1e-10
    assert ge["input"] is None and gr["input"] is None
    # a column without non-zeros: its weights get the L2 term only
    np.testing.assert_allclose(ge["weights"][0][5], 0.01 * eng.weights[0][5], rtol=1e-14)
    assert np.abs(ge["weights"][0] - 0.01 * eng.weights[0]).max() > 0


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")
def test_layer_zero_matches_pytorch_sparse_product():
    torch = pytest.importorskip("torch")
    Xs, Xd, y = sparse_problem("csr", seed=7)
    m = fastmlp.MLP([D, 16, K], dtype="float64", seed=4, bias_init=0.05, activation="tanh")
    (W0, W1), (b0, b1) = m.get_params()
    Xt = torch.sparse_csr_tensor(torch.from_numpy(Xs.indptr.astype(np.int64)),
                                 torch.from_numpy(Xs.indices.astype(np.int64)),
                                 torch.from_numpy(Xs.data), size=Xs.shape,
                                 check_invariants=True)
    w0 = torch.tensor(W0, requires_grad=True)
    b0t = torch.tensor(b0, requires_grad=True)
    h = torch.tanh(Xt @ w0 + b0t)
    logits = h @ torch.from_numpy(W1) + torch.from_numpy(b1)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    g = m.gradients(Xs, y)
    np.testing.assert_allclose(m.predict_logits(Xs), logits.detach().numpy(), rtol=1e-12,
                               atol=1e-12)
    assert g["loss"] == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(g["weights"][0], w0.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g["biases"][0], b0t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_sparse_input_is_never_densified():
    # dense, this X would take 1.6 GB: a fit and a predict must stay far below that
    n, d = 2000, 200_000
    rng = np.random.default_rng(8)
    cols = np.sort(rng.integers(0, d, size=(n, 10)), axis=1).ravel()
    X = sp.csr_matrix((rng.random(10 * n, dtype=np.float32), cols, np.arange(0, 10 * n + 1, 10)),
                      shape=(n, d))
    y = rng.integers(0, 2, size=n)
    m = fastmlp.MLP([d, 8, 2], seed=0)
    tracemalloc.start()
    try:
        m.fit(X, y, epochs=1, batch_size=100, optimizer=optim.Adam(lr=0.01))
        m.predict(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    params = m.get_flat_params().nbytes  # weights, gradients, Adam state, snapshots
    assert peak < 12 * params + 50 * 2**20 < n * d * 4 / 10


@pytest.mark.parametrize("dtype", DTYPES)
def test_estimators_sparse_equal_dense(dtype):
    Xs, Xd, y = sparse_problem("duplicates", seed=9)
    for make, target in [(fastmlp.MLPClassifier, y), (fastmlp.MLPRegressor, Xd[:, 0])]:
        kw = {"hidden_layer_sizes": (9,), "max_iter": 5, "random_state": 0, "dtype": dtype}
        for extra in ({"solver": "lbfgs"}, {"early_stopping": True}, {}):  # adam last
            sparse = make(**kw, **extra).fit(Xs, target)
            dense = make(**kw, **extra).fit(Xd, target)
            np.testing.assert_array_equal(sparse.model_.get_flat_params(),
                                          dense.model_.get_flat_params())
        np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(Xd))
        assert sparse.score(Xs, target) == dense.score(Xd, target)
        if make is fastmlp.MLPClassifier:
            np.testing.assert_array_equal(sparse.predict_proba(Xs), dense.predict_proba(Xd))
            np.testing.assert_array_equal(sparse.predict_log_proba(Xs.tocsc()),
                                          dense.predict_log_proba(Xd))
        sparse.partial_fit(Xs, target)
        dense.partial_fit(Xd, target)
        np.testing.assert_array_equal(sparse.model_.get_flat_params(),
                                      dense.model_.get_flat_params())


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil"])
@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_estimator_methods_agree_with_scikit_learn_on_sparse(kind, fmt):
    """From the same weights, one full-batch SGD step (partial_fit) and every prediction
    method on the same sparse input agree with scikit-learn's estimator."""
    X, y = make_classification(n_samples=120, n_features=30, n_informative=6, n_classes=3,
                               random_state=0)
    X[np.abs(X) < 1.0] = 0.0
    Xs = sp.csr_matrix(X).asformat(fmt)
    kw = {"hidden_layer_sizes": (16,), "solver": "sgd", "momentum": 0.0, "batch_size": 120,
          "shuffle": False, "learning_rate_init": 0.1, "alpha": 1e-3, "random_state": 0}
    first = {"classes": [0, 1, 2]} if kind == "MLPClassifier" else {}
    if kind == "MLPRegressor":
        y = X[:, 0] + 0.5 * X[:, 1]
    sk = getattr(neural_network, kind)(**kw).partial_fit(Xs, y, **first)
    fm = getattr(fastmlp, kind)(**kw, dtype="float64").partial_fit(Xs, y, **first)
    fm.model_.set_params(sk.coefs_, sk.intercepts_)
    methods = ["predict_proba", "predict_log_proba"] if kind == "MLPClassifier" else ["predict"]
    for method in methods:
        np.testing.assert_allclose(getattr(fm, method)(Xs), getattr(sk, method)(Xs),
                                   rtol=1e-10, atol=1e-12)
    if kind == "MLPClassifier":
        np.testing.assert_array_equal(fm.predict(Xs), sk.predict(Xs))
    assert fm.score(Xs, y) == pytest.approx(sk.score(Xs, y), rel=1e-12)
    sk.partial_fit(Xs, y)
    fm.partial_fit(Xs, y)
    assert relative_error(fm.model_.weights + fm.model_.biases,
                          sk.coefs_ + sk.intercepts_) <= 1e-10


def test_scikit_learn_takes_the_same_sparse_input():
    X, y = make_classification(n_samples=120, n_features=30, n_informative=6, n_classes=3,
                               random_state=0)
    X[np.abs(X) < 1.0] = 0.0
    for module in (neural_network, fastmlp):
        est = module.MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, random_state=0)
        est.fit(sp.csr_matrix(X), y)
        assert est.predict_proba(sp.csc_matrix(X)).shape == (120, 3)
        assert est.score(sp.csr_matrix(X), y) > 0.5


def _corrupt(how: str):
    X, _, _ = sparse_problem("csr", seed=10)
    X = X.copy()
    if how == "index out of range":
        X.indices[7] = D
    elif how == "negative index":
        X.indices[7] = -1
    elif how == "indptr decreasing":
        X.indptr[5] = X.indptr[6] + 1
    elif how == "nan":
        X.data[3] = np.nan
    elif how == "inf":
        X.data[3] = np.inf
    elif how == "csc index out of range":
        X = X.tocsc()
        X.indices[2] = N + 5
    elif how == "coo column out of range":
        X = X.tocoo()
        X.col[2] = D + 1
    return X


BAD = {"index out of range": "column indices out of range",
       "negative index": "column indices out of range",
       "indptr decreasing": "indptr is not non-decreasing",
       "nan": "NaN", "inf": "infinity",
       "csc index out of range": "row indices out of range",
       "coo column out of range": "column indices out of range"}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_sparse_input_raises_value_error(how):
    X = _corrupt(how)
    y = np.zeros(N, dtype=int)
    m = fastmlp.MLP([D, 4, K])
    before = m.get_flat_params()
    with pytest.raises(ValueError, match=BAD[how]):
        m.fit(X, y, epochs=1)
    with pytest.raises(ValueError, match=BAD[how]):
        m.predict(X)
    np.testing.assert_array_equal(m.get_flat_params(), before)
    with pytest.raises(ValueError):
        fastmlp.MLPClassifier(max_iter=2).fit(X, y)


def test_the_callers_matrix_is_left_alone():
    X, Xd, y = sparse_problem("unsorted", seed=11)
    indices, data = X.indices.copy(), X.data.copy()
    fastmlp.MLP([D, 4, K]).fit(X, y, epochs=1)
    np.testing.assert_array_equal(X.indices, indices)
    np.testing.assert_array_equal(X.data, data)


@pytest.mark.parametrize("option", [{"input_noise": 0.1}, {"adversarial_eps": 0.01},
                                    {"shift": 1, "image_shape": (5, 8)}])
def test_input_augmentation_needs_dense_input(option):
    Xs, _, y = sparse_problem("csr")
    with pytest.raises(ValueError, match="need dense X"):
        fastmlp.MLP([D, 4, K]).fit(Xs, y, epochs=1, **option)


def test_input_dropout_needs_dense_input():
    Xs, _, y = sparse_problem("csr")
    m = fastmlp.MLP([D, 4, K], input_dropout=0.2)
    for call in (lambda: m.fit(Xs, y), lambda: m.predict(Xs), lambda: m.evaluate(Xs, y)):
        with pytest.raises(ValueError, match="input_dropout needs dense X"):
            call()
    with pytest.raises(ValueError, match="input dropout needs dense X"):
        fastmlp.MLPClassifier(input_dropout=0.2, max_iter=2).fit(Xs, y)


def test_curvature_methods_need_dense_input():
    Xs, _, y = sparse_problem("csr")
    m = fastmlp.MLP([D, 4, K], dtype="float64")
    with pytest.raises(TypeError, match="X is sparse, and this method needs a dense array"):
        m.hvp(Xs, y, np.zeros(m.get_flat_params().size))


def test_sparse_input_rejects_wrong_width_and_empty():
    Xs, _, y = sparse_problem("csr")
    with pytest.raises(ValueError, match="40 features but the network expects 41"):
        fastmlp.MLP([D + 1, 4, K]).predict(Xs)
    with pytest.raises(ValueError, match="empty"):
        fastmlp.MLP([D, 4, K]).predict(Xs[:0])


def test_sparse_x_with_an_input_transform_is_refused():
    X = sp.random(20, 6, density=0.3, format="csr", random_state=0, dtype=np.float32)
    y = np.arange(20) % 2
    model = fastmlp.MLP([6, 4, 2], seed=0, input_scale=0.5, input_shift=0.1)
    for call in (lambda: model.fit(X, y, epochs=1), lambda: model.predict(X)):
        with pytest.raises(ValueError, match="input_scale/input_shift apply to dense X"):
            call()
    np.testing.assert_array_equal(model.predict(X.toarray()).shape, (20, 2))  # dense works
