"""Learning-rate schedules against their formulas, their use inside fit (per epoch and
per batch), and gradient clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastmlp
from fastmlp import optim, schedules
from fastmlp.clip import clip_grad_norm_, clip_grad_value_

T = np.arange(12)


def test_step_multistep_exponential():
    assert schedules.StepLR(3, gamma=0.5).rates(1.0, T).tolist() == \
        [1.0] * 3 + [0.5] * 3 + [0.25] * 3 + [0.125] * 3
    assert schedules.MultiStepLR([2, 5], gamma=0.1).rates(1.0, T[:7]) == \
        pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert schedules.ExponentialLR(0.9).rates(2.0, T) == pytest.approx(2.0 * 0.9 ** T)
    assert schedules.Constant().rates(0.3, T).tolist() == [0.3] * 12


def test_inverse_scaling_and_robbins_monro():
    s = schedules.InverseScaling(decay=0.5, power=0.75)
    assert s.rates(1.0, T) == pytest.approx(1.0 / (1 + 0.5 * T) ** 0.75)
    assert s.robbins_monro
    assert not schedules.InverseScaling(power=0.5).robbins_monro
    assert not schedules.InverseScaling(power=1.5).robbins_monro


def test_cosine_with_and_without_warmup():
    c = schedules.CosineAnnealing(T_max=10, eta_min=0.1)
    r = c.rates(1.0, T)
    assert r[0] == pytest.approx(1.0)
    assert r[10] == pytest.approx(0.1) and r[11] == pytest.approx(0.1)
    assert r[5] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 2)) / 2)
    w = schedules.CosineAnnealing(T_max=10, warmup=3).rates(1.0, T)
    assert w[:3] == pytest.approx([0.25, 0.5, 0.75])  # linear warm-up
    assert w[3] == pytest.approx(1.0) and w[10] == pytest.approx(0.0)
    assert np.all(np.diff(w[3:11]) < 0)


def test_one_cycle_matches_torch_shape():
    s = schedules.OneCycle(max_lr=1.0, total_steps=100, pct_start=0.3)
    r = s.rates(123.0, np.arange(100))  # lr0 is ignored
    assert r[0] == pytest.approx(1.0 / 25)
    assert r.argmax() == 29 and r[29] == pytest.approx(1.0)
    assert r[-1] == pytest.approx(1.0 / 25 / 1e4)
    assert np.all(np.diff(r[:30]) > 0) and np.all(np.diff(r[29:]) < 0)


def test_reduce_on_plateau():
    s = schedules.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)
    seen = []
    for v in [1.0, 0.9, 0.95, 0.95, 0.95, 0.5, 0.6, 0.6]:
        seen.append(float(s.rates(1.0, [0])[0]))
        s.epoch_end({"val_loss": v})
    assert seen == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    assert s.rates(1.0, [0])[0] == 0.25
    acc = schedules.ReduceLROnPlateau(monitor="val_accuracy", factor=0.1, patience=0)
    acc.epoch_end({"val_accuracy": None, "accuracy": 0.5})  # falls back to training accuracy
    acc.epoch_end({"val_accuracy": None, "accuracy": 0.6})
    assert acc.rates(1.0, [0])[0] == 1.0
    acc.epoch_end({"val_accuracy": None, "accuracy": 0.4})
    assert acc.rates(1.0, [0])[0] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda: schedules.StepLR(0), "step_size must be an integer >= 1"),
        (lambda: schedules.StepLR(2, gamma=-1), "gamma must be > 0"),
        (lambda: schedules.MultiStepLR([5, 2]), "milestones must be increasing"),
        (lambda: schedules.CosineAnnealing(5, warmup=5), "warmup"),
        (lambda: schedules.OneCycle(1.0, 100, pct_start=1.5), "pct_start"),
        (lambda: schedules.ReduceLROnPlateau(factor=2), "factor must be < 1"),
        (lambda: schedules.ReduceLROnPlateau(monitor="f1"), "monitor must be"),
        (lambda: schedules.ExponentialLR(0.9, interval="week"), "interval must be"),
    ],
)
def test_bad_schedules(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize("impl", [fastmlp.MLP, fastmlp.reference.MLP])
def test_fit_uses_the_schedule_per_epoch_and_per_batch(impl):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, size=40)
    h = impl([3, 4, 2], seed=0).fit(X, y, epochs=4, batch_size=10, lr=0.1,
                                    lr_schedule=schedules.StepLR(2, gamma=0.5))
    assert h.lr == pytest.approx([0.1, 0.1, 0.05, 0.05])
    h = impl([3, 4, 2], seed=0).fit(X, y, epochs=2, batch_size=10, optimizer=optim.SGD(lr=1.0),
                                    lr_schedule=schedules.ExponentialLR(0.5, interval="batch"))
    assert h.lr == pytest.approx([0.5**3, 0.5**7])  # last batch of each 4-batch epoch


def test_per_batch_schedule_and_clipping_engine_matches_reference():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 4)) * 3, rng.normal(size=(50, 2))
    models = [impl([4, 6, 2], loss="mse", dtype="float64", seed=1)
              for impl in (fastmlp.MLP, fastmlp.reference.MLP)]
    for m in models:
        m.fit(X, y, epochs=3, batch_size=7, optimizer=optim.SGD(lr=0.05, momentum=0.9),
              lr_schedule=schedules.OneCycle(0.1, total_steps=24), clip_grad_norm=0.5,
              clip_grad_value=0.1)
    for p, q in zip(models[0].weights, models[1].weights):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)


def test_clip_utilities_follow_torch():
    g = [np.array([3.0, 0.0]), np.array([[4.0]])]
    norm = clip_grad_norm_(g, 1.0)
    assert norm == pytest.approx(5.0)
    assert np.sqrt(sum((a**2).sum() for a in g)) == pytest.approx(1.0, rel=1e-6)
    small = [np.array([0.1, 0.2])]
    clip_grad_norm_(small, 1.0)
    assert small[0].tolist() == [0.1, 0.2]  # under the limit: untouched
    v = [np.array([-2.0, 0.5, 3.0])]
    clip_grad_value_(v, 1.0)
    assert v[0].tolist() == [-1.0, 0.5, 1.0]
    with pytest.raises(FloatingPointError, match="non-finite"):
        clip_grad_norm_([np.array([np.inf])], 1.0)
    assert math.isnan(clip_grad_norm_([np.array([np.nan])], 1.0, error_if_nonfinite=False))


def test_clipping_bounds_each_update():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 3)) * 100, rng.normal(size=(8, 1)) * 100
    model = fastmlp.MLP([3, 1], loss="mse", dtype="float64", seed=0)
    before = np.concatenate([model.weights[0].ravel(), model.biases[0]])
    model.fit(X, y, epochs=1, batch_size=8, lr=0.1, clip_grad_norm=2.0)
    after = np.concatenate([model.weights[0].ravel(), model.biases[0]])
    assert np.linalg.norm(after - before) == pytest.approx(0.2, rel=1e-5)  # lr * max_norm
