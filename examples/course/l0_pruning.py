"""Toward few weights (an L0 goal) by weight decay and by pruning, with and without
retraining.

Magnitude pruning zeroes the smallest weights; a net trained with an L1 penalty (decay
that drives weights to exactly 0 with the proximal step) has many weights near zero
already, so pruning removes less that matters. Retraining the survivors for a few epochs
(the pruning mask keeps the removed weights at 0) recovers most of the accuracy. A
784-128-10 ReLU net on the embedded Fashion-MNIST subset, pruned with one global
threshold.
"""

from __future__ import annotations

import copy

import fastmlp
from fastmlp import optim

from _common import fashion, figure, parse_args, save

AMOUNTS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995]
TRAININGS = [("plain", {}), ("L1 decay 1e-4", {"l1": 1e-4, "l1_proximal": True})]


def main() -> None:
    args = parse_args(__doc__)
    X, y, Xt, yt = fashion(args.quick, n_train=5000)
    epochs, retrain = (1, 1) if args.quick else (10, 2)
    fig, ax = figure(1, 1, width=6.0, height=3.8)
    ax = ax[0, 0]
    for (label, penalty), marker in zip(TRAININGS, "os"):
        base = fastmlp.MLP([784, 128, 10], seed=0)
        base.fit(X, y, epochs=epochs, batch_size=32, optimizer=optim.Adam(lr=1e-3), **penalty)
        before, after = [], []
        for amount in AMOUNTS:
            model = copy.deepcopy(base)
            model.prune(amount, scope="global")
            before.append(model.score(Xt, yt))
            model.fit(X, y, epochs=retrain, batch_size=32, optimizer=optim.Adam(lr=1e-3),
                      **penalty)
            after.append(model.score(Xt, yt))
        kept = [1 - a for a in AMOUNTS]
        line, = ax.plot(kept, before, marker + "--", label=f"{label}, pruned")
        ax.plot(kept, after, marker + "-", color=line.get_color(),
                label=f"{label}, pruned + {retrain} epochs retrained")
    ax.set(xlabel="share of weights kept (global magnitude threshold)", xscale="log",
           ylabel="test accuracy", title="784-128-10 ReLU, Adam")
    ax.invert_xaxis()
    ax.legend(fontsize="small")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
