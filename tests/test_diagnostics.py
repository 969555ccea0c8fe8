"""model.activations (fastmlp.model.layer_outputs) and fastmlp.diagnostics: against the
reference's own forward pass and predict, and on constructed nets whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import _engine, diagnostics
from fastmlp.reference import functional as F

from conftest import IMPLEMENTATIONS, LOSSES, kernel_has_tiles, make_problem

K = {"cross_entropy": 3, "binary_cross_entropy": 2, "mse": 2, "hinge": 1, "multi_hinge": 3,
     "poisson": 2}


def _with_bn_stats(model, rng):
    """Give every batch-norm layer non-trivial parameters and running statistics."""
    states = [None if s is None else {
        "gamma": rng.uniform(0.5, 2, len(s["gamma"])), "beta": rng.normal(size=len(s["beta"])),
        "running_mean": rng.normal(size=len(s["beta"])),
        "running_var": rng.uniform(0.2, 3, len(s["beta"]))} for s in model.batch_norm_state()]
    model.set_batch_norm_state(states)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bn, dropout_mode", [(False, "inverted"), ("before", "classic"),
                                              ("after", "inverted"), ("after", "classic")])
def test_activations_equal_the_reference_forward_and_predict(loss, bn, dropout_mode):
    X, _ = make_problem(loss, 17, 5, K[loss], seed=1)
    kw = dict(activation=["tanh", "relu"], loss=loss, dtype="float64", seed=3, dropout=0.3,
              input_dropout=0.2, dropout_mode=dropout_mode, batch_norm=bn)
    model = fastmlp.MLP([5, 6, 4, K[loss]], **kw)
    _with_bn_stats(model, np.random.default_rng(0))
    ref = fastmlp.reference.MLP([5, 6, 4, K[loss]], **kw)
    ref.set_flat_params(model.get_flat_params())
    ref.set_batch_norm_state(model.batch_norm_state())
    acts = model.activations(X)
    assert [a.activation for a in acts] == ["tanh", "relu", model.output_activation]
    logits, cache = ref._forward(X, False, 0)
    for layer, rec in zip(acts[:-1], cache["layers"]):
        np.testing.assert_allclose(layer.post, rec["a"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.output, rec["out"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.post, F.activation(layer.activation, layer.pre, 0.01),
                                   rtol=1e-15)
    np.testing.assert_allclose(acts[-1].pre, logits, rtol=1e-12, atol=1e-14)
    # the engine's own forward pass
    np.testing.assert_allclose(acts[-1].pre, model.predict_logits(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(acts[-1].post, model.predict(X), rtol=1e-10, atol=1e-12)
    if bn != "before":  # the first layer's pre-activation, by hand
        W, b = model.weights[0], model.biases[0]
        scale = 0.8 if dropout_mode == "classic" else 1.0
        np.testing.assert_allclose(acts[0].pre, (X * scale) @ W + b, rtol=1e-12)


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_activations_float32_last_layer_is_predict(name):
    X, y = make_problem("cross_entropy", 40, 6, 3, seed=2)
    model = IMPLEMENTATIONS[name]([6, 8, 8, 3], activation="sigmoid", seed=4, batch_norm=True)
    model.fit(X, y, epochs=2, batch_size=8, lr=0.1)
    acts = model.activations(X)
    assert all(a.post.dtype == np.float32 for a in acts)
    assert [a.post.shape for a in acts] == [(40, 8), (40, 8), (40, 3)]
    if name == "reference":  # the same arithmetic as its predict
        np.testing.assert_array_equal(acts[-1].post, model.predict(X))
    else:
        np.testing.assert_allclose(acts[-1].post, model.predict(X), rtol=1e-5, atol=1e-6)


def test_activations_check_their_input():
    model = fastmlp.MLP([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="features"):
        model.activations(np.zeros((5, 4)))
    with pytest.raises(ValueError):
        model.activations(np.full((2, 3), np.nan))


def _constant_net(activations, biases, seed=0):
    """A net whose hidden units compute constants: zero weights, the given biases."""
    sizes = [4] + [len(b) for b in biases] + [2]
    model = fastmlp.MLP(sizes, activation=activations, loss="mse", dtype="float64", seed=seed)
    weights = [np.zeros((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    model.set_params(weights, [np.asarray(b, np.float64) for b in biases] + [np.zeros(2)])
    return model


def test_dead_units_relu_bias_minus_100_is_all_dead():
    X = np.random.default_rng(0).normal(size=(200, 4))
    model = fastmlp.MLP([4, 10, 6, 2], activation=["relu", "relu"], seed=0)
    weights, biases = model.get_params()
    biases[0][:] = -100.0  # |x @ W| stays far below 100 for these inputs
    biases[1][:] = [1, -1, 1, -1, 0, 2]  # the layer sees zeros: its pre-activation is b
    model.set_params(weights, biases)
    assert diagnostics.dead_units(model, X) == [1.0, 0.5]  # (a pre-activation of 0 is dead)
    assert diagnostics.activation_sparsity(model, X) == [1.0, 0.5]


def test_dead_units_counts_a_unit_alive_on_one_sample():
    model = fastmlp.MLP([1, 2, 1], activation="relu", loss="mse", dtype="float64", seed=0)
    model.set_params([np.array([[1.0, -1.0]]), np.ones((2, 1))], [np.zeros(2), np.zeros(1)])
    X = np.array([[-3.0], [-2.0], [0.5]])  # unit 0 fires on the last sample, unit 1 on two
    assert diagnostics.dead_units(model, X) == [0.0]
    assert diagnostics.dead_units(model, X[:2]) == [0.5]
    assert diagnostics.activation_sparsity(model, X) == [pytest.approx(0.5)]


def test_dead_units_is_none_for_other_activations():
    model = _constant_net(["tanh", "leaky_relu", "relu"], [[-5.0], [-5.0], [-5.0]])
    assert diagnostics.dead_units(model, np.zeros((3, 4))) == [None, None, 1.0]


def test_saturation_by_output_and_by_threshold():
    X = np.random.default_rng(1).normal(size=(50, 4))
    model = _constant_net(["tanh", "sigmoid", "relu"],
                          [[0.0, 5.0, -5.0, 0.5], [100.0, 0.0, -3.0, -6.0], [1.0]])
    # tanh(5) = 0.99991 and sigmoid(-6) = 0.0025 lie within 0.01 of a bound; sigmoid(-3) not
    assert diagnostics.saturation(model, X) == [0.5, 0.5, None]
    assert diagnostics.saturation(model, X, eps=0.1) == [0.5, 0.75, None]  # sigmoid(-3)=0.047
    assert diagnostics.saturation(model, X, threshold=1.0) == [0.5, 0.75, None]
    assert diagnostics.saturation(model, X, threshold=10.0) == [0.0, 0.25, None]
    with pytest.raises(ValueError, match="not both"):
        diagnostics.saturation(model, X, eps=0.1, threshold=2.0)
    with pytest.raises(ValueError, match="threshold"):
        diagnostics.saturation(model, X, threshold=-1.0)
    with pytest.raises(ValueError, match="eps"):
        diagnostics.saturation(model, X, eps=-0.5)


def test_activation_sparsity_tolerance():
    model = _constant_net(["identity"], [[0.0, 1e-3, -1e-3, 1.0]])
    X = np.zeros((5, 4))
    assert diagnostics.activation_sparsity(model, X) == [0.25]
    assert diagnostics.activation_sparsity(model, X, tol=1e-2) == [0.75]
    with pytest.raises(ValueError, match="tol"):
        diagnostics.activation_sparsity(model, X, tol=-1.0)


def test_gradient_flow_is_the_reference_weight_gradient_norm():
    X, y = make_problem("cross_entropy", 30, 5, 3, seed=5)
    model = fastmlp.MLP([5, 7, 6, 3], activation="tanh", dtype="float64", seed=6)
    ref = fastmlp.reference.MLP([5, 7, 6, 3], activation="tanh", dtype="float64", seed=6)
    ref.set_flat_params(model.get_flat_params())
    grads = ref.gradients(X, y, l2=0.1)["weights"]
    expect = [np.sqrt(np.sum(g * g)) for g in grads]
    np.testing.assert_allclose(diagnostics.gradient_flow(model, X, y, l2=0.1), expect,
                               rtol=1e-10)
    without = diagnostics.gradient_flow(model, X, y)
    assert without != pytest.approx(expect, rel=1e-6)  # the penalty reached the measure


def test_recorder_as_epoch_and_step_callback():
    X, y = make_problem("cross_entropy", 64, 5, 3, seed=7)
    model = fastmlp.MLP([5, 8, 3], activation="relu", seed=8)
    dead = diagnostics.Recorder(diagnostics.dead_units, X)
    flow = diagnostics.Recorder(diagnostics.gradient_flow, X, y)
    history = model.fit(X, y, epochs=3, batch_size=16, lr=0.05, callbacks=[dead],
                        step_callbacks=[flow], step_every=3)
    assert dead.epochs == [1, 2, 3] and dead.steps == [4, 8, 12] and len(dead.values) == 3
    assert flow.steps == [3, 6, 9, 12] and flow.epochs == [0, 1, 2, 2]
    assert dead.values[-1] == diagnostics.dead_units(model, X)
    np.testing.assert_allclose(flow.values[-1], diagnostics.gradient_flow(model, X, y))
    assert flow.as_array().shape == (4, 2) and np.isfinite(flow.as_array()).all()
    assert len(history) == 3
    sat = diagnostics.Recorder(diagnostics.saturation, X)
    sat(model, history)
    assert np.isnan(sat.as_array()).all() and sat.as_array().shape == (1, 1)
    with pytest.raises(TypeError, match="callable"):
        diagnostics.Recorder("dead_units")


# -- per-step gradient norms: fit(record="step", record_grad_norms=True) ---------------------
def _step_norm_fit(impl, **fit_options):
    X, y = make_problem("cross_entropy", 96, 6, 4, seed=9)
    model = impl([6, 32, 16, 4], activation="tanh", dtype="float64", seed=10)
    model.prune(0.2)
    return model.fit(X, y, epochs=2, batch_size=20, lr=0.1, record="step",
                     record_grad_norms=True, **fit_options)


def test_step_grad_norms_engine_equal_reference():
    options = dict(l2=0.01, clip_grad_norm=0.5)  # penalty, mask and clipping all count
    h = _step_norm_fit(fastmlp.MLP, **options)
    ref = _step_norm_fit(fastmlp.reference.MLP, **options)
    assert len(h.step_grad_norm) == h.steps == 10 and len(h.step_grad_norm[0]) == 3
    np.testing.assert_allclose(h.step_grad_norm, ref.step_grad_norm, rtol=1e-10)
    assert max(sum(v * v for v in row) for row in h.step_grad_norm) <= 0.25 * (1 + 1e-9)
    # each epoch's last step is the epoch's grad_norm
    np.testing.assert_allclose([h.step_grad_norm[4], h.step_grad_norm[9]], h.grad_norm,
                               rtol=1e-12)


def test_step_grad_norms_do_not_depend_on_threads_or_panel_layout(kernel):
    """float32 at batch 5 in calls of >= 32 steps: the engine keeps the 64- and 96-wide
    layers' gradients in panel layout (tests/test_layout.py) where the kernel has tiles."""
    X, y = make_problem("cross_entropy", 300, 20, 7, seed=15)
    runs = []
    for threads, layout in ((1, True), (2, True), (2, False)):
        model = fastmlp.MLP([20, 64, 96, 7], seed=16, threads=threads)
        model._engine.panel_layout = layout
        before = _engine.panel_layout_calls()
        h = model.fit(X, y, epochs=2, batch_size=5, lr=0.05, record="step",
                      record_grad_norms=True)
        runs.append((h.step_grad_norm, _engine.panel_layout_calls() - before))
    assert (runs[0][1] > 0) == kernel_has_tiles(kernel) and runs[2][1] == 0
    assert len(runs[0][0]) == 120 and runs[1][0] == runs[0][0] and runs[2][0] == runs[0][0]


