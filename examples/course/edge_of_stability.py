"""The Hessian's top eigenvalue (the sharpness) during full-batch gradient descent, against
2 / lr: the edge of stability.

On a quadratic, gradient descent with rate lr diverges along any direction whose curvature
exceeds 2 / lr. Training a network, the sharpness first rises (progressive sharpening)
until it reaches 2 / lr, then hovers there while the loss keeps falling, non-monotonically
(Cohen et al. 2021). A 49-32-32-10 tanh net with MSE on one-hot targets, trained by full-
batch gradient descent on 500 images of the embedded Fashion-MNIST subset, downsampled to
7x7; the sharpness is measured by Lanczos iteration on exact Hessian-vector products
(:mod:`fastmlp.curvature`).
"""

from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp.curvature import SharpnessCallback

from _common import fashion, figure, parse_args, save

RATES = [0.2, 0.5, 0.8]


def main() -> None:
    args = parse_args(__doc__)
    X, y, _, _ = fashion(args.quick, n_train=500)
    X = X.reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(-1, 49)  # 4x4 average pooling
    T = np.eye(10)[y]
    epochs, every = (4, 2) if args.quick else (600, 20)
    fig, ax = figure(1, 2)
    for lr in RATES:
        model = fastmlp.MLP([49, 32, 32, 10], activation="tanh", loss="mse",
                            init="xavier_normal", dtype="float64", seed=0, threads=1)
        sharp = SharpnessCallback(X, T, every=every)
        h = model.fit(X, T, epochs=epochs, batch_size=len(X), lr=lr, shuffle=False,
                      callbacks=[sharp])
        line, = ax[0, 0].plot(sharp.epoch, sharp.sharpness, label=f"lr {lr}")
        ax[0, 0].axhline(2 / lr, linestyle=":", color=line.get_color())
        ax[0, 1].plot(h.epoch, h.loss, color=line.get_color(), label=f"lr {lr}")
    ax[0, 0].set(xlabel="step (full batch)", ylabel="top Hessian eigenvalue",
                 title="sharpness; dotted: 2 / lr")
    ax[0, 1].set(xlabel="step (full batch)", ylabel="training loss (MSE)", yscale="log")
    for a in ax[0]:
        a.legend(fontsize="small")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
