"""Tied weights (parameter sharing): a dense layer that uses another layer's weight matrix,
as it is or transposed, e.g. an autoencoder whose decoder is the encoder's transpose, or
one square matrix repeated across layers.

The semantics are PyTorch's when a module reuses a ``Parameter`` (``F.linear(h,
enc.weight.t())``): the shared matrix is one parameter, its gradient is the sum of its
uses' gradients (each transposed back), and penalties, clipping and the optimizer (one
state, one update) see it once. Biases are never shared.

Storage: the flat parameter vector keeps a copy of the shared matrix in each tied layer's
weights (so every layer reads its own, and the layout does not change); the copies follow
their source whenever parameters are set or updated (:func:`materialize`). Gradient
vectors hold the shared gradient at the source and zeros at the tied layers
(:func:`fold`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_TRANSPOSE = "transpose"


@dataclass(frozen=True)
class Tie:
    """Dense layer `layer` uses the weight matrix of dense layer `source`.

    Parameters
    ----------
    layer : int
        The layer that reuses the weights (0 is the first dense layer).
    source : int
        The layer that owns them; it must not itself be tied.
    transpose : bool, default False
        Use the transpose: layer `layer`'s weights (shape ``(n_layer, n_layer+1)``) are
        ``weights[source].T``.
    """

    layer: int
    source: int
    transpose: bool = False


def check_ties(ties: object, sizes: Sequence[int]) -> tuple[Tie, ...]:
    """`ties` as Tie objects sorted by layer, checked against the layer sizes `sizes`.

    `ties` is None, a mapping ``{layer: source}`` / ``{layer: (source, "transpose")}``
    (or ``(source, bool)``), or a sequence of :class:`Tie` or ``(layer, source,
    transpose)`` triples (what ``config()`` writes). TypeError for wrong types, ValueError
    naming the problem for layers out of range, a layer tied to itself, a layer tied twice,
    a chain (a source that is itself tied) and shapes that do not match."""
    if ties is None:
        return ()
    if isinstance(ties, Mapping):
        items = [_from_mapping(layer, value) for layer, value in ties.items()]
    elif isinstance(ties, Sequence) and not isinstance(ties, (str, bytes)):
        items = [_from_item(item) for item in ties]
    else:
        raise TypeError(f"ties must be None, a dict {{layer: source}} or a list of Tie, got "
                        f"{type(ties).__name__}")
    n_layers = len(sizes) - 1
    seen: set[int] = set()
    for t in items:
        for name, value in (("layer", t.layer), ("source", t.source)):
            if not 0 <= value < n_layers:
                raise ValueError(f"tie {t}: {name} {value} is not a dense layer (0 to "
                                 f"{n_layers - 1})")
        if t.layer == t.source:
            raise ValueError(f"tie {t}: layer {t.layer} cannot be tied to itself")
        if t.layer in seen:
            raise ValueError(f"layer {t.layer} is tied more than once")
        seen.add(t.layer)
        want = weight_shape(sizes, t.source)
        want = want[::-1] if t.transpose else want
        if weight_shape(sizes, t.layer) != want:
            raise ValueError(f"tie {t}: layer {t.layer}'s weights have shape "
                             f"{weight_shape(sizes, t.layer)}, but layer {t.source}'s "
                             f"{'transposed ' if t.transpose else ''}are {want}")
    for t in items:
        if t.source in seen:
            raise ValueError(f"tie {t}: layer {t.source} is itself tied; tie layer {t.layer} "
                             f"to the layer that owns the weights")
    return tuple(sorted(items, key=lambda t: t.layer))


def weight_shape(sizes: Sequence[int], layer: int) -> tuple[int, int]:
    """Shape ``(n_in, n_out)`` of dense layer `layer`'s weights."""
    return (sizes[layer], sizes[layer + 1])


def _index(value: object, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"a tie's {what} must be an int, got {value!r}")
    return int(value)


def _transpose_flag(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value == _TRANSPOSE:
        return True
    raise TypeError(f"a tie's mode must be 'transpose' or a bool, got {value!r}")


def _from_mapping(layer: object, value: object) -> Tie:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise TypeError(f"ties[{layer!r}] must be a source layer or (source, "
                            f"'transpose'), got {value!r}")
        return Tie(_index(layer, "layer"), _index(value[0], "source"),
                   _transpose_flag(value[1]))
    return Tie(_index(layer, "layer"), _index(value, "source"))


def _from_item(item: object) -> Tie:
    if isinstance(item, Tie):
        return Tie(_index(item.layer, "layer"), _index(item.source, "source"),
                   _transpose_flag(item.transpose))
    if not isinstance(item, (tuple, list)) or len(item) != 3:
        raise TypeError(f"each tie must be a Tie or a (layer, source, transpose) triple, got "
                        f"{item!r}")
    return Tie(_index(item[0], "layer"), _index(item[1], "source"), _transpose_flag(item[2]))


def _weights(flat: np.ndarray, layout: Sequence[tuple], layer: int) -> np.ndarray:
    """The view of dense layer `layer`'s weights in the flat vector (layout as
    ``BaseMLP._backend_layout``)."""
    w0, b0, n_in, n_out = layout[layer][:4]
    return flat[w0:b0].reshape(n_in, n_out)


def shared(flat: np.ndarray, layout: Sequence[tuple], tie: Tie) -> np.ndarray:
    """The weights tied layer ``tie.layer`` uses: its source's in `flat` (transposed)."""
    W = _weights(flat, layout, tie.source)
    return W.T if tie.transpose else W


def materialize(ties: Sequence[Tie], layout: Sequence[tuple], flat: np.ndarray) -> None:
    """Write each tied layer's weights in `flat` (in place) from its source's."""
    for t in ties:
        _weights(flat, layout, t.layer)[...] = shared(flat, layout, t)


def fold(ties: Sequence[Tie], layout: Sequence[tuple], grad: np.ndarray) -> None:
    """Add each tied layer's weight gradient in `grad` (transposed back) to its source's,
    in layer order, and zero it (in place): the gradient of the shared parameters."""
    for t in ties:
        G = _weights(grad, layout, t.layer)
        _weights(grad, layout, t.source)[...] += G.T if t.transpose else G
        G[...] = 0


def check_tied_weights(ties: Sequence[Tie], layout: Sequence[tuple], new: np.ndarray,
                       old: np.ndarray | None) -> None:
    """ValueError unless each tied layer's weights in the flat vector `new` are those its
    (new) source implies, or unchanged from `old`: a tied layer is set through its source.
    With `old` None (a model file's parameters) only the source's weights are accepted."""
    for t in ties:
        W = _weights(new, layout, t.layer)
        if np.array_equal(W, shared(new, layout, t)) or \
                old is not None and np.array_equal(W, _weights(old, layout, t.layer)):
            continue
        tied = f"tied to layer {t.source}'s{' (transposed)' if t.transpose else ''}"
        if old is None:
            raise ValueError(f"layer {t.layer}'s weights differ from those of the layer they "
                             f"are {tied}")
        raise ValueError(f"layer {t.layer}'s weights are {tied}: set layer {t.source}'s "
                         "weights instead")


def as_config(ties: Sequence[Tie]) -> list[list]:
    """The ties as JSON-able ``[layer, source, transpose]`` triples."""
    return [[t.layer, t.source, t.transpose] for t in ties]