def test_recording_step_grad_norms_leaves_training_unchanged():
    X, y = make_problem("cross_entropy", 64, 6, 4, seed=11)
    runs = []
    for record in (False, True):
        model = fastmlp.MLP([6, 32, 4], seed=12)
        h = model.fit(X, y, epochs=2, batch_size=16, lr=0.1, record="step",
                      record_grad_norms=record)
        runs.append((model.get_flat_params(), h))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1].step_grad_norm == [] and len(runs[1][1].step_grad_norm) == 8
    with pytest.raises(ValueError, match="record='step'"):
        fastmlp.MLP([6, 4], seed=0).fit(X, y, record_grad_norms=True)


def test_epoch_grad_norm_survives_a_step_callback_that_takes_gradients():
    X, y = make_problem("cross_entropy", 64, 6, 4, seed=13)
    probe = diagnostics.Recorder(diagnostics.gradient_flow, X[:5] * 10, y[:5])
    norms = []
    for callbacks in ([], [probe]):
        model = fastmlp.MLP([6, 8, 4], seed=14)
        norms.append(model.fit(X, y, epochs=2, batch_size=16, lr=0.1,
                               step_callbacks=callbacks, step_every=4).grad_norm)
    assert probe.steps == [4, 8]  # it ran after each epoch's last step
    assert norms[1] == norms[0]
