"""Dropout, batch normalization, early stopping, an ensemble, input noise and adversarial
training compared on a small training set, where a plain network overfits.

Each method should narrow the gap between training and test accuracy; whether it also
raises test accuracy depends on the problem and the settings, which are defaults here,
not tuned. A 784-128-10 ReLU net (Adam, lr 1e-3, 20 epochs, batch 32) on 2,000 images of
the embedded Fashion-MNIST subset, tested on 2,000 others.
"""

from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp import optim

from _common import fashion, figure, parse_args, save

SIZES = [784, 128, 10]
VARIANTS = [  # (name, model options, fit options)
    ("plain", {}, {}),
    ("dropout 0.5", {"dropout": 0.5, "input_dropout": 0.2}, {}),
    ("batch norm", {"batch_norm": True}, {}),
    ("early stopping", {}, {"early_stopping": True, "patience": 3}),
    ("input noise 0.3", {}, {"input_noise": 0.3}),
    ("adversarial 0.05", {}, {"adversarial_eps": 0.05}),
]


def main() -> None:
    args = parse_args(__doc__)
    X, y, Xt, yt = fashion(args.quick, n_train=2000)
    epochs = 2 if args.quick else 20
    names, train_acc, test_acc = [], [], []
    for name, model_options, fit_options in VARIANTS:
        model = fastmlp.MLP(SIZES, seed=0, **model_options)
        model.fit(X, y, epochs=epochs, batch_size=32, optimizer=optim.Adam(lr=1e-3),
                  **fit_options)
        names.append(name)
        train_acc.append(model.score(X, y))
        test_acc.append(model.score(Xt, yt))
    ensemble = fastmlp.Ensemble.of(5, fastmlp.MLP, SIZES, seed=0)
    for member in ensemble.members:  # each its own Adam state (Ensemble.fit shares one)
        member.fit(X, y, epochs=epochs, batch_size=32, optimizer=optim.Adam(lr=1e-3))
    names.append("ensemble of 5 seeds")
    train_acc.append(ensemble.score(X, y))
    test_acc.append(ensemble.score(Xt, yt))
    x = np.arange(len(names))
    fig, ax = figure(1, 1, width=8.0, height=3.8)
    ax = ax[0, 0]
    ax.bar(x - 0.2, train_acc, 0.4, label="train")
    ax.bar(x + 0.2, test_acc, 0.4, label="test")
    for i, t in enumerate(test_acc):
        ax.text(x[i] + 0.2, t + 0.005, f"{t:.3f}", ha="center", fontsize="x-small")
    ax.set_xticks(x, names, rotation=20, fontsize="small")
    ax.set(ylabel="accuracy", ylim=(0.6, 1.02),
           title=f"784-128-10 ReLU, {len(X)} training images, {epochs} epochs")
    ax.legend(fontsize="small", loc="lower right")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
