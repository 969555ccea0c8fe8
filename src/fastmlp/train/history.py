"""The per-epoch training record returned by ``fit``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class History:
    """Per-epoch metrics. ``lr`` is the rate of the epoch's last step; ``grad_norm`` holds
    the L2 norm of each dense layer's weight gradient at the epoch's last step (a first
    look at vanishing or exploding gradients). ``accuracy`` entries are None for losses
    without one (mse); ``val_*`` entries are None when no validation data was given.

    ``history["loss"]`` and ``history.loss`` are the same list.

    With ``fit(record="step")`` it also keeps every training step's loss and learning rate
    (``step_loss``, ``step_lr``: the loss of that step's batch, penalties included, before
    the update). With ``record_grad_norms=True`` as well, ``step_grad_norm`` holds every
    step's L2 norm of each dense layer's weight gradient (the one the update used: after
    penalties, pruning and clipping; computed in the engine). ``steps`` counts the steps of
    this fit in any case. Step records are not kept in checkpoints.
    """

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    grad_norm: list[list[float]] = field(default_factory=list)  # per dense layer, last step

    step_loss: list[float] = field(default_factory=list)  # fit(record="step")
    step_lr: list[float] = field(default_factory=list)
    step_grad_norm: list[list[float]] = field(default_factory=list)  # record_grad_norms
    steps: int = 0  # training steps taken by this fit

    best_epoch: int | None = None  # early stopping: the epoch whose weights the model holds
    stopped_epoch: int | None = None  # early stopping: the epoch training stopped after

    def __getitem__(self, key: str) -> list:
        if key not in _SERIES:
            raise KeyError(key)
        return getattr(self, key)

    def __len__(self) -> int:
        return len(self.epoch)

    def as_dict(self) -> dict[str, list]:
        """The per-epoch lists as a plain dict."""
        return {k: list(getattr(self, k)) for k in _SERIES}

    def append(self, **values: object) -> None:
        for key in _SERIES:
            getattr(self, key).append(values[key])


_SERIES = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time",
           "samples_per_s", "grad_norm")
