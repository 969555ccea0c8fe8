"""Multitask heads: one shared trunk, several output heads, each with its own loss.

A model built with ``heads=`` has one output layer whose columns are the heads' blocks
side by side, in the order the heads were declared. Its objective is

    sum over heads h of weight_h * (mean over the batch of head h's loss on its block),

each head's loss exactly as the single-loss model's of that name (softmax over the block
for ``cross_entropy``, sigmoid for ``binary_cross_entropy``, identity for ``mse``, exp
for ``poisson``, ...; see :mod:`fastmlp.model.losses`), so that it equals
``sum(w_h * torch_loss_h(logits[:, block_h], y_h))``. The engine computes it in its loss
step from a table of the blocks (``csrc/heads.c``); the backward pass and the optimizers
are those of any model. Sample weights weight whole samples (every head's loss).

Targets are given per head, as a dict ``{name: y}`` or a tuple in head order, each as the
head's loss takes it from a single-loss model, except that a ``cross_entropy`` head takes
integer class labels only (for probability targets use a ``kl_divergence`` head, which
has the same gradient). They are packed into one ``(n, n_outputs)`` array of the model's
dtype that the engine reads: a labels head's class index in the first column of its
block, the target values of the others in their columns.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fastmlp.model.losses import LOSSES, Loss, get_loss, prepare_targets, reports_accuracy

#: the pseudo loss of a model with heads (its ``loss`` property); the engine code is mse's
#: (identity output), never used: the heads table drives the engine's loss step
HEADS_LOSS = Loss("heads", LOSSES["mse"].code, "identity", False, True, False, False)

LABEL_LOSSES = ("cross_entropy", "multi_hinge")  # heads whose targets are class indices
_MAX_LABEL_CLASSES = 2**24  # class indices travel as floats: exact in float32 up to here
_MAX_SIZE = 2**31 - 1


@dataclass(frozen=True)
class Head:
    """One output head of a multitask :class:`fastmlp.MLP`.

    Parameters
    ----------
    name : str
        The head's name: the key of its targets and of its outputs.
    size : int
        Its outputs (classes for ``cross_entropy``), 1 to 2**31 - 1 (2**24 for the
        heads that take class labels: ``cross_entropy``, ``multi_hinge``).
    loss : str, default "cross_entropy"
        Its loss, any of :data:`fastmlp.model.losses.LOSSES`; it fixes the head's output
        activation.
    weight : float, default 1.0
        Its weight in the objective, finite and >= 0 (0: the head does not influence
        training, not even through a non-finite loss).
    label_smoothing : float, default 0.0
        For ``cross_entropy`` heads, in [0, 1], as ``torch.nn.CrossEntropyLoss``'s.
    """

    name: str
    size: int
    loss: str = "cross_entropy"
    weight: float = 1.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a head's name must be a non-empty string, got {self.name!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral):
            raise TypeError(f"head {self.name!r}: size must be an integer, got {self.size!r}")
        loss = get_loss(self.loss)
        limit = _MAX_LABEL_CLASSES if loss.name in LABEL_LOSSES else _MAX_SIZE
        if not 1 <= self.size <= limit:
            raise ValueError(f"head {self.name!r}: size must lie in [1, {limit}], "
                             f"got {self.size}")
        for field, value in (("weight", self.weight), ("label_smoothing", self.label_smoothing)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"head {self.name!r}: {field} must be a number, got {value!r}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"head {self.name!r}: weight must be finite and >= 0, "
                             f"got {self.weight}")
        if not 0 <= self.label_smoothing <= 1:
            raise ValueError(f"head {self.name!r}: label_smoothing must lie in [0, 1], "
                             f"got {self.label_smoothing}")
        if self.label_smoothing > 0 and loss.name != "cross_entropy":
            raise ValueError(f"head {self.name!r}: label_smoothing applies to cross_entropy "
                             f"heads only, not to {loss.name}")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "label_smoothing", float(self.label_smoothing))


def check_heads(heads: object) -> tuple[Head, ...]:
    """`heads` (a sequence of :class:`Head` or of their field dicts, as a model file holds
    them, or a dict name -> Head) as a tuple of Heads; TypeError/ValueError name the
    problem (duplicate names among them)."""
    if isinstance(heads, Mapping):
        items = []
        for name, head in heads.items():
            if isinstance(head, Head) and head.name != name:
                raise ValueError(f"heads[{name!r}] is named {head.name!r}; the names must agree")
            items.append(head)
    elif isinstance(heads, Sequence) and not isinstance(heads, str):
        items = list(heads)
    else:
        raise TypeError(f"heads must be a sequence of fastmlp.Head or a dict name -> Head, "
                        f"got {type(heads).__name__}")
    if not items:
        raise ValueError("heads must hold at least one head")
    out = []
    for head in items:
        if isinstance(head, Mapping):
            try:
                head = Head(**head)
            except TypeError as exc:
                raise TypeError(f"invalid head {dict(head)!r}: {exc}") from None
        if not isinstance(head, Head):
            raise TypeError(f"heads must be fastmlp.Head objects, got {type(head).__name__}")
        out.append(head)
    names = [h.name for h in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate head names: {', '.join(map(repr, duplicates))}")
    return tuple(out)


def head_blocks(heads: Sequence[Head]) -> list[tuple[Head, int, int]]:
    """(head, first column, end column) of each head's block of the outputs."""
    out, offset = [], 0
    for h in heads:
        out.append((h, offset, offset + h.size))
        offset += h.size
    return out


