"""Every optimizer on an ill-conditioned quadratic and on the embedded Fashion-MNIST subset.

The quadratic is a linear net (no hidden layer) fit by MSE to inputs whose scales span a
factor 100 (the Hessian's condition number is 10^4): plain SGD must keep its rate below
2 / (largest curvature), so it crawls along the flat directions; momentum and the adaptive
methods (per-parameter rates) cope better. On the network the differences are smaller.
Every run starts from the same weights and sees the same batches; the rates are common
starting points, not tuned. Rprop is a full-batch method and runs full-batch steps
(10 per epoch shown: ten passes over the data where the others make one).
"""

from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp import optim

from _common import fashion, figure, parse_args, save


def runs(scale: float):
    """(name, optimizer) for every update rule; `scale` multiplies the rates."""
    return [
        ("SGD", optim.SGD(lr=0.05 * scale)),
        ("momentum 0.9", optim.SGD(lr=0.01 * scale, momentum=0.9)),
        ("Nesterov 0.9", optim.SGD(lr=0.01 * scale, momentum=0.9, nesterov=True)),
        ("Adagrad", optim.Adagrad(lr=0.01 * scale)),
        ("Adadelta", optim.Adadelta(lr=1.0)),
        ("RMSprop", optim.RMSprop(lr=0.001 * scale)),
        ("Adam", optim.Adam(lr=0.001 * scale)),
        ("AdamW", optim.AdamW(lr=0.001 * scale)),
        ("Rprop (full batch)", optim.Rprop(lr=0.001 * scale)),
        ("DeltaBarDelta", optim.DeltaBarDelta(lr=0.01 * scale)),
    ]


def quadratic(n: int, d: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.logspace(0, -2, d)
    w = rng.normal(size=(d, 1))
    return X, X @ w + 0.01 * rng.normal(size=(n, 1))


def train(sizes, loss, X, y, name, opt, epochs, batch):
    model = fastmlp.MLP(sizes, loss=loss, activation="relu", seed=0)
    if name.endswith("(full batch)"):
        h = model.fit(X, y, epochs=10 * epochs, batch_size=len(X), optimizer=opt)
        return h.loss[9::10]
    return model.fit(X, y, epochs=epochs, batch_size=batch, optimizer=opt).loss


def main() -> None:
    args = parse_args(__doc__)
    Xq, yq = quadratic(200 if args.quick else 1000)
    X, y, _, _ = fashion(args.quick, n_train=4000)
    eq, ef = (2, 1) if args.quick else (30, 5)
    fig, ax = figure(1, 2, width=5.0, height=3.8)
    for name, opt in runs(10.0):  # the quadratic is tame: ten times the rates
        ax[0, 0].plot(np.arange(1, eq + 1), train([20, 1], "mse", Xq, yq, name, opt, eq, 32),
                      label=name)
    for name, opt in runs(1.0):
        ax[0, 1].plot(np.arange(1, ef + 1),
                      train([784, 128, 10], "cross_entropy", X, y, name, opt, ef, 64), "o-",
                      label=name)
    ax[0, 0].set(xlabel="epoch", ylabel="MSE", yscale="log",
                 title="linear net, condition number 1e4, batch 32")
    ax[0, 1].set(xlabel="epoch", ylabel="training loss", yscale="log",
                 title="784-128-10 ReLU, Fashion-MNIST subset, batch 64")
    ax[0, 1].legend(fontsize="x-small", ncol=2)
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
