"""Minibatch noise against the batch size: the per-step loss, and the gradient's error.

A minibatch gradient is an unbiased estimate of the full-batch gradient whose error
shrinks like ``1 / sqrt(batch size)`` (samples drawn with replacement; slightly faster
without). Small batches therefore take noisy steps (the left panel: every step's batch
loss, at the same learning rate, over the same number of epochs) but many more of them.
The right panel measures the gradient error directly at the trained weights of the
batch-32 run. A 784-64-10 ReLU net on 5,000 images of the embedded Fashion-MNIST subset.
"""

from __future__ import annotations

import numpy as np

import fastmlp

from _common import fashion, figure, parse_args, save

BATCHES = [4, 32, 256, 5000]


def main() -> None:
    args = parse_args(__doc__)
    X, y, _, _ = fashion(args.quick, n_train=5000)
    epochs = 1 if args.quick else 5
    fig, ax = figure(1, 2)
    trained = None
    for B in BATCHES:
        B = min(B, len(X))
        model = fastmlp.MLP([784, 64, 10], seed=0)
        h = model.fit(X, y, epochs=epochs, batch_size=B, lr=0.05, record="step")
        at = np.arange(1, len(h.step_loss) + 1) * B / len(X)  # epochs of data seen
        ax[0, 0].plot(at, h.step_loss, linewidth=0.6, label=f"batch {B}")
        if B == 32:
            trained = model
    ax[0, 0].set(xlabel="epochs of data seen", ylabel="batch loss", ylim=(0, 2.5),
                 title=f"SGD lr 0.05, {epochs} epochs")
    ax[0, 0].legend(fontsize="small")
    rng = np.random.default_rng(0)
    full = trained.gradients(X, y)["flat"].astype(np.float64)
    sizes = [s for s in (1, 4, 16, 64, 256, 1024) if s <= len(X) // 2]
    errors = []
    for B in sizes:
        draws = [trained.gradients(X[idx], y[idx])["flat"] - full
                 for idx in (rng.choice(len(X), B, replace=False) for _ in range(20))]
        errors.append(np.sqrt(np.mean([np.sum(d.astype(np.float64) ** 2) for d in draws])))
    ax[0, 1].loglog(sizes, errors, "o-", label="measured (20 batches each)")
    ax[0, 1].loglog(sizes, errors[0] / np.sqrt(sizes), "k:", label="1 / sqrt(batch)")
    ax[0, 1].set(xlabel="batch size", ylabel="RMS |g_batch - g_full|",
                 title="gradient error at trained weights")
    ax[0, 1].legend(fontsize="small")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
