"""Learning-rate schedules for ``MLP.fit(lr_schedule=...)``.

A schedule maps a counter ``t`` to a learning rate given the optimizer's base rate
``lr0``. ``interval="epoch"`` (the default) counts finished epochs, so the rate is
constant within an epoch; ``interval="batch"`` counts steps, so it changes every
batch. ``fit`` computes the rates of a whole chunk of steps at once and hands them to
the engine, so a schedule costs no Python work per batch.

=====================  ===============================================================
schedule               rate at t
=====================  ===============================================================
Constant()             lr0
StepLR(k, gamma)       lr0 * gamma ** floor(t / k)                  (torch StepLR)
MultiStepLR(ms, gamma) lr0 * gamma ** (number of milestones <= t)   (torch MultiStepLR)
ExponentialLR(gamma)   lr0 * gamma ** t                             (torch ExponentialLR)
InverseScaling(d, p)   lr0 / (1 + d t) ** p       (Robbins-Monro: sum = inf, sum of
                       squares < inf exactly when 0.5 < p <= 1)
CosineAnnealing(T,     linear warm-up from 0 over `warmup` steps, then
  eta_min, warmup)     eta_min + (lr0 - eta_min)(1 + cos(pi (t - warmup)/(T - warmup)))/2,
                       eta_min after T                              (torch CosineAnnealingLR)
OneCycle(max_lr,       torch OneCycleLR (cosine, two phases): from max_lr/div_factor up to
  total_steps, ...)    max_lr over pct_start of the steps, then down to
                       max_lr/(div_factor*final_div_factor); lr0 is ignored
ReduceLROnPlateau(...) lr0 * factor ** (reductions so far), reduced when the monitored
                       metric has not improved for `patience` epochs (torch semantics)
=====================  ===============================================================
"""

from __future__ import annotations

import math
import numbers

import numpy as np


