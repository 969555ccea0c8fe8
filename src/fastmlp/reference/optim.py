"""The update rules of fastmlp.optim, written out in NumPy (the reference twin).

``update(name, hyper, state, p, g, lr)`` applies one step of the optimizer `name`
(a class name of fastmlp.optim) to the array `p` in place, with the hyper-parameters
under the engine's names (see ``Optimizer._engine_hyper``) and `state`, the dict
holding ``step`` and the state arrays. Each branch is the formula of the
torch.optim documentation (Jacobs 1988 for DeltaBarDelta).
"""

from __future__ import annotations

import math

import numpy as np


def update(name: str, h: dict, state: dict, p: np.ndarray, g: np.ndarray, lr: float) -> None:
    state["step"] += 1
    t = state["step"]
    f = p.dtype.type  # compute in the parameters' precision, like torch
    wd = f(h.get("weight_decay", 0.0))
    if name == "SGD":
        g = g + wd * p
        if h["momentum"] > 0:
            b = state["momentum_buffer"]
            if t == 1:
                b[...] = g
            else:
                b[...] = f(h["momentum"]) * b + f(1 - h["dampening"]) * g
            g = g + f(h["momentum"]) * b if h["nesterov"] else b
        p -= f(lr) * g
    elif name == "Adagrad":
        g = g + wd * p
        clr = f(lr / (1 + (t - 1) * h["lr_decay"]))
        state["sum"] += g * g
        p -= clr * g / _denominator(state["sum"], f(h["eps"]), h.get("eps_inside", False))
    elif name == "Adadelta":
        g = g + wd * p
        rho, eps = f(h["rho"]), f(h["eps"])
        v, u = state["square_avg"], state["acc_delta"]
        v[...] = v * rho + f(1 - h["rho"]) * g * g
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u[...] = u * rho + f(1 - h["rho"]) * delta * delta
        p -= f(lr) * delta
    elif name == "RMSprop":
        g = g + wd * p
        v = state["square_avg"]
        v[...] = v * f(h["alpha"]) + f(1 - h["alpha"]) * g * g
        if h["centered"]:
            ga = state["grad_avg"]
            ga += f(1 - h["alpha"]) * (g - ga)
            avg = _denominator(v - ga * ga, f(h["eps"]), h.get("eps_inside", False))
        else:
            avg = _denominator(v, f(h["eps"]), h.get("eps_inside", False))
        if h["momentum"] > 0:
            b = state["momentum_buffer"]
            b[...] = b * f(h["momentum"]) + g / avg
            p -= f(lr) * b
        else:
            p -= f(lr) * (g / avg)
    elif name in ("Adam", "AdamW"):
        if name == "AdamW":
            p *= f(1 - lr * h["weight_decay"])
        else:
            g = g + wd * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += f(1 - h["beta1"]) * (g - m)
        v[...] = v * f(h["beta2"]) + f(1 - h["beta2"]) * g * g
        if h["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = f(lr / (1 - h["beta1"] ** t))
        bc2_sqrt = f(math.sqrt(1 - h["beta2"] ** t))
        p -= step_size * (m / (np.sqrt(v) / bc2_sqrt + f(h["eps"])))
    elif name == "Rprop":
        prev, step = state["prev"], state["step_size"]
        prod = g * prev
        factor = np.where(prod > 0, f(h["etaplus"]), np.where(prod < 0, f(h["etaminus"]), f(1)))
        step[...] = np.clip(step * factor, f(h["step_min"]), f(h["step_max"]))
        g = np.where(prod < 0, f(0), g)
        p -= np.sign(g) * step
        prev[...] = g
    elif name == "DeltaBarDelta":
        g = g + wd * p
        rate, bar = state["rate"], state["bar_delta"]
        agree = bar * g
        rate[...] = np.where(agree > 0, rate + f(h["kappa"]),
                             np.where(agree < 0, rate * f(1 - h["phi"]), rate))
        p -= rate * g
        bar[...] = f(1 - h["theta"]) * g + f(h["theta"]) * bar
    else:
        raise ValueError(f"unknown optimizer {name!r}")


def _denominator(s: np.ndarray, eps, inside: bool) -> np.ndarray:
    """sqrt(s + eps) (Keras, the course) or sqrt(s) + eps (PyTorch)."""
    return np.sqrt(s + eps) if inside else np.sqrt(s) + eps
