"""bias_init: one constant, one per dense layer, and the output layer's prior of the
training targets, applied at the start of the first fit."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp.optim import SGD

TINY = SGD(lr=1e-30)  # a fit that applies the prior and leaves the parameters as they are


def test_scalar_and_per_layer_constants(impl):
    model = impl([3, 4, 5, 2], bias_init=[0.1, -0.2, 0.3], seed=0)
    assert [b.tolist() for b in model.biases] == [[np.float32(0.1)] * 4,
                                                  [np.float32(-0.2)] * 5,
                                                  [np.float32(0.3)] * 2]
    assert model.config()["bias_init"] == [0.1, -0.2, 0.3]
    model = impl([3, 4, 2], bias_init=0.5, seed=0)
    assert all((b == 0.5).all() for b in model.biases)


@pytest.mark.parametrize("value,error,message", [
    ([0.1, 0.2], ValueError, "3 dense layers"),
    (["prior", 0.0, 0.0], ValueError, "only the output layer"),
    ("uniform", ValueError, "'prior'"),
    ([0.1, None, 0.0], TypeError, r"bias_init\[1\] must be a number"),
    (1e300, ValueError, "does not fit in float32"),
])
def test_bad_bias_init_is_refused(impl, value, error, message):
    with pytest.raises(error, match=message):
        impl([3, 4, 5, 2], bias_init=value)


def test_prior_needs_a_loss_with_a_probability_or_mean_output(impl):
    for loss in ("hinge", "multi_hinge"):
        with pytest.raises(ValueError, match="needs a loss with a probability"):
            impl([3, 2], loss=loss, bias_init="prior")


def test_cross_entropy_prior_is_the_log_class_frequency(impl):
    """Zero weights and the prior: predict gives the class frequencies of the training
    labels (an absent class gets 1/(2n)); hidden layers keep bias 0; a second fit does
    not apply it again."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.repeat([0, 1, 3], [20, 15, 5])  # class 2 absent
    model = impl([3, 4, 4], init="zeros", bias_init="prior", dtype="float64", seed=0)
    assert (model.biases[-1] == 0).all()
    model.fit(X, y, epochs=1, optimizer=TINY)
    expected = np.array([20, 15, 1 / 80 * 40, 5]) / 40
    np.testing.assert_allclose(np.exp(model.biases[-1]), expected, rtol=1e-12)
    assert (model.biases[0] == 0).all()
    p = model.predict(X[:2])
    np.testing.assert_allclose(p[0], expected / expected.sum(), rtol=1e-12)
    model.set_params(model.weights, [np.zeros(4), np.zeros(4)])
    model.fit(X, y, epochs=1, optimizer=TINY)
    assert np.abs(model.biases[-1]).max() < 1e-20  # left alone: training_step > 0


def test_prior_uses_sample_weights_and_label_smoothing(impl):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    y = np.repeat([0, 1], [10, 20])
    w = np.where(y == 0, 2.0, 1.0)  # weighted frequencies 20 : 20
    model = impl([2, 2], init="zeros", bias_init="prior", label_smoothing=0.2,
                 dtype="float64", seed=0)
    model.fit(X, y, epochs=1, optimizer=TINY, sample_weight=w)
    np.testing.assert_allclose(np.exp(model.biases[-1]), [0.5, 0.5], rtol=1e-12)
    model = impl([2, 2], init="zeros", bias_init="prior", label_smoothing=0.2,
                 dtype="float64", seed=0)
    model.fit(X, y, epochs=1, optimizer=TINY)  # (1 - 0.2) (1/3, 2/3) + 0.2 / 2
    np.testing.assert_allclose(np.exp(model.biases[-1]), [0.8 / 3 + 0.1, 1.6 / 3 + 0.1],
                               rtol=1e-12)


@pytest.mark.parametrize("loss,transform", [
    ("binary_cross_entropy", lambda b: 1 / (1 + np.exp(-b))),
    ("mse", lambda b: b),
    ("poisson", np.exp),
    ("kl_divergence", np.exp),
])
def test_prior_of_dense_targets_is_their_mean(impl, loss, transform):
    """sigmoid(b), b, exp(b) and softmax(b) of the prior equal the mean target row."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(25, 3))
    t = {"binary_cross_entropy": rng.integers(0, 2, size=(25, 3)).astype(float),
         "mse": rng.normal(size=(25, 3)),
         "poisson": rng.poisson(2.0, size=(25, 3)).astype(float),
         "kl_divergence": rng.dirichlet(np.ones(3), size=25)}[loss]
    t[:, 0] = t[:, 0] if loss != "binary_cross_entropy" else 1.0  # an all-1 column: clipped
    model = impl([3, 5, 3], init="zeros", bias_init=[0.0, "prior"], loss=loss,
                 dtype="float64", seed=0)
    model.fit(X, t, epochs=1, optimizer=TINY)
    mean = t.mean(axis=0)
    if loss == "binary_cross_entropy":
        mean[0] = 1 - 1 / 50
    np.testing.assert_allclose(transform(model.biases[-1]), mean, rtol=1e-12)


def test_prior_survives_save_and_load_before_and_after_training(tmp_path):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(20, 3)), np.repeat([0, 1], [5, 15])
    model = fastmlp.MLP([3, 2], bias_init="prior", init="zeros", dtype="float64", seed=0)
    model.save(tmp_path / "fresh.fmlp")
    fresh = fastmlp.load(tmp_path / "fresh.fmlp")
    assert fresh.config()["bias_init"] == "prior"
    fresh.fit(X, y, epochs=1, optimizer=TINY)
    np.testing.assert_allclose(np.exp(fresh.biases[-1]), [0.25, 0.75], rtol=1e-12)
    fresh.set_params(fresh.weights, [np.zeros(2)])
    fresh.save(tmp_path / "trained.fmlp")
    trained = fastmlp.load(tmp_path / "trained.fmlp")
    trained.fit(X, y, epochs=1, optimizer=TINY)
    assert np.abs(trained.biases[-1]).max() < 1e-20  # trained already: not applied
