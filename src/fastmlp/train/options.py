"""``MLP.fit``'s arguments as one record: what :func:`fastmlp.train.first_order.fit`
takes. Their defaults and documentation live once, on ``BaseMLP.fit``."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Callable

from fastmlp.optim import Optimizer
from fastmlp.schedules import Schedule


@dataclass(frozen=True)
class FitOptions:
    """Every argument of ``BaseMLP.fit`` but the data (`X`, `y`), unchecked."""

    epochs: int
    batch_size: int
    lr: float | None
    shuffle: bool | str
    validation_data: tuple | None
    verbose: bool
    optimizer: Optimizer | None
    lr_schedule: Schedule | None
    clip_grad_norm: float | None
    clip_grad_value: float | None
    clip_error_if_nonfinite: bool
    l2: float
    l1: float
    l1_proximal: bool
    penalize_biases: bool
    activity_l1: float
    activity_l2: float
    input_noise: float
    shift: int
    image_shape: tuple | None
    adversarial_eps: float
    adversarial_ratio: float
    rotate: float
    scale: float
    shear: float
    early_stopping: bool
    monitor: str
    patience: int
    min_delta: float
    restore_best: bool
    tol: float | None
    n_iter_no_change: int
    validation_every: int
    validation_fraction: float | None
    callbacks: list | None
    step_callbacks: list | None
    step_every: int
    record: str
    record_grad_norms: bool
    checkpoint: str | os.PathLike | None
    checkpoint_every: int
    resume_from: str | os.PathLike | None
    progress: Callable | None
    sample_weight: object


NAMES = tuple(f.name for f in fields(FitOptions))
