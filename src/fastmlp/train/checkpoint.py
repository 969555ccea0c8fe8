"""Training checkpoints: everything ``fit`` needs to continue a run exactly — the model
(parameters, batch-norm statistics, pruning masks, step counter), the optimizer state,
the epoch, the data order and shuffling RNG, the History, the early-stopping best and
a stateful schedule's state — in the model-file format (no code on load, checksummed,
atomic writes).

A checkpoint is checked completely before anything changes: :func:`load` checks every
field on its own (types, ranges, shapes, that the optimizer can be rebuilt from it),
:func:`restore` checks it against the model, data, optimizer and schedule it is to
continue, and only then puts the state in."""

from __future__ import annotations

import numbers
import os

import numpy as np

from fastmlp import serialization
from fastmlp.io.loading import check_model_arrays
from fastmlp.optim import OPTIMIZERS
from fastmlp.train.history import History

KIND = "fastmlp.train.checkpoint"
_CONFIG_KEYS = {"model_kind", "model_config", "epoch", "optimizer", "optimizer_hyper",
                "optimizer_step", "history", "best", "schedule"}


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
    """(config, arrays) of the checkpoint in `path`, every field checked on its own;
    ValueError names the file and what is wrong."""
    kind, config, arrays = serialization.loads(serialization.read_file(path), str(path))
    if kind != KIND:
        raise ValueError(f"{path}: not a fastmlp training checkpoint (found {kind!r})")
    if set(config) != _CONFIG_KEYS:
        raise ValueError(f"{path}: corrupt checkpoint: expected the fields "
                         f"{sorted(_CONFIG_KEYS)}, found {sorted(config)}")
    model_arrays = _prefixed(arrays, "model.")
    check_model_arrays(config["model_config"], model_arrays, str(path))
    if not isinstance(config["model_kind"], str):
        raise ValueError(f"{path}: corrupt checkpoint: model_kind must be a string")
    epoch = config["epoch"]
    if not _is_int(epoch) or not 0 <= epoch < 2**31:
        raise ValueError(f"{path}: corrupt checkpoint: epoch must be an integer in "
                         f"[0, 2**31), got {epoch!r}")
    _rebuilt_optimizer(path, config, _prefixed(arrays, "opt."), model_arrays["params"].dtype)
    _check_history(path, config["history"], epoch)
    order = arrays.get("order")
    if order is None or order.ndim != 1 or order.dtype.kind not in "iu" or \
            not np.array_equal(np.sort(order), np.arange(order.size)):
        raise ValueError(f"{path}: corrupt checkpoint: 'order' must be a permutation of "
                         "the training samples")
    rng = arrays.get("rng_state")
    if rng is None or rng.shape != (4,) or rng.dtype != np.uint64 or not rng.any():
        raise ValueError(f"{path}: corrupt checkpoint: 'rng_state' must be 4 uint64 values, "
                         "not all zero")
    best = config["best"]
    if best is not None and not (isinstance(best, list) and len(best) == 2 and
                                 _is_real(best[0]) and not np.isnan(best[0]) and
                                 _is_int(best[1]) and 0 < best[1] <= epoch):
        raise ValueError(f"{path}: corrupt checkpoint: 'best' must be null or "
                         f"[score, epoch], got {best!r}")
    best_names = {"best.params", "best.running"}
    for name in best_names:
        if (best is None) != (name not in arrays):
            raise ValueError(f"{path}: corrupt checkpoint: array {name!r} does not match "
                             f"'best' ({best!r})")
        if name in arrays and arrays[name].shape != model_arrays[name[5:]].shape or \
                name in arrays and arrays[name].dtype != model_arrays[name[5:]].dtype:
            raise ValueError(f"{path}: corrupt checkpoint: array {name!r} is not shaped "
                             f"like the model's {name[5:]!r}")
    known = {"order", "rng_state"} | best_names
    unknown = [k for k in arrays if k not in known and not k.startswith(("model.", "opt."))]
    if unknown:
        raise ValueError(f"{path}: corrupt checkpoint: unknown arrays {unknown}")
    if not isinstance(config["schedule"], dict):
        raise ValueError(f"{path}: corrupt checkpoint: 'schedule' must be an object")
    return config, arrays