class Schedule:
    """Base class. ``rates(lr0, t)`` returns the rate for every counter value in `t`."""

    def __init__(self, interval: str = "epoch") -> None:
        if interval not in ("epoch", "batch"):
            raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
        self.interval = interval

    def rates(self, lr0: float, t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def epoch_end(self, metrics: dict) -> None:
        """Called by fit after each epoch with that epoch's metrics (for stateful schedules)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    def rates(self, lr0, t):
        return np.full(len(t), float(lr0))


class StepLR(Schedule):
    def __init__(self, step_size: int, gamma: float = 0.1, interval: str = "epoch") -> None:
        super().__init__(interval)
        self.step_size = _int("step_size", step_size, 1)
        self.gamma = _positive("gamma", gamma)

    def rates(self, lr0, t):
        return lr0 * self.gamma ** np.floor_divide(t, self.step_size)


class MultiStepLR(Schedule):
    def __init__(self, milestones, gamma: float = 0.1, interval: str = "epoch") -> None:
        super().__init__(interval)
        ms = [_int("every milestone", m, 0) for m in milestones]
        if ms != sorted(ms):
            raise ValueError(f"milestones must be increasing, got {ms}")
        self.milestones = ms
        self.gamma = _positive("gamma", gamma)

    def rates(self, lr0, t):
        return lr0 * self.gamma ** np.searchsorted(self.milestones, t, side="right")


class ExponentialLR(Schedule):
    def __init__(self, gamma: float, interval: str = "epoch") -> None:
        super().__init__(interval)
        self.gamma = _positive("gamma", gamma)

    def rates(self, lr0, t):
        return lr0 * self.gamma ** np.asarray(t, dtype=np.float64)


class InverseScaling(Schedule):
    def __init__(self, decay: float = 1.0, power: float = 1.0, interval: str = "batch") -> None:
        super().__init__(interval)
        self.decay = _positive("decay", decay, allow_zero=True)
        self.power = _positive("power", power)

    @property
    def robbins_monro(self) -> bool:
        """True when the rates satisfy sum = inf and sum of squares < inf."""
        return self.decay > 0 and 0.5 < self.power <= 1

    def rates(self, lr0, t):
        return lr0 / (1 + self.decay * np.asarray(t, dtype=np.float64)) ** self.power


class CosineAnnealing(Schedule):
    def __init__(self, T_max: int, eta_min: float = 0.0, warmup: int = 0,
                 interval: str = "epoch") -> None:
        super().__init__(interval)
        self.T_max = _int("T_max", T_max, 1)
        self.eta_min = _positive("eta_min", eta_min, allow_zero=True)
        self.warmup = _int("warmup", warmup, 0)
        if self.warmup >= self.T_max:
            raise ValueError(f"warmup ({warmup}) must be shorter than T_max ({T_max})")

    def rates(self, lr0, t):
        t = np.asarray(t, dtype=np.float64)
        span = self.T_max - self.warmup
        progress = np.clip((t - self.warmup) / span, 0.0, 1.0)
        cosine = self.eta_min + (lr0 - self.eta_min) * (1 + np.cos(math.pi * progress)) / 2
        if self.warmup:
            return np.where(t < self.warmup, lr0 * (t + 1) / (self.warmup + 1), cosine)
        return cosine


class OneCycle(Schedule):
    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 interval: str = "batch") -> None:
        super().__init__(interval)
        self.max_lr = _positive("max_lr", max_lr)
        self.total_steps = _int("total_steps", total_steps, 2)
        if not 0 < pct_start < 1:
            raise ValueError(f"pct_start must lie in (0, 1), got {pct_start}")
        self.pct_start = float(pct_start)
        self.div_factor = _positive("div_factor", div_factor)
        self.final_div_factor = _positive("final_div_factor", final_div_factor)

    def rates(self, lr0, t):
        t = np.minimum(np.asarray(t, dtype=np.float64), self.total_steps - 1)
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        up_end = self.pct_start * self.total_steps - 1
        down_end = self.total_steps - 1

        def anneal(start, end, pct):
            return end + (start - end) / 2 * (np.cos(math.pi * pct) + 1)

        up = anneal(initial, self.max_lr, t / up_end if up_end > 0 else 1.0)
        down = anneal(self.max_lr, final, (t - up_end) / (down_end - up_end))
        return np.where(t <= up_end, up, down)


class ReduceLROnPlateau(Schedule):
    """Multiply the rate by `factor` when `monitor` (``val_loss``, ``val_accuracy``,
    ``loss`` or ``accuracy``; falls back to the training metric without validation data)
    has not improved by `threshold` (relative, as torch's default) for `patience` epochs;
    then wait `cooldown` epochs; never go below `min_lr`."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__("epoch")
        if monitor not in ("val_loss", "val_accuracy", "loss", "accuracy"):
            raise ValueError(f"monitor must be val_loss, val_accuracy, loss or accuracy, "
                             f"got {monitor!r}")
        self.monitor = monitor
        self.factor = _positive("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"factor must be < 1, got {factor}")
        self.patience = _int("patience", patience, 0)
        self.threshold = _positive("threshold", threshold, allow_zero=True)
        self.cooldown = _int("cooldown", cooldown, 0)
        self.min_lr = _positive("min_lr", min_lr, allow_zero=True)
        self._scale, self._best, self._bad, self._cool = 1.0, None, 0, 0

    def rates(self, lr0, t):
        return np.full(len(t), max(lr0 * self._scale, min(self.min_lr, lr0)))

    def epoch_end(self, metrics):
        value = metrics.get(self.monitor)
        if value is None:  # no validation data: watch the training metric
            value = metrics.get(self.monitor.removeprefix("val_"))
        if value is None:
            raise ValueError(f"ReduceLROnPlateau cannot monitor {self.monitor!r} for this loss")
        sign = -1.0 if self.monitor.endswith("accuracy") else 1.0
        v = sign * value
        if self._best is None or v < self._best - abs(self._best) * self.threshold:
            self._best, self._bad = v, 0
        else:
            self._bad += 1
        if self._cool > 0:
            self._cool -= 1
            self._bad = 0
        if self._bad > self.patience:
            self._scale *= self.factor
            self._cool, self._bad = self.cooldown, 0


def _int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)
