"""fastmlp.plots: the figures hold the data they are given (Agg backend, no pyplot)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import diagnostics

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fastmlp import plots  # noqa: E402

from conftest import make_problem  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    X, y = make_problem("cross_entropy", 60, 4, 3, seed=0)
    model = fastmlp.MLP([4, 6, 5, 3], activation=["relu", "tanh"], seed=1)
    history = model.fit(X, y, epochs=3, batch_size=20, lr=0.1, record="step",
                        validation_data=(X[:20], y[:20]))
    return model, history, X, y


def _lines(ax):
    return [(np.asarray(l.get_xdata()), np.asarray(l.get_ydata())) for l in ax.get_lines()]


def test_plot_history_draws_train_and_validation(trained, tmp_path):
    _, history, _, _ = trained
    fig = plots.plot_history(history)
    assert isinstance(fig, Figure) and [ax.get_ylabel() for ax in fig.axes] == \
        ["loss", "accuracy", "lr"]
    (x, loss), (_, val) = _lines(fig.axes[0])
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_allclose(loss, history.loss)
    np.testing.assert_allclose(val, history.val_loss)
    assert len(fig.axes[2].get_lines()) == 1  # no validation learning rate
    fig.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = plots.plot_history(history, label="run 2", fig=fig)
    assert again is fig and len(fig.axes[0].get_lines()) == 4
    with pytest.raises(ValueError, match="panels"):
        plots.plot_history(history, ["loss"], fig=fig)
    with pytest.raises(ValueError, match="unknown metric"):
        plots.plot_history(history, ["los"])


def test_plot_history_skips_missing_accuracy():
    X, y = make_problem("mse", 20, 3, 2, seed=2)
    history = fastmlp.MLP([3, 4, 2], loss="mse", seed=0).fit(X, y, epochs=2)
    fig = plots.plot_history(history)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "lr"]


def test_plot_steps_with_smoothing(trained):
    _, history, _, _ = trained
    fig = plots.plot_steps(history, smooth=2, label="sgd")
    (x, raw), (xs, smooth) = _lines(fig.axes[0])
    np.testing.assert_array_equal(x, np.arange(1, 10))
    np.testing.assert_allclose(raw, history.step_loss)
    np.testing.assert_allclose(smooth, np.convolve(history.step_loss, [0.5, 0.5], "valid"))
    np.testing.assert_allclose(_lines(fig.axes[1])[0][1], history.step_lr)
    with pytest.raises(ValueError, match="smooth"):
        plots.plot_steps(history, smooth=0)
    with pytest.raises(ValueError, match="record_grad_norms"):
        plots.plot_steps(history, ["grad_norm"])
    with pytest.raises(ValueError, match="record='step'"):
        plots.plot_steps(fastmlp.History())


def test_plot_gradient_flow_one_line_per_record(trained):
    model, _, X, y = trained
    norms = diagnostics.gradient_flow(model, X, y)
    ax = plots.plot_gradient_flow(norms)
    assert isinstance(ax, Axes) and ax.get_yscale() == "log"
    np.testing.assert_allclose(_lines(ax)[0][1], norms)
    ax = plots.plot_gradient_flow([norms, [1.0, 2.0, 3.0]], labels=["a", "b"])
    assert len(ax.get_lines()) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="labels"):
        plots.plot_gradient_flow([norms], labels=["a", "b"])
    with pytest.raises(ValueError, match="per-layer"):
        plots.plot_gradient_flow([[[1.0]]])


def test_plot_activation_histograms_count_every_value(trained):
    model, _, X, _ = trained
    fig = plots.plot_activation_histograms(model, X, bins=7)
    assert len(fig.axes) == 2
    for ax, layer in zip(fig.axes, model.activations(X)[:-1]):
        heights = [p.get_height() for p in ax.patches]
        assert len(heights) == 7 and sum(heights) == layer.post.size
    assert "tanh" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="which"):
        plots.plot_activation_histograms(model, X, which="mid")


def test_plot_decision_boundary(tmp_path):
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(-2, 1, (30, 2)), rng.normal(2, 1, (30, 2))])
    y = np.repeat([-1.0, 1.0], 30)[:, None]
    model = fastmlp.MLP([2, 3, 1], activation="sigmoid", loss="hinge", seed=0)
    model.fit(X, y, epochs=20, batch_size=10, lr=0.1)
    ax = plots.plot_decision_boundary(model, X, y, resolution=20)
    assert isinstance(ax, Axes) and len(ax.collections) >= 2
    ax.figure.savefig(tmp_path / "b.png")
    with pytest.raises(ValueError, match="shape"):
        plots.plot_decision_boundary(model, X[:, :1], y)
    mse = fastmlp.MLP([2, 3, 1], loss="mse", seed=0)  # no class labels: classify decides
    grids = []
    plots.plot_decision_boundary(mse, X, y, resolution=10,
                                 classify=lambda G: grids.append(G) or G[:, 0] > G[:, 1])
    assert len(grids) == 1 and grids[0].shape == (100, 2)
    assert (grids[0].min(axis=0) < X.min(axis=0)).all()
    assert (grids[0].max(axis=0) > X.max(axis=0)).all()
    # single-output mse has ±1 labels (the sign); poisson has none: classify is needed
    assert isinstance(plots.plot_decision_boundary(mse, X, y, resolution=10), Axes)
    poisson = fastmlp.MLP([2, 3, 1], loss="poisson", seed=0)
    with pytest.raises(ValueError, match="no class labels"):
        plots.plot_decision_boundary(poisson, X, y, resolution=10)
    wide = fastmlp.MLP([2, 3, 2], loss="hinge", seed=0)
    with pytest.raises(ValueError, match="one class per sample"):
        plots.plot_decision_boundary(wide, X, y, resolution=5)


def test_missing_matplotlib_names_the_extra(monkeypatch, trained):
    _, history, _, _ = trained
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"fastmlp\[plot\]"):
        plots.plot_history(history)


def test_plot_steps_grad_norm_one_line_per_layer():
    X, y = make_problem("cross_entropy", 40, 4, 3, seed=4)
    model = fastmlp.MLP([4, 6, 5, 3], seed=2)
    history = model.fit(X, y, epochs=2, batch_size=10, lr=0.1, record="step",
                        record_grad_norms=True)
    fig = plots.plot_steps(history, ["loss", "grad_norm"])
    lines = _lines(fig.axes[1])
    assert len(lines) == 3 and fig.axes[1].get_yscale() == "log"
    for l, (x, norms) in enumerate(lines):
        np.testing.assert_array_equal(x, np.arange(1, 9))
        np.testing.assert_allclose(norms, [row[l] for row in history.step_grad_norm])
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == \
        ["layer 1", "layer 2", "layer 3"]