def restore(path, config: dict, arrays: dict, *, model, optimizer, n: int, schedule):
    """Put a checkpoint's state (from :func:`load`) into `model`, the optimizer (a new
    one when None) and `schedule`, after checking that it fits all of them and `n`
    training samples (nothing changes when it does not); returns (optimizer, optimizer
    state, epoch, order, history, best)."""
    written = dict(config["model_config"])
    if written.get("ties") == []:  # (checkpoints of versions that always wrote the key)
        del written["ties"]
    if config["model_kind"] != model._kind() or written != model.config():
        layers = config["model_config"].get("layer_sizes")
        raise ValueError(f"{path}: the checkpoint was written by a different model "
                         f"({config['model_kind']} {layers})")
    if optimizer is not None and type(optimizer) is not OPTIMIZERS[config["optimizer"]]:
        raise ValueError(f"{path}: the checkpoint's optimizer is {config['optimizer']}")
    order = arrays["order"]
    if order.shape != (n,):
        raise ValueError(f"{path}: the checkpoint was written for {order.shape[0]} training "
                         f"samples, not {n}")
    params, running = (model._n_params,), model._running_view().shape
    shapes = {"model.params": params, "model.running": running, "model.prune_mask": params,
              "best.params": params, "best.running": running}
    shapes.update({k: params for k in arrays if k.startswith("opt.")})
    for name, shape in shapes.items():
        if name in arrays and arrays[name].shape != shape:
            raise ValueError(f"{path}: the checkpoint's array {name!r} has shape "
                             f"{arrays[name].shape}, the model needs {shape}")
    _check_schedule_state(path, config["schedule"], schedule)
    rebuilt = _rebuilt_optimizer(path, config, _prefixed(arrays, "opt."), model.dtype)
    model_arrays = _prefixed(arrays, "model.")
    history = History()
    for key, values in config["history"].items():
        getattr(history, key).extend(values)
    best = None
    if config["best"] is not None:
        best = (config["best"][0], config["best"][1],
                (arrays["best.params"], arrays["best.running"], None))
    # every check passed: from here on nothing can fail
    model._set_state_arrays(model_arrays, str(path))
    if "prune_mask" not in model_arrays:
        model.clear_pruning()
    model._backend_set_rng_state(arrays["rng_state"])
    if optimizer is None:
        optimizer = rebuilt
    else:
        optimizer.load_state_dict(rebuilt.state_dict())
    schedule.__dict__.update(config["schedule"])
    return optimizer, optimizer.model_state(model), config["epoch"], order.astype(np.int64), \
        history, best


def _prefixed(arrays: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _rebuilt_optimizer(path, config: dict, state_arrays: dict, dtype: np.dtype):
    """The checkpoint's optimizer, rebuilt with its state (arrays of `dtype`); ValueError
    if it cannot be."""
    cls = OPTIMIZERS.get(config["optimizer"]) if isinstance(config["optimizer"], str) else None
    step = config["optimizer_step"]
    if cls is None or not isinstance(config["optimizer_hyper"], dict) or \
            not _is_int(step) or not 0 <= step < 2**63:
        raise ValueError(f"{path}: corrupt checkpoint: optimizer {config['optimizer']!r} "
                         f"with hyper-parameters {config['optimizer_hyper']!r} and step "
                         f"{step!r}")
    for name, arr in state_arrays.items():
        if arr.ndim != 1 or arr.dtype != dtype:
            raise ValueError(f"{path}: corrupt checkpoint: optimizer state {name!r} must be "
                             f"1-D {dtype}, got {arr.shape} {arr.dtype}")
    try:
        optimizer = cls(**config["optimizer_hyper"])
        optimizer.load_state_dict({"optimizer": config["optimizer"],
                                   "hyper": config["optimizer_hyper"],
                                   "state": [{"step": step, **state_arrays}]})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt checkpoint: cannot rebuild the optimizer "
                         f"{config['optimizer']}: {exc}") from exc
    return optimizer


def _check_history(path, history: object, epoch: int) -> None:
    """One entry per completed epoch in every series: numbers or None (grad_norm: lists
    of numbers)."""
    series = History().as_dict()
    if not isinstance(history, dict) or set(history) != set(series):
        raise ValueError(f"{path}: corrupt checkpoint: 'history' must hold the series "
                         f"{sorted(series)}")
    for key, values in history.items():
        if not isinstance(values, list) or len(values) != epoch or not all(
                all(_is_real(x) for x in v) if key == "grad_norm" and isinstance(v, list)
                else v is None or _is_real(v) for v in values):
            raise ValueError(f"{path}: corrupt checkpoint: history {key!r} must hold "
                             f"{epoch} numbers")


def _check_schedule_state(path, state: dict, schedule) -> None:
    """The checkpoint's schedule state must have the fields of `schedule`, each of the
    same kind: the same strings and flags, lists of numbers for sequences, numbers for
    numbers (or None for the running state, which starts as None)."""
    own = vars(schedule)
    if set(state) != set(own):
        raise ValueError(f"{path}: the checkpoint's learning-rate schedule state (fields "
                         f"{sorted(state)}) does not fit lr_schedule={schedule!r}")
    for key, value in state.items():
        current = own[key]
        if isinstance(current, (str, bool)):
            fits = value == current and type(value) is type(current)
        elif isinstance(current, (list, tuple)):
            fits = isinstance(value, list) and all(_is_real(v) for v in value)
        elif isinstance(current, dict):
            fits = isinstance(value, dict)
        elif current is None or key.startswith("_"):  # running state, None until set
            fits = value is None or _is_real(value)
        else:
            fits = _is_real(value)
        if not fits:
            raise ValueError(f"{path}: the checkpoint's schedule field {key!r} is {value!r}, "
                             f"which does not fit lr_schedule={schedule!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
