"""Rebuilding a model from what a model file (or pickle, or checkpoint) holds.

Building a model allocates its parameters, gradients and workspace from the layer sizes
in the file's configuration, so those sizes are checked against the arrays the file
really carries first: a model is built only when its parameter array is in the file,
which bounds what building it allocates by a small multiple of the file's size."""

from __future__ import annotations

import numpy as np

from fastmlp.model.base import BaseMLP, _check_layer_sizes
from fastmlp.model.heads import output_size
from fastmlp.validation import check_dtype


def check_model_arrays(config: object, arrays: dict, source: str) -> None:
    """Check the model state `arrays` (``params``, ``running``, ``counter`` and optionally
    ``prune_mask``, as ``BaseMLP._state_arrays`` writes them) against the layer sizes and
    dtype of `config` before a model is built from it; ValueError names the problem.

    The parameter array must hold at least the weights and biases the layer sizes imply
    (batch-norm parameters, at most twice the hidden units, come on top); the exact
    shapes are checked when the arrays are put into the built model."""
    if not isinstance(config, dict):
        raise ValueError(f"{source}: invalid model configuration: {config!r}")
    try:
        sizes = config.get("layer_sizes")
        if config.get("heads") is not None and isinstance(sizes, list):  # + the heads' outputs
            sizes = [*sizes, output_size(config["heads"])]
        sizes = _check_layer_sizes(sizes)
        dtype = check_dtype(config.get("dtype", "float32"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid model configuration: {exc}") from exc
    for name in ("params", "running", "counter"):
        if name not in arrays:
            raise ValueError(f"{source}: the model array {name!r} is missing")
    for name in ("params", "running", "prune_mask"):
        arr = arrays.get(name)
        if arr is not None and (arr.ndim != 1 or arr.dtype != dtype):
            raise ValueError(f"{source}: the model array {name!r} must be 1-D {dtype}, "
                             f"got {arr.shape} {arr.dtype}")
    n_weights = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes, sizes[1:]))
    if arrays["params"].size < n_weights:
        raise ValueError(f"{source}: the model file holds {arrays['params'].size} parameters, "
                         f"but layer sizes {list(sizes)} need at least {n_weights}")
    for name in ("params", "running"):
        if not np.isfinite(arrays[name]).all():
            raise ValueError(f"{source}: the model array {name!r} contains NaN or infinity")
    mask = arrays.get("prune_mask")
    if mask is not None and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{source}: the pruning mask holds values other than 0 and 1")
    counter = arrays["counter"]
    if counter.shape != (1,) or counter.dtype.kind not in "iu" or \
            not 0 <= int(counter[0]) < 2**63:
        raise ValueError(f"{source}: the step counter must be one integer in [0, 2**63), "
                         f"got {counter.shape} {counter.dtype}")


def build_model(cls: type[BaseMLP], config: dict, arrays: dict, source: str,
                threads: int | None) -> BaseMLP:
    """A `cls` model built from `config` and set to the state `arrays`, after
    :func:`check_model_arrays`; ValueError names any problem."""
    return init_from_file(cls.__new__(cls), config, arrays, source, threads)


def init_from_file(model: BaseMLP, config: dict, arrays: dict, source: str,
                   threads: int | None) -> BaseMLP:
    """Initialize `model` (fresh from ``__new__``, or being unpickled) from `config` and
    set it to the state `arrays`, after :func:`check_model_arrays`; returns it."""
    check_model_arrays(config, arrays, source)
    try:
        type(model).__init__(model, threads=threads, **config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid model configuration: {exc}") from exc
    model._set_state_arrays(arrays, source)
    return model
