"""Zero, constant and random initialization: why the weights must start different.

With all weights equal, every hidden unit of a layer computes the same function and gets
the same gradient, so the units stay copies of each other (symmetry is never broken); with
all weights zero a tanh net passes no gradient to its hidden layers at all. The figure
tracks the training loss and the rank of the first weight matrix (how many different
hidden units the layer really has) over training on the embedded Fashion-MNIST subset.
"""

from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp.diagnostics import Recorder

from _common import fashion, figure, parse_args, save

INITS = [("zeros", "zeros", {}), ("constant 0.001", "constant", {"value": 0.001}),
         ("random (Xavier)", "xavier_uniform", {})]


def first_layer_rank(model) -> int:
    return int(np.linalg.matrix_rank(model.weights[0].astype(np.float64), tol=1e-5))


def main() -> None:
    args = parse_args(__doc__)
    X, y, Xt, yt = fashion(args.quick, n_train=5000)
    epochs = 2 if args.quick else 15
    fig, ax = figure(1, 2)
    for label, init, kwargs in INITS:
        model = fastmlp.MLP([784, 32, 32, 10], activation="tanh", init=init, init_kwargs=kwargs,
                            seed=0)
        rank = Recorder(first_layer_rank)
        h = model.fit(X, y, epochs=epochs, batch_size=64, lr=0.03, callbacks=[rank])
        acc = model.score(Xt, yt)
        ax[0, 0].plot(h.epoch, h.loss, label=f"{label}: test acc {acc:.2f}")
        ax[0, 1].plot(rank.epochs, rank.values, "o-", label=label)
    ax[0, 0].set(xlabel="epoch", ylabel="training loss", title="784-32-32-10 tanh, SGD")
    ax[0, 1].set(xlabel="epoch", ylabel="rank of W1 (32 units)",
                 title="distinct hidden units in layer 1")
    for a in ax[0]:
        a.legend(fontsize="small")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
