"""The course's 2-3-5-3-1 sigmoid network on two Gaussian clouds, trained with MSE and
with the hinge loss: loss against iterations and the decision boundary each learns.

MSE regresses the single output onto the 0/1 labels (a sample counts as class 1 when the
output exceeds 0.5); the hinge loss takes labels -1/+1 and a sample is class 1 when the
output is positive. Both see the same data, initial weights and batches.
"""

from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp.plots import plot_decision_boundary

from _common import accuracy, accuracy_labels, figure, parse_args, save, two_clouds

LOSSES = [("mse", lambda y: y[:, None].astype(float)),
          ("hinge", lambda y: (2.0 * y - 1)[:, None])]


def main() -> None:
    args = parse_args(__doc__)
    X, y = two_clouds(80 if args.quick else 400, seed=0)
    Xt, yt = two_clouds(2000, seed=1)
    epochs = 5 if args.quick else 100
    fig, ax = figure(2, 2)
    for col, (loss, targets) in enumerate(LOSSES):
        model = fastmlp.MLP([2, 3, 5, 3, 1], activation="sigmoid", loss=loss,
                            init="xavier_uniform", seed=0)
        h = model.fit(X, targets(y), epochs=epochs, batch_size=10, lr=0.5, record="step")
        steps = np.arange(1, len(h.step_loss) + 1)
        ax[0, col].plot(steps, h.step_loss, linewidth=0.5, alpha=0.4, label="per batch")
        ax[0, col].plot(steps[len(X) // 10 - 1 :: len(X) // 10], h.loss, label="epoch mean")
        ax[0, col].set(xlabel="iteration (batch of 10)", ylabel=f"{loss} loss",
                       title=f"{loss}: 2-3-5-3-1 sigmoid, SGD lr 0.5")
        ax[0, col].legend(fontsize="small")
        plot_decision_boundary(model, X, y, resolution=120, ax=ax[1, col],
                               classify=lambda G, m=model: accuracy_labels(m, G))
        ax[1, col].set_title(f"{loss}: train acc {accuracy(model, X, y):.3f}, "
                             f"test acc {accuracy(model, Xt, yt):.3f}")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
