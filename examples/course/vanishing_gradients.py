"""Vanishing and exploding gradients in deep sigmoid, tanh and ReLU stacks, for each
initializer: the gradient norm of every layer at initialization.

Backpropagation multiplies by ``W^T`` and ``f'(z)`` once per layer. Sigmoid's slope is at
most 1/4, so its gradients shrink toward the input whatever the initializer; a too-small
initialization makes every layer's signal (and gradient) vanish, a too-large one saturates
tanh and sigmoid units or explodes ReLU ones. Xavier's variance ``2 / (fan_in + fan_out)``
keeps tanh gradients level, He's ``2 / fan_in`` keeps ReLU ones level. A stack of ten
hidden layers of 64 units on 512 images of the embedded Fashion-MNIST subset.
"""

from __future__ import annotations

import fastmlp
from fastmlp.diagnostics import gradient_flow
from fastmlp.plots import plot_gradient_flow

from _common import fashion, figure, parse_args, save

ACTIVATIONS = ["sigmoid", "tanh", "relu"]
INITS = [("normal std 0.01", "normal", {"std": 0.01}), ("normal std 1", "normal", {"std": 1.0}),
         ("Xavier normal", "xavier_normal", {}), ("He normal", "he_normal", {})]


def main() -> None:
    args = parse_args(__doc__)
    X, y, _, _ = fashion(args.quick, n_train=512)
    depth = 4 if args.quick else 10
    fig, ax = figure(1, len(ACTIVATIONS))
    for a, activation in zip(ax[0], ACTIVATIONS):
        rows = []
        for _, init, kwargs in INITS:
            model = fastmlp.MLP([784] + [64] * depth + [10], activation=activation, init=init,
                                init_kwargs=kwargs, dtype="float64", seed=0)
            rows.append(gradient_flow(model, X, y))
        plot_gradient_flow(rows, labels=[label for label, _, _ in INITS], ax=a)
        a.set_title(f"{activation}, {depth} hidden layers, at initialization")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
