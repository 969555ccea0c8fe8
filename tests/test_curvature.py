"""Curvature products and their uses: Hessian-, Gauss-Newton- and Jacobian-vector
products of the engine and the NumPy reference against float64 central differences, against
each other and against PyTorch; the dense Hessian; eigenvalues, condition number, spectral
density and per-layer blocks against numpy.linalg; the sharpness callback."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import curvature
from fastmlp.reference import curvature as ref_curvature

from conftest import ACTIVATIONS, IMPLEMENTATIONS, LOSSES, make_problem, relative_error

EPS = 1e-6
N_IN, HIDDEN, K = 3, 4, 3
PENALTIES = {"none": {}, "l2_l1": {"l2": 0.1, "l1": 0.05, "penalize_biases": True},
             "activity": {"activity_l1": 0.1, "activity_l2": 0.2, "l2": 0.05}}


def make_model(impl, act, loss, depth, seed, dtype="float64", **kw):
    # bias_init > 0 keeps ReLU pre-activations off their kink (see test_gradients)
    return impl([N_IN] + [HIDDEN] * depth + [K], activation=act, loss=loss,
                init="xavier_normal", bias_init=0.1, dtype=dtype, seed=seed, **kw)


def central_hvp(model, X, y, v, **options):
    """(g(theta + eps v) - g(theta - eps v)) / (2 eps) of the flat gradient."""
    theta = model.get_flat_params()
    model.set_flat_params(theta + EPS * v)
    plus = model.gradients(X, y, **options)["flat"]
    model.set_flat_params(theta - EPS * v)
    minus = model.gradients(X, y, **options)["flat"]
    model.set_flat_params(theta)
    return (plus - minus) / (2 * EPS)


# activation x loss x depth, the penalties taking turns
GRID = [(act, loss, depth, list(PENALTIES)[i % len(PENALTIES)]) for i, (act, loss, depth)
        in enumerate(itertools.product(ACTIVATIONS, LOSSES, [0, 1, 2]))]


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("act,loss,depth,pen", GRID)
def test_hvp_matches_central_differences_of_the_gradient(name, act, loss, depth, pen):
    seed = zlib.crc32(repr((act, loss, depth, pen)).encode())
    X, y = make_problem(loss, 7, N_IN, K, seed=seed)
    model = make_model(IMPLEMENTATIONS[name], act, loss, depth, seed)
    v = np.random.default_rng(seed).normal(size=model.get_flat_params().size)
    hv = model.hvp(X, y, v, **PENALTIES[pen])
    assert hv.shape == v.shape and hv.dtype == np.float64
    assert relative_error([hv], [central_hvp(model, X, y, v, **PENALTIES[pen])]) <= 1e-6


def make_bn_model(impl, bn, training, act="tanh", loss="cross_entropy", sizes=None,
                  dtype="float64", seed=5, dropout=0.3):
    """A batch-norm net with dropout (the training step's masks, or classic scaling) whose
    gamma, beta and running statistics are far from their initial 1, 0, 0, 1."""
    model = impl(sizes or [N_IN, HIDDEN, HIDDEN, K], activation=act, loss=loss,
                 init="xavier_normal", bias_init=0.1, dtype=dtype, seed=seed, batch_norm=bn,
                 dropout=dropout, dropout_mode="inverted" if training else "classic")
    rng = np.random.default_rng(seed)
    model.set_batch_norm_state([{"gamma": rng.normal(size=s["gamma"].size),
                                 "beta": rng.normal(size=s["gamma"].size),
                                 "running_mean": rng.normal(size=s["gamma"].size),
                                 "running_var": rng.random(s["gamma"].size) + 0.5}
                                for s in model.batch_norm_state()])
    return model


BN_GRID = list(itertools.product(["before", "after"], [False, True]))


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("bn,training", BN_GRID)
def test_batch_norm_hvp_matches_central_differences(name, bn, training, act):
    """Through the batch statistics (training: R{mean}, R{var}) or the running ones, with
    the step's dropout masks (training) or classic dropout, and penalties."""
    X, y = make_problem("cross_entropy", 9, N_IN, K, seed=5)
    model = make_bn_model(IMPLEMENTATIONS[name], bn, training, act)
    v = np.random.default_rng(0).normal(size=model.get_flat_params().size)
    options = {"training": training, "step": 3, "l2": 0.01, "l1": 0.02, "activity_l2": 0.1}
    hv = model.hvp(X, y, v, **options)
    assert relative_error([hv], [central_hvp(model, X, y, v, **options)]) <= 1e-6


@pytest.mark.parametrize("bn,training", BN_GRID)
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_batch_norm_engine_matches_reference(bn, training, dtype, tol):
    """520 rows: two engine blocks in inference mode, one (all rows: the batch statistics)
    in training mode; sample weights, penalties, dropout; odd widths."""
    X, y = make_problem("cross_entropy", 520, 20, 10, seed=4)
    sizes = [20, 41, 17, 10]
    engine = make_bn_model(fastmlp.MLP, bn, training, sizes=sizes, dtype=dtype, seed=4)
    ref = make_bn_model(fastmlp.reference.MLP, bn, training, sizes=sizes, dtype=dtype, seed=4)
    ref.set_flat_params(engine.get_flat_params())
    rng = np.random.default_rng(0)
    v, w = rng.normal(size=engine.get_flat_params().size), rng.random(520)
    options = {"training": training, "step": 7, "sample_weight": w, "l2": 0.01,
               "activity_l2": 0.1}
    for method in ("hvp", "gnvp"):
        a, b = getattr(engine, method)(X, y, v, **options), getattr(ref, method)(X, y, v, **options)
        assert a.dtype == np.dtype(dtype)
        assert relative_error([a], [b]) <= tol, method
    vx = rng.normal(size=X.shape).astype(dtype)
    a = engine.jvp(X, v, vx, training=training, step=7)
    assert relative_error([a], [ref.jvp(X, v, vx, training=training, step=7)]) <= tol


@pytest.mark.parametrize("bn", ["before", "after"])
def test_batch_norm_training_products_are_consistent(bn):
    """Training mode: v^T H w = w^T H v; with mse (H_L = 2/(n K) I) G = 2/(n K) J^T J,
    J assembled from training-mode jvp columns; jvp in inference mode against central
    differences of predict_logits (the running statistics)."""
    X, y = make_problem("mse", 8, N_IN, K, seed=3)
    model = make_bn_model(fastmlp.MLP, bn, True, "sigmoid", "mse", seed=3)
    P = model.get_flat_params().size
    rng = np.random.default_rng(1)
    v, w = rng.normal(size=P), rng.normal(size=P)
    options = {"training": True, "step": 2, "l2": 0.01, "activity_l2": 0.1}
    vhw = v @ model.hvp(X, y, w, **options)
    assert abs(vhw - w @ model.hvp(X, y, v, **options)) <= 1e-12 * abs(vhw)
    J = np.stack([model.jvp(X, e, training=True, step=2).ravel() for e in np.eye(P)], axis=1)
    G = model.hessian(X, y, gauss_newton=True, training=True, step=2)
    assert relative_error([G], [2 / J.shape[0] * J.T @ J]) <= 1e-12
    vx = rng.normal(size=X.shape)
    assert relative_error([model.jvp(X, v, vx)], [central_jvp(model, X, v, vx)]) <= 1e-6


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_gauss_newton_is_jt_hl_j_and_positive_semidefinite(act, loss):
    """G from gnvp equals J^T H_L J assembled from jvp columns and the loss Hessian."""
    X, y = make_problem(loss, 6, N_IN, K, seed=11)
    model = make_model(fastmlp.MLP, act, loss, 1, 11)
    P = model.get_flat_params().size
    J = np.stack([model.jvp(X, e).ravel() for e in np.eye(P)], axis=1)  # (n K, P)
    Z = model.predict_logits(X)
    labels, dense = model._targets(y, len(X))
    HL = np.stack([ref_curvature.loss_hessian_product(loss, Z, e.reshape(Z.shape), labels,
                                                      dense).ravel()
                   for e in np.eye(Z.size)], axis=1)
    G = model.hessian(X, y, gauss_newton=True)
    assert relative_error([G], [J.T @ HL @ J]) <= 1e-12
    assert np.linalg.eigvalsh(G).min() >= -1e-12 * max(1.0, np.abs(G).max())


def central_jvp(model, X, v, vx):
    """The outputs' directional derivative along (v, vx) by central differences (inference
    mode); the model's parameters are left as they were."""
    theta = model.get_flat_params()
    model.set_flat_params(theta + EPS * v)
    plus = model.predict_logits(X + EPS * vx)
    model.set_flat_params(theta - EPS * v)
    minus = model.predict_logits(X - EPS * vx)
    model.set_flat_params(theta)
    return (plus - minus) / (2 * EPS)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_jvp_matches_central_differences(act):
    X, _ = make_problem("mse", 5, N_IN, K, seed=2)
    model = make_model(fastmlp.MLP, act, "mse", 2, 2, dropout=0.2, dropout_mode="classic")
    rng = np.random.default_rng(1)
    v, vx = rng.normal(size=model.get_flat_params().size), rng.normal(size=X.shape)
    assert relative_error([model.jvp(X, v, vx)], [central_jvp(model, X, v, vx)]) <= 1e-6
    assert relative_error([model.jvp(X, v_inputs=vx) + model.jvp(X, v)],
                          [model.jvp(X, v, vx)]) <= 1e-12


@pytest.mark.parametrize("dtype,tol,loss", [("float64", 1e-10, loss) for loss in LOSSES] +
                         [("float32", 1e-4, "cross_entropy"), ("float32", 1e-4, "mse")])
def test_engine_matches_reference_over_blocks(dtype, tol, loss):
    """600 rows: two engine blocks; sample weights, penalties and classic dropout; widths
    past the float32 kernels' tile sizes."""
    X, y = make_problem(loss, 600, 70, 10, seed=4)
    kw = dict(activation=["tanh", "sigmoid"], loss=loss, dtype=dtype, seed=4,
              init="xavier_normal", dropout=0.1, dropout_mode="classic")
    sizes = [70, 66, 33, 10]
    engine, ref = fastmlp.MLP(sizes, **kw), fastmlp.reference.MLP(sizes, **kw)
    rng = np.random.default_rng(0)
    v, w = rng.normal(size=engine.get_flat_params().size), rng.random(600)
    options = {"sample_weight": w, "l2": 0.01, "activity_l2": 0.1}
    for method in ("hvp", "gnvp"):
        a, b = getattr(engine, method)(X, y, v, **options), getattr(ref, method)(X, y, v, **options)
        assert a.dtype == np.dtype(dtype)
        assert relative_error([a], [b]) <= tol, method
    vx = rng.normal(size=X.shape)
    assert relative_error([engine.jvp(X, v, vx)], [ref.jvp(X, v, vx)]) <= tol


@pytest.mark.parametrize("bn,training", [(None, False), ("before", True), ("after", True)])
def test_results_do_not_depend_on_the_thread_count(bn, training):
    X, y = make_problem("cross_entropy", 700, 70, 10, seed=6)
    model = fastmlp.MLP([70, 128, 64, 10], activation="relu", dtype="float32", seed=6,
                        batch_norm=bn, dropout=0.2 if training else 0.0)
    v = np.random.default_rng(0).normal(size=model.get_flat_params().size).astype(np.float32)
    options = {"training": training, "step": 1}
    results = []
    for threads in (1, 2):
        model.threads = threads
        results.append((model.hvp(X, y, v, **options), model.gnvp(X, y, v, **options),
                        model.jvp(X, v, **options)))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_hessian_is_symmetric_and_made_of_hvps(name):
    X, y = make_problem("cross_entropy", 20, N_IN, K, seed=8)
    model = make_model(IMPLEMENTATIONS[name], "sigmoid", "cross_entropy", 2, 8)
    H = model.hessian(X, y, l2=0.01)
    P = H.shape[0]
    assert H.shape == (P, P) == (model.get_flat_params().size,) * 2
    assert np.array_equal(H, H.T)
    cols = np.stack([model.hvp(X, y, e, l2=0.01) for e in np.eye(P)], axis=1)
    assert relative_error([H], [cols]) <= 1e-12
    rng = np.random.default_rng(0)
    v, w = rng.normal(size=P), rng.normal(size=P)
    vHw = v @ model.hvp(X, y, w)
    assert abs(vHw - w @ model.hvp(X, y, v)) <= 1e-12 * abs(vHw)


def small_problem():
    X, y = make_problem("cross_entropy", 40, 4, 3, seed=1)
    model = fastmlp.MLP([4, 6, 3], activation="tanh", dtype="float64", seed=0)
    return model, X, y


@pytest.mark.parametrize("gauss_newton", [False, True])
def test_eigenvalues_match_the_dense_hessian(gauss_newton):
    model, X, y = small_problem()
    exact = np.linalg.eigvalsh(model.hessian(X, y, gauss_newton=gauss_newton))
    top, vecs = curvature.eigenvalues(model, X, y, 3, gauss_newton=gauss_newton,
                                      return_vectors=True)
    np.testing.assert_allclose(top, exact[::-1][:3], rtol=1e-8, atol=1e-10)
    for lam, u in zip(top, vecs.T):
        hu = model.gnvp(X, y, u) if gauss_newton else model.hvp(X, y, u)
        np.testing.assert_allclose(hu, lam * u, atol=1e-8)
    if not gauss_newton:  # (G's bottom is a cluster of zeros, slow for Lanczos)
        bottom = curvature.eigenvalues(model, X, y, 2, "smallest")
        np.testing.assert_allclose(bottom, exact[:2], rtol=1e-6, atol=1e-8)


def test_condition_number():
    model, X, y = small_problem()
    exact = np.linalg.eigvalsh(model.hessian(X, y, l2=0.5, penalize_biases=True))
    assert exact[0] > 0  # weight decay makes it positive definite here
    c = curvature.condition_number(model, X, y, l2=0.5, penalize_biases=True)
    np.testing.assert_allclose([c["lambda_max"], c["lambda_min"], c["condition"]],
                               [exact[-1], exact[0], exact[-1] / exact[0]], rtol=1e-6)
    # without it the net sits in a non-convex region
    assert np.linalg.eigvalsh(model.hessian(X, y))[0] < 0
    assert curvature.condition_number(model, X, y)["condition"] == np.inf


def test_block_eigenvalues_are_those_of_the_diagonal_blocks():
    model, X, y = small_problem()
    H = model.hessian(X, y)
    slices = curvature.layer_slices(model)
    assert [s.stop - s.start for s in slices] == [4 * 6 + 6, 6 * 3 + 3]
    for got, part in zip(curvature.block_eigenvalues(model, X, y, 2), slices):
        np.testing.assert_allclose(got, np.linalg.eigvalsh(H[part, part])[::-1][:2],
                                   rtol=1e-8)


def test_spectral_density_with_full_lanczos_recovers_the_spectrum():
    """With as many Lanczos steps as parameters the nodes are H's (distinct) eigenvalues,
    the extreme ones included, and the weights sum to 1 per probe; the smoothed density
    integrates to 1."""
    model, X, y = small_problem()
    exact = np.linalg.eigvalsh(model.hessian(X, y))
    out = curvature.spectral_density(model, X, y, n_probes=2, steps=len(exact), seed=3)
    tol = 1e-6 * np.abs(exact).max()
    for nodes, weights in zip(out["nodes"], out["weights"]):
        assert abs(weights.sum() - 1) <= 1e-10
        assert np.abs(nodes[:, None] - exact[None, :]).min(axis=1).max() <= tol
        np.testing.assert_allclose(nodes[[0, -1]], exact[[0, -1]], atol=tol)
        assert len(nodes) >= 0.8 * len(exact)  # (repeated eigenvalues appear once)
    assert abs(np.trapezoid(out["density"], out["grid"]) - 1) <= 1e-3
    assert out["density"].min() >= 0


def test_sharpness_callback_records_top_eigenvalue_and_two_over_lr():
    X, y = make_problem("cross_entropy", 64, 4, 3, seed=2)
    model = fastmlp.MLP([4, 8, 3], activation="tanh", dtype="float64", seed=1)
    cb = curvature.SharpnessCallback(X, y, every=2, tol=0)
    model.fit(X, y, epochs=4, batch_size=64, lr=0.3, shuffle=False, callbacks=[cb])
    assert cb.epoch == [2, 4]
    assert cb.threshold == [2 / 0.3, 2 / 0.3]
    top = np.linalg.eigvalsh(model.hessian(X, y))[-1]
    assert cb.sharpness[-1] == pytest.approx(top, rel=1e-8)


def test_input_checks():
    model, X, y = small_problem()
    P = model.get_flat_params().size
    with pytest.raises(ValueError, match="v must have shape"):
        model.hvp(X, y, np.zeros(P + 1))
    with pytest.raises(ValueError, match="v_inputs must have shape"):
        model.jvp(X, v_inputs=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="k must be smaller"):
        curvature.eigenvalues(model, X, y, P)
    with pytest.raises(ValueError, match="which"):
        curvature.eigenvalues(model, X, y, 1, "middle")


def test_hvp_agrees_with_torch_func():
    torch = pytest.importorskip("torch")
    from torch.func import grad, vjp

    X, y = make_problem("cross_entropy", 30, 5, 4, seed=9)
    model = fastmlp.MLP([5, 7, 6, 4], activation="tanh", dtype="float64", seed=9)
    Ws, bs = model.get_params()
    params = [torch.tensor(a) for pair in zip(Ws, bs) for a in pair]
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def objective(*ps):
        h = Xt
        for l in range(0, len(ps), 2):
            h = h @ ps[l] + ps[l + 1]
            if l + 2 < len(ps):
                h = torch.tanh(h)
        l2 = sum((ps[l] ** 2).sum() for l in range(0, len(ps), 2))
        return torch.nn.functional.cross_entropy(h, yt) + 0.5 * 0.01 * l2

    v = np.random.default_rng(0).normal(size=model.get_flat_params().size)
    tangents, off = [], 0
    for p in params:
        tangents.append(torch.tensor(v[off : off + p.numel()]).reshape(p.shape))
        off += p.numel()
    # reverse over reverse ("double backward"): the vjp of the gradient is H^T v = H v
    _, hvp_fn = vjp(grad(objective, argnums=tuple(range(len(params)))), *params)
    hv = hvp_fn(tuple(tangents))
    expected = np.concatenate([t.numpy().ravel() for t in hv])
    assert relative_error([model.hvp(X, y, v, l2=0.01)], [expected]) <= 1e-12


@pytest.mark.parametrize("bn", ["before", "after"])
def test_batch_norm_training_hvp_agrees_with_torch_func(bn):
    """Through torch.nn.functional.batch_norm's batch statistics (double backward)."""
    torch = pytest.importorskip("torch")
    from torch.func import grad, vjp

    X, y = make_problem("cross_entropy", 30, 5, 4, seed=9)
    sizes = [5, 7, 6, 4]
    model = make_bn_model(fastmlp.MLP, bn, True, sizes=sizes, seed=9, dropout=0.0)
    flat = model.get_flat_params()
    shapes = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes += [(n_in, n_out), (n_out,)] + ([(n_out,), (n_out,)] if l < 2 else [])
    params, off = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        params.append(torch.tensor(flat[off : off + size]).reshape(shape))
        off += size
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def norm(h, gamma, beta):
        return torch.nn.functional.batch_norm(h, None, None, gamma, beta, training=True,
                                              eps=model._bn_eps)

    def objective(*ps):
        h = Xt
        for l in range(2):
            W, b, gamma, beta = ps[4 * l : 4 * l + 4]
            h = h @ W + b
            h = torch.tanh(norm(h, gamma, beta)) if bn == "before" else \
                norm(torch.tanh(h), gamma, beta)
        return torch.nn.functional.cross_entropy(h @ ps[8] + ps[9], yt)

    v = np.random.default_rng(0).normal(size=flat.size)
    tangents, off = [], 0
    for p in params:
        tangents.append(torch.tensor(v[off : off + p.numel()]).reshape(p.shape))
        off += p.numel()
    _, hvp_fn = vjp(grad(objective, argnums=tuple(range(len(params)))), *params)
    expected = np.concatenate([t.numpy().ravel() for t in hvp_fn(tuple(tangents))])
    assert relative_error([model.hvp(X, y, v, training=True)], [expected]) <= 1e-10
