"""Training checkpoints: everything ``fit`` needs to continue a run exactly — the model
(parameters, batch-norm statistics, pruning masks, step counter), the optimizer state,
the epoch, the data order and shuffling RNG, the History, the early-stopping best and
a stateful schedule's state — in the model-file format (no code on load, checksummed,
atomic writes)."""

from __future__ import annotations

import os

import numpy as np

from fastmlp import serialization
from fastmlp.history import History
from fastmlp.optim import OPTIMIZERS

KIND = "fastmlp.checkpoint"


def save(path: str | os.PathLike, *, model, optimizer, state: dict, epoch: int,
         order: np.ndarray, history: History, best: tuple | None, schedule) -> None:
    arrays = {f"model.{k}": v for k, v in model._state_arrays().items()}
    arrays.update({f"opt.{k}": v for k, v in state.items() if isinstance(v, np.ndarray)})
    arrays["order"] = order
    arrays["rng_state"] = model._backend_rng_state()
    if best is not None:
        arrays["best.params"], arrays["best.running"] = best[2][0], best[2][1]
    config = {
        "model_kind": model._kind(), "model_config": model.config(), "epoch": epoch,
        "optimizer": type(optimizer).__name__, "optimizer_hyper": _jsonable(optimizer.hyper()),
        "optimizer_step": int(state["step"]),
        "history": _jsonable(history.as_dict()),
        "best": None if best is None else [float(best[0]), int(best[1])],
        "schedule": _jsonable(getattr(schedule, "__dict__", {})),
    }
    serialization.write_atomic(path, serialization.dumps(KIND, config, arrays))


def load(path: str | os.PathLike) -> tuple[dict, dict]:
    kind, config, arrays = serialization.loads(serialization.read_file(path), str(path))
    if kind != KIND:
        raise ValueError(f"{path}: not a fastmlp training checkpoint (found {kind!r})")
    return config, arrays


def restore(path, config: dict, arrays: dict, *, model, optimizer, n: int, schedule):
    """Put a checkpoint's state into `model`, the optimizer (a new one when None) and
    `schedule`; returns (optimizer, optimizer state, epoch, order, history, best)."""
    if config["model_kind"] != model._kind() or config["model_config"] != model.config():
        raise ValueError(f"{path}: the checkpoint was written by a different model "
                         f"({config['model_kind']} {config['model_config']['layer_sizes']})")
    cls = OPTIMIZERS.get(config["optimizer"])
    if cls is None or (optimizer is not None and type(optimizer) is not cls):
        raise ValueError(f"{path}: the checkpoint's optimizer is {config['optimizer']}")
    order = arrays["order"]
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"{path}: the checkpoint was written for {order.shape[0]} training "
                         f"samples, not {n}")
    model._set_state_arrays({k[6:]: v for k, v in arrays.items() if k.startswith("model.")},
                            str(path))
    model._backend_set_rng_state(arrays["rng_state"])
    if optimizer is None:
        optimizer = cls(**config["optimizer_hyper"])
    state_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")}
    optimizer.load_state_dict({"optimizer": config["optimizer"],
                               "hyper": config["optimizer_hyper"],
                               "state": [{"step": config["optimizer_step"], **state_arrays}]})
    history = History()
    for key, values in config["history"].items():
        getattr(history, key).extend(values)
    best = None
    if config["best"] is not None:
        best = (config["best"][0], config["best"][1],
                (arrays["best.params"], arrays["best.running"], None))
    if config["schedule"]:
        schedule.__dict__.update(config["schedule"])
    return optimizer, optimizer.state[0], int(config["epoch"]), order.astype(np.int64), \
        history, best


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