def head_table(heads: Sequence[Head]) -> np.ndarray:
    """The engine's segment table of `heads` (``fastmlp._engine.HEAD_DTYPE`` rows)."""
    from fastmlp._engine import HEAD_DTYPE

    return np.array([(a, h.size, get_loss(h.loss).code, h.loss in LABEL_LOSSES, h.weight,
                      h.label_smoothing) for h, a, _ in head_blocks(heads)], dtype=HEAD_DTYPE)


def per_head(heads: Sequence[Head], y: object, what: str = "y") -> list:
    """One entry of `y` per head, in head order: `y` is a dict name -> value (every head,
    no other key) or a tuple/list in head order."""
    names = [h.name for h in heads]
    if isinstance(y, Mapping):
        unknown = [k for k in y if k not in names]
        if unknown:
            raise ValueError(f"{what} names unknown heads {unknown}; the heads are {names}")
        missing = [n for n in names if n not in y]
        if missing:
            raise ValueError(f"{what} has no targets for the heads {missing}")
        return [y[n] for n in names]
    if isinstance(y, (tuple, list)):
        if len(y) != len(names):
            raise ValueError(f"{what} has {len(y)} entries; the model has {len(names)} heads "
                             f"{names}")
        return list(y)
    raise TypeError(f"a model with heads takes {what} as a dict head name -> targets or a "
                    f"tuple in head order, got {type(y).__name__}")


def pack_targets(heads: Sequence[Head], y: object, n: int, dtype: np.dtype) -> np.ndarray:
    """The targets `y` (per head, see :func:`per_head`), checked as each head's loss takes
    them, packed into the engine's ``(n, n_outputs)`` array of `dtype`."""
    blocks = head_blocks(heads)
    packed = np.zeros((n, blocks[-1][2]), dtype=dtype)
    for (h, a, b), yh in zip(blocks, per_head(heads, y)):
        try:
            labels, dense = prepare_targets(get_loss(h.loss), yh, n, h.size, dtype)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"head {h.name!r}: {exc}") from None
        if h.loss in LABEL_LOSSES:
            if labels is None:
                raise ValueError(f"head {h.name!r}: a {h.loss} head takes integer class labels "
                                 f"of shape (n,); for probability targets use a "
                                 f"kl_divergence head (the same gradient)")
            packed[:, a] = labels
        else:
            packed[:, a:b] = dense
    return packed


def unpack_targets(heads: Sequence[Head], packed: np.ndarray) -> list:
    """Each head's ``(labels, dense)`` as :func:`~fastmlp.model.losses.prepare_targets`
    returns them, from the packed targets."""
    out = []
    for h, a, b in head_blocks(heads):
        if h.loss in LABEL_LOSSES:
            out.append((packed[:, a].astype(np.int32), None))
        else:
            out.append((None, packed[:, a:b]))
    return out


def split_outputs(heads: Sequence[Head], out: np.ndarray, activate: bool) -> dict:
    """Each head's block of the network's outputs `out` (logits), after its loss's output
    activation when `activate`: a dict name -> (n, size) array."""
    from fastmlp.reference.functional import output_activation

    return {h.name: (output_activation(h.loss, out[:, a:b]) if activate
                     else out[:, a:b].copy()) for h, a, b in head_blocks(heads)}


def head_metrics(heads: Sequence[Head], logits: np.ndarray, packed: np.ndarray) -> dict:
    """Each head's mean loss (unweighted, in float64) and accuracy (None where its loss
    has none on these targets) on `logits` against the packed targets."""
    from fastmlp.reference.functional import loss_terms

    out = {}
    for (h, a, b), (labels, dense) in zip(head_blocks(heads), unpack_targets(heads, packed)):
        per_sample, correct, _ = loss_terms(h.loss, logits[:, a:b].astype(np.float64), labels,
                                            dense, smoothing=h.label_smoothing)
        n = max(len(per_sample), 1)
        has = reports_accuracy(get_loss(h.loss), dense)
        out[h.name] = {"loss": float(per_sample.sum() / n),
                       "accuracy": float(correct.sum() / n) if has else None}
    return out


def heads_config(heads: Sequence[Head]) -> list[dict]:
    """The heads as JSON-able dicts (a model file's configuration)."""
    return [asdict(h) for h in heads]


def output_size(config_heads: object) -> int:
    """The outputs of the heads of a model file's configuration (untrusted: each entry is
    checked as :class:`Head` checks it before anything is sized from it)."""
    return sum(h.size for h in check_heads(config_heads))
