"""What the C-engine model and the NumPy reference share: constructor checks,
initialization and the public model API. A subclass supplies the backend (the
`_backend_*` methods) that computes; :mod:`fastmlp.train` holds the training loop."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fastmlp import serialization
from fastmlp._engine import (  # noqa: F401  (status codes re-exported for the backends)
    MAX_LAYERS,
    STATUS_NONFINITE_GRAD,
    STATUS_NONFINITE_LOSS,
    STATUS_OK,
)
from fastmlp.io.csr import CSRInput, is_sparse
from fastmlp.io.inputs import Features, check_input
from fastmlp.model.activations import canonical_activation
from fastmlp.model.batch_norm_statistics import population_statistics
from fastmlp.model.heads import (HEADS_LOSS, Head, check_heads, head_metrics, heads_config,
                                 pack_targets, split_outputs)
from fastmlp.model.init import (check_bias_init, check_initializer, initialize,
                                output_bias_prior)
from fastmlp.model.locking import ModelLock, reads, writes
from fastmlp.model.losses import get_loss, labels_from_outputs, prepare_targets, reports_accuracy
from fastmlp.model.ties import (Tie, as_config, check_tied_weights, check_ties, fold,
                                materialize)
from fastmlp.pruning import magnitude_mask
from fastmlp.train.history import History
from fastmlp.train.regularization import BATCH_NORM_CODES, penalty_config
from fastmlp.validation import (
    C_INT_MAX,
    SEED_MAX,
    check_dtype,
    check_features,
    check_float,
    check_int,
    check_representable,
    check_sample_weight,
    check_threads,
)
from fastmlp.validation import check_input as check_sparse_or_dense

# Backend methods that change the model run under its write lock, those that read it under
# its read lock (BaseMLP.__init_subclass__ wraps a subclass's own definitions): fit's
# chunks, rollbacks and reseeding exclude readers; see fastmlp.model.locking for the contract.
_BACKEND_WRITERS = ("_backend_set_flat", "_backend_set_running", "_backend_set_prune_mask",
                    "_backend_loss_grad", "_backend_reserve", "_backend_train",
                    "_backend_set_rng_state", "_backend_seed", "_backend_shuffle",
                    "_backend_shuffles",
                    "_backend_curvature", "_backend_jvp")  # (these two share a workspace)
_BACKEND_READERS = ("_backend_flat", "_backend_running", "_backend_predict",
                    "_backend_evaluate", "_backend_rng_state")

if TYPE_CHECKING:
    from fastmlp.model.layer_outputs import LayerActivations
    from fastmlp.optim import Optimizer
    from fastmlp.schedules import Schedule


class BaseMLP:
    """A multilayer perceptron: dense layers, a hidden activation, an output loss.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths from the input to the output layer, e.g. ``[784, 256, 128, 10]``; each in
        [1, 2**31).
    activation : str or sequence of str
        Hidden-layer activation (``identity``, ``sigmoid``/``logistic``, ``tanh``, ``relu``,
        ``leaky_relu``), one name for all hidden layers or one per hidden layer.
    loss : str, optional
        ``cross_entropy`` (the default), ``binary_cross_entropy``, ``mse``, ``hinge``,
        ``multi_hinge``, ``poisson``, ``kl_divergence``, ``symmetric_kl`` or
        ``bhattacharyya``; it fixes the output activation (see
        :mod:`fastmlp.model.losses`). Not with `heads`.
    label_smoothing : float
        For ``cross_entropy`` only, in [0, 1]: each target row t (one-hot for a label)
        becomes ``(1 - label_smoothing) t + label_smoothing / K``, exactly as
        ``torch.nn.CrossEntropyLoss(label_smoothing=)``. Training and the reported losses
        (``evaluate``, ``val_loss``) use the smoothed targets; accuracy does not change.
    init : str
        Weight initializer (see :mod:`fastmlp.model.init`), with parameters in `init_kwargs`.
    init_kwargs : dict, optional
        Parameters of the initializer, e.g. ``{"std": 0.1}`` for ``normal``: finite
        numbers that fit `dtype`.
    bias_init : float, "prior" or sequence
        Initial biases: one constant for every layer (0 by default; e.g. 0.1 for ReLU
        units), or one per dense layer; numbers must fit `dtype`. ``"prior"`` (alone, for
        the output layer with 0 elsewhere, or as the sequence's last entry) sets the output
        biases at the start of the first ``fit`` (while ``training_step`` is 0, from its
        training part of the data, sample weights included) to the constant output that
        fits the targets best: the log class priors for the softmax losses, the logit of
        each output's mean for ``binary_cross_entropy``, the mean for ``mse``, its log for
        ``poisson`` (see :func:`fastmlp.model.init.output_bias_prior`). Until then they
        are 0.
    leaky_slope : float
        Negative-side slope of ``leaky_relu``, in [0, 1).
    dtype : {"float32", "float64"}
        Parameter and compute precision. float32 is the fast path.
    seed : int, optional
        Seeds the initializer, the shuffling and the training randomness (dropout masks,
        noise, shifts), in [0, 2**64). Same seed (and thread count) gives bit-identical
        training. None draws a fresh seed (kept in ``self.seed``).
    threads : int, optional
        Threads for the engine, 1 to 1024 (None: OpenMP's default, i.e.
        ``OMP_NUM_THREADS`` or all cores). Results do not depend on it.
    input_dropout : float
        Dropout rate on the inputs, in [0, 1).
    dropout : float or sequence of float
        Dropout rate on the output of each hidden layer (one rate for all, or one per
        hidden layer), in [0, 1). Masks are drawn in the engine from the model's seed;
        nothing is dropped in ``predict``/``evaluate``.
    dropout_mode : {"inverted", "classic"}
        ``inverted`` scales kept units by 1/(1-p) during training; ``classic`` trains
        unscaled and multiplies the outgoing weights by (1-p) at test time.
    batch_norm : bool, str or sequence
        Batch normalization of hidden layers (``torch.nn.BatchNorm1d`` semantics): False,
        True/``"before"`` (between the affine map and the activation) or ``"after"`` (after
        the activation); one setting for all hidden layers or one per hidden layer.
    bn_momentum, bn_eps : float
        Running-statistics momentum (0.1) and variance epsilon (1e-5), as in PyTorch.
    heads : sequence of fastmlp.Head or dict name -> Head, optional
        Multitask heads on a shared trunk (see :mod:`fastmlp.model.heads`): `layer_sizes`
        then ends at the trunk's last hidden layer, and the output layer is the heads'
        blocks side by side, each with its own loss (no `loss`, `label_smoothing` per
        head) and weight in the objective. Targets are a dict head name -> targets or a
        tuple in head order; ``predict``, ``predict_logits`` and ``predict_labels``
        return a dict name -> array, ``evaluate`` adds each head's loss and accuracy
        under ``"heads"``, ``score`` returns each head's accuracy. Not available with
        heads: ``bias_init="prior"`` and the curvature methods (``hvp``, ``gnvp``,
        ``hessian``).
    input_scale, input_shift : float or array-like of shape (n_features,), optional
        The input transform: the network sees ``x * input_scale + input_shift`` per
        feature (None: scale 1, shift 0; one number for every feature, or one per
        feature), computed in `dtype` from ``x.astype(dtype)``, rounding the product and
        then the sum. ``fit``, ``predict``, ``evaluate`` and every other call that takes X
        apply it, and the model file keeps it, so a model trained on uint8 images with
        ``input_scale=1/255`` predicts from uint8 images. The engine applies it while it
        gathers each batch, so uint8 (or memory-mapped) data are never converted into a
        float copy of the whole array (see :mod:`fastmlp.io.inputs`); e.g. standardize with
        ``input_scale=1/std, input_shift=-mean/std``.
    ties : dict or sequence of Tie, optional
        Tied weights (parameter sharing): ``{layer: source}`` or ``{layer: (source,
        "transpose")}``, or a list of :class:`fastmlp.Tie`, makes dense layer ``layer``
        use layer ``source``'s weight matrix (transposed), e.g. ``ties={1: (0,
        "transpose")}`` for an autoencoder ``[784, 128, 784]`` whose decoder is the
        encoder's transpose. Shapes must match; a source owns its weights (no chains); a
        source may be shared by several layers. Biases stay separate. As in PyTorch when a
        module reuses a ``Parameter``: one parameter, whose gradient is the sum of its
        uses' (transposed back), penalized, clipped and updated once (one optimizer
        state). ``weights[layer]`` reads the shared matrix; :meth:`set_params` sets it
        through the source (see :mod:`fastmlp.model.ties`). Not with pruning or
        ``fold_input_scaling`` of a tied first layer.

    Notes
    -----
    Sparse input: ``fit``, ``predict``, ``predict_logits``, ``predict_labels``,
    ``evaluate``, ``score`` and ``gradients`` take a ``scipy.sparse`` X (any format; CSR is
    used as it is, others are converted once, see :mod:`fastmlp.io.csr`). The engine
    multiplies the sparse rows in the first layer, forward and for its weight gradient;
    the matrix is never made dense. What needs dense input rows raises ValueError with
    sparse X: ``input_dropout``, ``input_noise``, ``shift``, ``rotate``/``scale``/``shear``,
    adversarial training and an input transform (``input_scale``/``input_shift``);
    ``gradients`` returns no input gradient (``"input"`` is None). The curvature methods
    (``hvp``, ``gnvp``, ``jvp``, ``hessian``) take dense X only.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str | Sequence[str] = "relu",
        loss: str | None = None,
        init: str = "he_normal",
        *,
        label_smoothing: float = 0.0,
        init_kwargs: dict | None = None,
        bias_init: float | str | Sequence[float | str] = 0.0,
        leaky_slope: float = 0.01,
        dtype: str = "float32",
        seed: int | None = None,
        threads: int | None = None,
        input_dropout: float = 0.0,
        dropout: float | Sequence[float] = 0.0,
        dropout_mode: str = "inverted",
        batch_norm: bool | str | Sequence = False,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        input_scale: float | Sequence[float] | None = None,
        input_shift: float | Sequence[float] | None = None,
        heads: Sequence[Head] | dict[str, Head] | None = None,
        ties: dict | Sequence[Tie] | None = None,
    ) -> None:
        self._lock = ModelLock()
        self._heads = None if heads is None else check_heads(heads)
        if self._heads is not None:
            if loss is not None:
                raise ValueError("a model with heads takes no loss: each head has its own")
            if isinstance(layer_sizes, Sequence) and not isinstance(layer_sizes, (str, bytes)):
                layer_sizes = [*layer_sizes, sum(h.size for h in self._heads)]  # + the heads
        self._sizes = _check_layer_sizes(layer_sizes)
        self._ties = check_ties(ties, self._sizes)
        self._threads_arg = threads
        n_hidden = len(self._sizes) - 2
        self._activations = _per_hidden(activation, n_hidden, "activations",
                                        canonical_activation, str)
        self._loss = HEADS_LOSS if self._heads else get_loss(loss or "cross_entropy")
        self._label_smoothing = check_float(label_smoothing, "label_smoothing", low=0.0,
                                            high=1.0 + 1e-12)
        if self._label_smoothing > 0 and self._loss.name != "cross_entropy":
            raise ValueError(f"label_smoothing applies to cross_entropy only, not to "
                             f"{self._loss.name}")
        self._dtype = check_dtype(dtype)
        check_initializer(init, init_kwargs)
        self._init = init
        self._init_kwargs = dict(init_kwargs or {})
        for key, value in self._init_kwargs.items():
            name = f"init_kwargs[{key!r}]"
            check_representable(check_float(value, name), name, self._dtype)
        per_layer = isinstance(bias_init, (list, tuple, np.ndarray))
        self._bias_values = [
            v if isinstance(v, str) else check_representable(
                check_float(v, f"bias_init[{l}]" if per_layer else "bias_init"),
                f"bias_init[{l}]" if per_layer else "bias_init", self._dtype)
            for l, v in enumerate(check_bias_init(bias_init, len(self._sizes) - 1,
                                                  self._loss.name))]
        # as given: one number, "prior", or the list of one per layer (JSON-able)
        self._bias_init = bias_init if isinstance(bias_init, str) else \
            self._bias_values if per_layer else self._bias_values[0]
        self._leaky_slope = check_float(leaky_slope, "leaky_slope", low=0.0, high=1.0)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self._seed = check_int(seed, "seed", 0, SEED_MAX)
        rate = lambda r: check_float(r, "dropout rates", low=0.0, high=1.0)  # noqa: E731
        self._dropout = [check_float(input_dropout, "input_dropout", low=0.0, high=1.0)] + \
            _per_hidden(dropout, n_hidden, "dropout rates", rate, (int, float))
        if dropout_mode not in ("inverted", "classic"):
            raise ValueError(f"dropout_mode must be 'inverted' or 'classic', got {dropout_mode!r}")
        self._dropout_mode = dropout_mode
        self._batch_norm = _per_hidden(batch_norm, n_hidden, "batch_norm settings",
                                       _bn_code, (bool, str, type(None)))
        self._bn_momentum = check_float(bn_momentum, "bn_momentum", low=0.0, high=1.0 + 1e-12)
        self._bn_eps = check_float(bn_eps, "bn_eps", positive=True)
        self._input_scale = _check_transform(input_scale, "input_scale", self._sizes[0],
                                             self._dtype)
        self._input_shift = _check_transform(input_shift, "input_shift", self._sizes[0],
                                             self._dtype)
        self._transform = None  # (scale, shift) in the model's dtype, or None: identity
        if input_scale is not None or input_shift is not None:
            n = self._sizes[0]
            self._transform = tuple(
                np.ascontiguousarray(np.broadcast_to(
                    np.asarray(default if v is None else v, dtype=np.float64), (n,)),
                    dtype=self._dtype)
                for v, default in ((self._input_scale, 1.0), (self._input_shift, 0.0)))
        self._counter = 0  # training steps taken: the counter of the step randomness
        self._prune_mask: np.ndarray | None = None
        self._backend_setup(None if threads is None else check_threads(threads))
        self._layout = self._backend_layout()
        rng = np.random.default_rng(self._seed)
        flat = self._backend_flat()
        self._n_params = len(flat)
        for (w0, b0, n_in, n_out, _, _), bias in zip(self._layout, self._bias_values):
            with np.errstate(over="ignore"):  # checked just below
                W = initialize(init, n_in, n_out, rng, **self._init_kwargs).astype(self._dtype)
            if not np.isfinite(W).all():
                raise ValueError(f"init {init!r} with {self._init_kwargs} gave weights that are "
                                 f"not finite in {self._dtype.name}")
            flat[w0 : w0 + n_in * n_out] = W.reshape(-1)
            flat[b0 : b0 + n_out] = 0.0 if bias == "prior" else bias
        self._backend_set_flat(flat)
        self._backend_seed(self._seed)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for names, wrap in ((_BACKEND_WRITERS, writes), (_BACKEND_READERS, reads)):
            for name in names:
                if name in vars(cls):
                    setattr(cls, name, wrap(vars(cls)[name]))

    # -- description ------------------------------------------------------------------------
    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return self._sizes

    @property
    def n_layers(self) -> int:
        """Number of dense (weight) layers."""
        return len(self._sizes) - 1

    @property
    def activation(self) -> list[str]:
        """Activation name of each hidden layer."""
        return list(self._activations)

    @property
    def loss(self) -> str:
        return self._loss.name

    @property
    def heads(self) -> tuple[Head, ...] | None:
        """The multitask heads, in output order (None: one loss)."""
        return self._heads

    @property
    def label_smoothing(self) -> float:
        """Cross-entropy's label smoothing (0: none)."""
        return self._label_smoothing

    @property
    def output_activation(self) -> str:
        return self._loss.output_activation

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def leaky_slope(self) -> float:
        return self._leaky_slope

    @property
    def dropout(self) -> list[float]:
        """Dropout rate on the input of each dense layer (``[input, hidden_1, ...]``)."""
        return list(self._dropout)

    @property
    def batch_norm(self) -> list[str | None]:
        """Batch-norm placement of each hidden layer: None, ``"before"`` or ``"after"``."""
        return [{0: None, 1: "before", 2: "after"}[c] for c in self._batch_norm]

    @property
    def input_scale(self) -> float | list[float] | None:
        """The input transform's scale, as given to the constructor (None: 1)."""
        return self._input_scale

    @property
    def input_shift(self) -> float | list[float] | None:
        """The input transform's shift, as given to the constructor (None: 0)."""
        return self._input_shift

    @property
    def ties(self) -> tuple[Tie, ...]:
        """The tied weights, one :class:`fastmlp.Tie` per tied layer (empty: none)."""
        return self._ties

    @property
    def training_step(self) -> int:
        """Training steps taken so far (the counter of the dropout/noise randomness)."""
        return self._counter

    def __repr__(self) -> str:
        return (
            f"{type(self).__module__}.{type(self).__name__}({list(self._sizes)}, "
            f"activation={self._activations!r}, loss={self.loss!r}, dtype={self._dtype.name!r})"
        )

    # -- parameters ---------------------------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        """Copies of the weight matrices; ``weights[l]`` has shape ``(n_l, n_{l+1})``."""
        return self.get_params()[0]

    @property
    def biases(self) -> list[np.ndarray]:
        """Copies of the bias vectors; ``biases[l]`` has shape ``(n_{l+1},)``."""
        return self.get_params()[1]

    @reads
    def get_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(weights, biases)``, copies."""
        parts = self._split(self._backend_flat())
        return parts["weights"], parts["biases"]

    @writes
    def set_params(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> None:
        """Copy weights and biases in, after checking count, shapes, dtypes and finiteness.

        Values are cast to the model's dtype; float16, complex and non-numeric arrays are
        rejected. Pruned weights stay zero. A tied layer's weights follow its source's: its
        entry must be the new source's matrix (transposed where tied so) or left as it
        was, else ValueError.
        """
        L = self.n_layers
        if len(weights) != L or len(biases) != L:
            raise ValueError(
                f"expected {L} weight matrices and {L} bias vectors, "
                f"got {len(weights)} and {len(biases)}"
            )
        flat = self._backend_flat()
        checked = []
        for l, (W, b) in enumerate(zip(weights, biases)):
            shape_w, shape_b = (self._sizes[l], self._sizes[l + 1]), (self._sizes[l + 1],)
            checked.append((_check_param(W, shape_w, self._dtype, f"weights[{l}]"),
                            _check_param(b, shape_b, self._dtype, f"biases[{l}]")))
        old = flat.copy()
        for (w0, b0, n_in, n_out, _, _), (W, b) in zip(self._layout, checked):
            flat[w0 : w0 + n_in * n_out] = W.reshape(-1)
            flat[b0 : b0 + n_out] = b
        check_tied_weights(self._ties, self._layout, flat, old)
        self._set_flat_masked(flat)

    @writes
    def fold_input_scaling(self, mean: object, scale: object) -> None:
        """Absorb the preprocessing ``x -> (x - mean) / scale`` into the first layer, so the
        model trained on scaled inputs takes raw inputs: ``W0 <- W0 / scale[:, None]`` and
        ``b0 <- b0 - (mean / scale) @ W0``. Equal outputs up to rounding (before a first
        batch-norm layer the same holds, since it sees the same pre-activations)."""
        if any(0 in (t.layer, t.source) for t in self._ties):
            raise ValueError("fold_input_scaling changes the first layer's weights, which are "
                             "tied to another layer's")
        n = self._sizes[0]
        mean = _check_param(mean, (n,), np.dtype(np.float64), "mean")
        scale = _check_param(scale, (n,), np.dtype(np.float64), "scale")
        if not (scale > 0).all():
            raise ValueError("scale must be > 0 for every feature")
        weights, biases = self.get_params()
        W = weights[0].astype(np.float64)
        biases[0] = biases[0] - np.sum((mean / scale)[:, None] * W, axis=0)
        weights[0] = W / scale[:, None]
        self.set_params(weights, biases)

    @reads
    def get_flat_params(self) -> np.ndarray:
        """All learnable parameters as one vector (a copy), in the documented order
        ``[W_0 (row-major), b_0, (gamma_0, beta_0 for a batch-norm layer), W_1, b_1, ...]``;
        ``gradients()["flat"]`` and optimizer state use the same order."""
        return self._backend_flat()

    @writes
    def set_flat_params(self, flat: object) -> None:
        """Set every learnable parameter from a vector ordered as ``get_flat_params()``.
        A tied layer's entries are ignored: its weights follow its source's."""
        arr = _check_param(flat, (self._n_params,), self._dtype, "flat parameters")
        self._set_flat_masked(arr)

    @reads
    def batch_norm_state(self) -> list[dict[str, np.ndarray] | None]:
        """Per hidden layer: None, or copies of ``gamma``, ``beta``, ``running_mean`` and
        ``running_var`` of its batch normalization."""
        flat, running = self._backend_flat(), self._backend_running()
        out = []
        for (_, _, _, n, g0, r0) in self._layout[:-1]:
            out.append(None if g0 < 0 else {
                "gamma": flat[g0 : g0 + n].copy(), "beta": flat[g0 + n : g0 + 2 * n].copy(),
                "running_mean": running[r0 : r0 + n].copy(),
                "running_var": running[r0 + n : r0 + 2 * n].copy()})
        return out

    @writes
    def set_batch_norm_state(self, states: Sequence[dict | None]) -> None:
        """Set batch-norm parameters/statistics from ``batch_norm_state()``-shaped input
        (None entries and missing keys leave that part unchanged)."""
        if len(states) != len(self._layout) - 1:
            raise ValueError(f"expected {len(self._layout) - 1} entries, one per hidden layer")
        flat, running = self._backend_flat(), self._backend_running()
        for l, ((_, _, _, n, g0, r0), st) in enumerate(zip(self._layout[:-1], states)):
            if st is None:
                continue
            if g0 < 0:
                raise ValueError(f"hidden layer {l} has no batch normalization")
            for key, (arr, start) in {"gamma": (flat, g0), "beta": (flat, g0 + n),
                                      "running_mean": (running, r0),
                                      "running_var": (running, r0 + n)}.items():
                if key in st:
                    arr[start : start + n] = _check_param(st[key], (n,), self._dtype,
                                                          f"layer {l} {key}")
            if np.any(running[r0 + n : r0 + 2 * n] < 0):
                raise ValueError(f"layer {l} running_var must be >= 0")
        self._set_flat_masked(flat)
        self._backend_set_running(running)

    @writes
    def recompute_batch_norm_statistics(self, X: object, batch_size: int = 1024) -> None:
        """Replace every batch-norm layer's running mean and variance (what inference uses)
        by the population statistics of its input over all of `X`, typically the training
        set: the exact mean, and the unbiased variance (divided by n - 1, PyTorch's
        convention for ``running_var``).

        One pass over `X` per batch-norm layer, in network order, so each layer is measured
        with the new statistics of the layers below it (inference mode: no dropout),
        `batch_size` rows at a time; blocks are merged in float64, so the result does not
        depend on `batch_size` beyond rounding. Unlike the momentum averages of training,
        the statistics then match the final weights exactly. ``torch.optim.swa_utils.
        update_bn`` instead averages per-batch statistics (equal weights per batch, the
        batches' own unbiased variances), which differs unless the batches are alike.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            At least 2 samples.
        batch_size : int, default 1024
            Rows per block (memory: a few activations of that many rows).

        Raises
        ------
        ValueError
            Without batch normalization, with fewer than 2 samples, or for bad arguments.
        """
        if not any(self._batch_norm):
            raise ValueError("the model has no batch normalization")
        X = self._check_X(X)
        if X.shape[0] < 2:
            raise ValueError(f"population statistics need at least 2 samples, got "
                             f"{X.shape[0]}")
        batch_size = check_int(batch_size, "batch_size", 1, C_INT_MAX)
        stats = population_statistics(self, X, batch_size)
        running = self._backend_running()
        for (_, _, _, n, _, r0), st in zip(self._layout, stats):
            if st is not None:
                running[r0 : r0 + n] = st[0]
                running[r0 + n : r0 + 2 * n] = st[1]
        self._backend_set_running(running)

    def _split(self, flat: np.ndarray) -> dict[str, list]:
        """A flat parameter-shaped vector as lists of per-layer arrays (copies)."""
        parts = {"weights": [], "biases": [], "gamma": [], "beta": []}
        for (w0, b0, n_in, n_out, g0, _) in self._layout:
            parts["weights"].append(flat[w0 : w0 + n_in * n_out].reshape(n_in, n_out).copy())
            parts["biases"].append(flat[b0 : b0 + n_out].copy())
            if g0 >= 0:
                parts["gamma"].append(flat[g0 : g0 + n_out].copy())
                parts["beta"].append(flat[g0 + n_out : g0 + 2 * n_out].copy())
        return parts

    def _set_flat_masked(self, flat: np.ndarray) -> None:
        if self._prune_mask is not None:
            flat = flat * self._prune_mask
        self._backend_set_flat(flat)

    # -- pruning ------------------------------------------------------------------------------
    @writes
    def prune(self, amount: float | Sequence[float], scope: str = "layer") -> list[float]:
        """Magnitude pruning: zero the fraction `amount` of weights with the smallest |w|
        and keep them zero from now on (through forward, backward and every optimizer
        update). ``scope="layer"``: in each layer (`amount` one value, or one per dense
        layer); ``scope="global"``: one threshold over all layers' weights together
        (`amount` one value), so layers with many small weights lose more of them.
        Pruning is cumulative: already-pruned weights count toward the amount. Biases are
        never pruned. Returns the sparsity of each layer. ValueError for a model with tied
        weights."""
        self._refuse_ties("pruning")
        flat = self._backend_flat()
        mask = np.ones_like(flat) if self._prune_mask is None else self._prune_mask.copy()
        slices = [slice(w0, w0 + n_in * n_out) for (w0, _, n_in, n_out, _, _) in self._layout]
        if scope == "global":
            a = check_float(amount, "amount", low=0.0, high=1.0)
            idx = np.concatenate([np.arange(sl.start, sl.stop) for sl in slices])
            mask[idx] = magnitude_mask(flat[idx], mask[idx], a)
        elif scope == "layer":
            for sl, a in zip(slices, _per_layer(amount, self.n_layers)):
                mask[sl] = magnitude_mask(flat[sl], mask[sl], a)
        else:
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        self._prune_mask = mask
        self._backend_set_prune_mask(mask)
        self._set_flat_masked(flat)
        return self.sparsity()

    @writes
    def clear_pruning(self) -> None:
        """Forget the pruning masks (pruned weights stay 0 until training moves them)."""
        self._prune_mask = None
        self._backend_set_prune_mask(None)

    @reads
    def sparsity(self) -> list[float]:
        """Fraction of pruned (masked) weights in each dense layer."""
        if self._prune_mask is None:
            return [0.0] * self.n_layers
        return [float(1 - self._prune_mask[w0 : w0 + a * b].mean())
                for (w0, _, a, b, _, _) in self._layout]

    # -- inference ----------------------------------------------------------------------------
    @reads
    def predict(self, X: object) -> np.ndarray:
        """Network output after the output activation, shape ``(n, n_outputs)``:
        class probabilities for ``cross_entropy``, per-output probabilities for
        ``binary_cross_entropy``, the predicted mean ``exp(logits)`` for ``poisson``, raw
        scores otherwise. Inference mode: no dropout,
        batch norm with running statistics. With heads: a dict head name -> its outputs
        after its loss's output activation."""
        if self._heads:
            return split_outputs(self._heads, self._predict_rows(X, True), True)
        return self._predict_rows(X)

    @reads
    def predict_logits(self, X: object) -> np.ndarray:
        """Network output before the output activation (the last layer's affine output),
        shape ``(n, n_outputs)``: the logits of ``cross_entropy`` and
        ``binary_cross_entropy``; equal to :meth:`predict` for the other losses. With
        heads: a dict head name -> its block of the logits."""
        logits = self._predict_rows(X, logits=True)
        return split_outputs(self._heads, logits, False) if self._heads else logits

    def _predict_rows(self, X: object, logits: bool = False) -> np.ndarray:
        """_backend_predict of X checked as the model's input (a backend that checks the
        rows for NaN and infinity as it predicts overrides this)."""
        return self._backend_predict(self._check_input(X), logits)

    @reads
    def activations(self, X: object) -> list[LayerActivations]:
        """Each dense layer's outputs on X in inference mode (as :meth:`predict`: no
        dropout, batch norm with running statistics), for looking inside the network.

        Computed by a NumPy forward pass over the parameters (see
        :mod:`fastmlp.model.layer_outputs`), equal to the engine's to float rounding; it holds
        every layer's outputs for all of X at once, so pass a sample of a large data set.

        Returns
        -------
        list of fastmlp.model.layer_outputs.LayerActivations
            One per dense layer, input side first, each with ``activation`` (its name),
            ``pre`` (the activation's argument), ``post`` (its value) and ``output`` (what
            the next layer receives); the last entry's ``post`` is ``predict(X)``.
        """
        from fastmlp.model.layer_outputs import layer_outputs  # (it imports fastmlp.reference)

        return layer_outputs(self, self._check_X(X, dense=True))

    def predict_labels(self, X: object) -> np.ndarray:
        """Predicted classes: argmax for the softmax losses (``cross_entropy``,
        ``kl_divergence``, ``symmetric_kl``, ``bhattacharyya``), ``multi_hinge`` and
        ``mse`` with several outputs; 0/1 per output for ``binary_cross_entropy``; -1/+1
        per output for ``hinge`` and single-output ``mse``. With heads: a dict head name
        -> its predicted classes, for the heads that have them."""
        if self._heads:
            return {h.name: labels_from_outputs(get_loss(h.loss), out)
                    for h, out in zip(self._heads, self.predict(X).values())
                    if h.loss != "poisson"}
        return labels_from_outputs(self._loss, self.predict(X))

    @reads
    def evaluate(self, X: object, y: object) -> dict[str, float | None]:
        """Mean data loss (no penalties) and accuracy over ``(X, y)`` in inference mode
        (accuracy None for ``poisson``, and for ``mse`` unless the targets are integer
        labels or class-coded; see :mod:`fastmlp.model.losses`). With heads: ``loss``
        is the weighted sum of the heads' losses (the objective), ``accuracy`` None, and
        ``heads`` a dict head name -> ``{"loss", "accuracy"}`` of that head alone
        (unweighted)."""
        X = self._check_input(X)
        labels, dense = self._targets(y, X.shape[0])
        result = self._evaluate_prepared(X, labels, dense)
        if self._heads:
            logits = self._backend_predict(X, True)
            result["heads"] = head_metrics(self._heads, logits, dense)
        return result

    def score(self, X: object, y: object) -> float | dict[str, float]:
        """Accuracy on ``(X, y)``; a ValueError where there is none (``poisson``, ``mse``
        with targets that are not class-coded). With heads: a dict head name -> accuracy
        of the heads that have one on these targets (ValueError when none has)."""
        if self._heads:
            per_head = self.evaluate(X, y)["heads"]
            scores = {k: v["accuracy"] for k, v in per_head.items() if v["accuracy"] is not None}
            if not scores:
                raise ValueError("no head has an accuracy on these targets; use "
                                 "evaluate(X, y)['heads']")
            return scores
        if not self._loss.has_accuracy:
            raise ValueError(f"{self._loss.name} has no accuracy; use evaluate(X, y)['loss']")
        accuracy = self.evaluate(X, y)["accuracy"]
        if accuracy is None:
            raise ValueError(f"{self._loss.name} has an accuracy only for class targets: "
                             "integer labels, one-hot or ±1 rows, or ±1 for one output")
        return accuracy

    @writes
    def gradients(self, X: object, y: object, *, training: bool = False, step: int | None = None,
                  sample_weight: object = None, **penalties: object) -> dict:
        """The objective on the batch ``(X, y)`` and all its gradients.

        ``training=True`` computes it as a training step would: dropout masks of training
        step `step` (default: the next step) and batch-norm batch statistics (running
        statistics are left alone); otherwise in inference mode. Penalties are given as
        in ``fit`` (``l2``, ``l1``, ``l1_proximal``, ``penalize_biases``, ``activity_l1``,
        ``activity_l2``); the objective is the mean loss (``sum(w * loss) / sum(w)`` with
        ``sample_weight``) plus the penalties.

        Returns a dict: ``loss``, ``weights``, ``biases``, ``gamma``, ``beta`` (lists of
        gradients; gamma/beta of batch-norm layers), ``input`` (dLoss/dX; None for sparse X,
        where it would be a dense array of X's shape) and ``flat`` (the gradient ordered as
        ``get_flat_params()``). With tied weights the shared matrix's gradient (the sum of
        its uses') is its source's entry, and a tied layer's weight gradient is zeros.
        """
        X = self._check_input(X)
        if isinstance(X, Features):  # the engine's gradient call reads one dense array
            X = X.dense()
        labels, dense = self._targets(y, X.shape[0])
        pen = penalty_config(**penalties)
        counter = self._counter if step is None else check_int(step, "step", 0, 2**63 - 1)
        weights = check_sample_weight(sample_weight, X.shape[0], self._dtype)
        loss, flat, dX = self._backend_loss_grad(X, labels, dense, bool(training), pen, counter,
                                                 weights)
        if isinstance(X, CSRInput):
            dX = None
        elif self._transform is not None:  # the chain rule through x * scale + shift
            dX *= self._transform[0]
        return {"loss": loss, **self._split(flat), "input": dX, "flat": flat}

    def loss_and_grad(self, X: object, y: object, *, return_input_grad: bool = False,
                      **options: object) -> tuple:
        """Mean loss over the batch and its gradients.

        Returns ``(loss, dW, db)``, lists shaped like ``weights`` and ``biases``; with
        ``return_input_grad=True`` also ``dX = dloss/dX`` of shape ``X.shape`` (None for
        sparse X). Other
        keyword options are those of :meth:`gradients`.
        """
        g = self.gradients(X, y, **options)
        out = (g["loss"], g["weights"], g["biases"])
        return out + (g["input"],) if return_input_grad else out

    # -- training -----------------------------------------------------------------------------
    def fit(
        self,
        X: object,
        y: object,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float | None = None,
        shuffle: bool | str = True,
        validation_data: tuple | None = None,
        verbose: bool = False,
        *,
        optimizer: Optimizer | None = None,
        lr_schedule: Schedule | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        clip_error_if_nonfinite: bool = True,
        l2: float = 0.0,
        l1: float = 0.0,
        l1_proximal: bool = False,
        penalize_biases: bool = False,
        activity_l1: float = 0.0,
        activity_l2: float = 0.0,
        input_noise: float = 0.0,
        shift: int = 0,
        image_shape: tuple | None = None,
        adversarial_eps: float = 0.0,
        adversarial_ratio: float = 0.5,
        rotate: float = 0.0,
        scale: float = 0.0,
        shear: float = 0.0,
        early_stopping: bool = False,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = False,
        tol: float | None = None,
        n_iter_no_change: int = 10,
        validation_every: int = 1,
        validation_fraction: float | None = None,
        callbacks: list | None = None,
        step_callbacks: list | None = None,
        step_every: int = 100,
        record: str = "epoch",
        record_grad_norms: bool = False,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        resume_from: str | os.PathLike | None = None,
        progress: Callable[[int, int, int, int, float], object] | None = None,
        sample_weight: object = None,
    ) -> History:
        """Train by minibatch gradient descent.

        The engine runs many steps per call (about 0.2 s of work, up to 1 s for very large
        models), so Ctrl-C stops training soon, with the weights of the last finished call.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            Training inputs (bool, int or float; any memory layout). float32/float64/
            float16, uint8/int8, uint16/int16 and int32 arrays and memory maps
            (``np.load(path, mmap_mode="r")``) are read in place, each batch converted as
            it is gathered: no float copy of X is made (see :mod:`fastmlp.io.inputs`). The
            model's ``input_scale``/``input_shift`` apply. Sparse: see the class notes.
        y : array-like
            Targets as the loss expects them: integer class labels ``(n,)`` for
            ``cross_entropy``/``multi_hinge`` (or probabilities ``(n, K)`` for
            ``cross_entropy``), ``(n, K)`` targets for ``mse``, ``binary_cross_entropy``
            (in [0, 1]) and ``hinge`` (±1). With heads: a dict head name -> that head's
            targets, or a tuple in head order (see :mod:`fastmlp.model.heads`); the
            History's losses are then the weighted totals and its accuracies None.
        epochs : int, default 10
            Passes over the data (1 to 2**31 - 1); with `resume_from`, the total including
            the epochs already done.
        batch_size : int, default 32
            Samples per step (1 to 2**31 - 1): 1 is pure stochastic gradient descent,
            ``len(X)`` (or more) full-batch gradient descent. The last batch of an epoch may
            be smaller.
        lr : float, optional
            Learning rate of plain SGD (default 0.01) when no `optimizer` is given; with an
            optimizer, set the rate on the optimizer instead.
        shuffle : {True, "epoch", "once", False, "none"}, default True
            Reshuffle every epoch, shuffle once before the first epoch and keep that order,
            or keep the data's order. Shuffling is seeded by the model's seed.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch (``val_loss``, ``val_accuracy`` in the History).
        verbose : bool, default False
            Print one line per epoch.
        optimizer : fastmlp.optim.Optimizer, optional
            The update rule (default ``SGD(lr)``). Its state lives on the optimizer object,
            so passing the same optimizer to a later ``fit`` continues where this one ended.
        lr_schedule : fastmlp.schedules.Schedule, optional
            Learning rate per epoch or per batch, from the optimizer's ``lr``.
        clip_grad_norm, clip_grad_value : float, optional
            Gradient clipping before each update (``torch.nn.utils`` semantics).
        clip_error_if_nonfinite : bool, default True
            Whether a NaN/inf gradient norm stops training.
        l2, l1 : float, default 0
            Weight penalties ``l2/2 |W|^2`` and ``l1 |W|_1``; the training loss in the
            History includes them, ``val_loss`` does not.
        l1_proximal : bool, default False
            Apply the L1 penalty as a proximal (soft-thresholding) step.
        penalize_biases : bool, default False
            Penalize biases as well as weights.
        activity_l1, activity_l2 : float, default 0
            Penalties on the hidden activations (see
            :func:`fastmlp.train.regularization.penalty_config`).
        input_noise : float, default 0
            Standard deviation of Gaussian noise added to each batch's inputs.
        shift : int, default 0
            Random shifts of up to `shift` pixels of image inputs of shape `image_shape`.
        image_shape : tuple, optional
            ``(height, width)`` or ``(height, width, channels)`` of the inputs, for `shift`,
            `rotate`, `scale` and `shear`.
        adversarial_eps, adversarial_ratio : float
            FGSM examples of step `adversarial_eps` replacing a share `adversarial_ratio`
            of each batch (see :func:`fastmlp.train.regularization.augment_config`).
        rotate, scale, shear : float, default 0
            Random affine maps of image inputs of shape `image_shape`, before the shifts:
            rotation by up to `rotate` degrees either way (at most 180), scaling by a
            factor in [1 - scale, 1 + scale] (scale < 1), horizontal shear by up to `shear`
            degrees (at most 60), about the image centre, each drawn per sample and step
            from the model's seed; bilinear interpolation, zero fill (see
            :func:`fastmlp.train.regularization.augment_config`).
        early_stopping : bool, default False
            Stop when `monitor` has not improved by more than `min_delta` for `patience`
            epochs. Whether it stops early or runs out of epochs, the model ends with the
            best weights seen (``history.best_epoch``).
        monitor : {"val_loss", "val_accuracy"}, default "val_loss"
            The validation metric early stopping watches.
        patience : int, default 5
            Epochs without improvement before early stopping stops.
        min_delta : float, default 0
            The improvement that counts.
        restore_best : bool, default False
            Keep the weights of the best `monitor` value seen (as early stopping does) and
            end the run with them however it ends: epochs used up, a callback returning a
            truthy value, or `tol`. ``history.best_epoch`` says which epoch they are from.
            Needs validation data (without `validation_data`, holds out 0.1 as early
            stopping does).
        tol : float, optional
            Stop once the training loss has failed to improve on its best by more than
            `tol` for more than `n_iter_no_change` consecutive epochs (scikit-learn's rule
            for ``MLPClassifier(early_stopping=False)``; its default there is 1e-4).
            None (the default): never stop on the training loss.
        n_iter_no_change : int, default 10
            The epochs `tol` waits (1 to 2**31 - 1).
        validation_every : int, default 1
            Evaluate the validation data every this many epochs, and after the last
            epoch (1 to 2**31 - 1); in between the History records None. Early stopping
            and `restore_best` judge the evaluated epochs (`patience` still counts
            epochs).
        validation_fraction : float, optional
            Without `validation_data`, hold out this share of the training data (stratified
            by class, seeded by the model's seed) and evaluate it after every epoch; None
            holds out 0.1 with `early_stopping` or `restore_best` and nothing otherwise.
            An error together with `validation_data`.
        callbacks : list of callables, optional
            Each is called as ``callback(model, history)`` after every epoch (the history
            holds that epoch's entry); a truthy return value stops training, with the
            best weights when `restore_best` (or `early_stopping`) is on.
        step_callbacks : list of callables, optional
            Each is called as ``callback(model, history)`` after every `step_every`
            training steps (counted over the whole fit, ``history.steps``); a truthy return
            value stops training at once (``history.stopped_epoch`` is the epoch it
            stopped in; the epoch is not recorded).
        step_every : int, default 100
            Steps between calls of the `step_callbacks` (1 to 2**31 - 1).
        record : {"epoch", "step"}, default "epoch"
            ``"step"`` also keeps every step's loss and learning rate in
            ``history.step_loss`` / ``history.step_lr`` (loss against iterations,
            minibatch noise).
        record_grad_norms : bool, default False
            With ``record="step"``: also keep every step's L2 norm of each dense layer's
            weight gradient in ``history.step_grad_norm`` (one list per step; the gradient
            the update used, after penalties, pruning and clipping), computed by the engine
            inside the step (one pass over the weight gradients, single-threaded, in an
            order that makes it independent of the thread count).
        checkpoint : path, optional
            Write a training checkpoint to this file every `checkpoint_every` epochs and
            after the last one (atomically: the file always holds a complete checkpoint).
            Ctrl-C during an epoch puts the model back to the start of that epoch, writes
            the checkpoint of the epochs completed and re-raises, so that model and
            checkpoint agree and `resume_from` continues exactly.
        checkpoint_every : int, default 1
            Epochs between checkpoints.
        resume_from : path, optional
            Continue the run saved in that checkpoint up to `epochs` in all: same data,
            same model configuration; the result equals the uninterrupted run bit for bit.
            Pass the same kind of optimizer or none (it is rebuilt from the checkpoint).
        progress : callable, optional
            Called after every chunk of engine steps (about 0.2 s of work) as
            ``progress(epoch, epochs, samples_done, n, mean_loss_so_far)``.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative per-sample weights: each batch's loss is ``sum(w * loss) /
            sum(w)`` (scikit-learn's rule), and so is the epoch loss in the History.
            Validation metrics and batch-norm statistics are unweighted.

        Returns
        -------
        History
            Per epoch: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``,
            ``time``, ``samples_per_s``, per-layer ``grad_norm``; and ``best_epoch``,
            ``stopped_epoch``.

        Raises
        ------
        ValueError, TypeError
            For invalid data or arguments; the message names the argument.
        fastmlp.TrainingDivergedError
            If a batch loss (or a clipped gradient norm) becomes NaN or infinite, or the
            parameters do. The model keeps the last weights and optimizer state that gave
            a finite loss.
        """
        options = dict(locals())  # every argument goes to the loop unchanged
        del options["self"], options["X"], options["y"]
        from fastmlp.train import FitOptions, fit

        with self._lock.fitting():  # one fit at a time; readers may run between its chunks
            return fit(self, X, y, FitOptions(**options))

    @writes
    def _apply_bias_prior(self, labels, dense, weights) -> None:
        """Before the first training step, set the output biases to the prior of the
        training targets when ``bias_init`` asks for it (see the class docstring)."""
        if self._bias_values[-1] != "prior" or self._counter != 0:
            return
        b = output_bias_prior(self._loss.name, labels, dense, weights, self._sizes[-1],
                              self._label_smoothing)
        flat = self._backend_flat()
        b0 = self._layout[-1][1]
        flat[b0 : b0 + len(b)] = b  # finite: logs of frequencies >= 1/(2n), or a mean
        self._set_flat_masked(flat)

    # -- model files and pickling ---------------------------------------------------------------
    def config(self) -> dict:
        """The constructor arguments that define this model (JSON-able)."""
        if self._heads:  # the trunk's sizes; the heads give the outputs and their losses
            return {**self._config(), "layer_sizes": list(self._sizes[:-1]), "loss": None,
                    "heads": heads_config(self._heads)}
        return self._config()

    def _config(self) -> dict:
        ties = {"ties": as_config(self._ties)} if self._ties else {}  # absent without ties,
        # so that versions older than tied weights still read an untied model's file
        return {
            "layer_sizes": list(self._sizes), "activation": list(self._activations),
            "loss": self._loss.name, "label_smoothing": self._label_smoothing,
            "init": self._init, "init_kwargs": self._init_kwargs,
            "bias_init": self._bias_init, "leaky_slope": self._leaky_slope,
            "dtype": self._dtype.name, "seed": self._seed,
            "input_dropout": self._dropout[0], "dropout": self._dropout[1:],
            "dropout_mode": self._dropout_mode, "batch_norm": self.batch_norm,
            "bn_momentum": self._bn_momentum, "bn_eps": self._bn_eps,
            "input_scale": self._input_scale, "input_shift": self._input_shift,
            **ties,
        }

    @reads
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"params": self._backend_flat(), "running": self._backend_running(),
                  "counter": np.array([self._counter], dtype=np.int64)}
        if self._prune_mask is not None:
            arrays["prune_mask"] = self._prune_mask.copy()
        return arrays

    @writes
    def _set_state_arrays(self, arrays: dict[str, np.ndarray], source: str) -> None:
        expected = {"params": (self._n_params,), "running": self._backend_running().shape}
        for name, shape in expected.items():
            if name not in arrays or arrays[name].shape != shape:
                raise ValueError(f"{source}: array {name!r} is missing or has the wrong shape")
        if not (np.isfinite(arrays["params"]).all() and np.isfinite(arrays["running"]).all()):
            raise ValueError(f"{source}: parameters contain NaN or infinity")
        mask = arrays.get("prune_mask")
        if mask is not None:
            if mask.shape != (self._n_params,) or not np.isin(mask, (0, 1)).all():
                raise ValueError(f"{source}: invalid pruning mask")
            if self._ties:
                raise ValueError(f"{source}: a pruning mask for a model with tied weights")
            self._prune_mask = mask.astype(self._dtype)
            self._backend_set_prune_mask(self._prune_mask)
        params = arrays["params"].astype(self._dtype)
        try:  # (safetensors files are checked the same way)
            check_tied_weights(self._ties, self._layout, params, None)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        self._backend_set_flat(params)
        self._backend_set_running(arrays["running"].astype(self._dtype))
        self._counter = int(arrays.get("counter", np.zeros(1, np.int64))[0])

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to `path` (atomically; see :mod:`fastmlp.serialization`).
        ``fastmlp.load(path)`` reads it back."""
        data = serialization.dumps(self._kind(), self.config(), self._state_arrays())
        serialization.write_atomic(path, data)

    def _kind(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}"

    def __getstate__(self) -> dict:
        return {"fastmlp": serialization.dumps(self._kind(), self.config(), self._state_arrays()),
                "threads": self._threads_arg}

    def __setstate__(self, state: dict) -> None:
        from fastmlp.io.loading import init_from_file

        _, config, arrays = serialization.loads(state["fastmlp"], "pickled model")
        init_from_file(self, config, arrays, "pickled model", state.get("threads"))

    # -- helpers ------------------------------------------------------------------------------
    def _check_X(self, X: object, name: str = "X", dense: bool = False,
                 finite: bool = True) -> Features | np.ndarray:
        """`X` checked as the model's input (see :mod:`fastmlp.io.inputs`): the rows the
        engine reads in place, or with `dense` one C-contiguous array of the model's
        dtype, converted and transformed (for the calls that need one). ``finite=False``:
        float rows are not checked for NaN and infinity (the caller's engine call does)."""
        if is_sparse(X) or isinstance(X, CSRInput):  # where sparse X is not taken
            check_features(X, self._sizes[0], self._dtype, name)  # raises, naming the way out
        features = check_input(X, self._sizes[0], self._dtype, self._transform, name,
                               self._backend_threads(), finite)
        return features.dense() if dense else features

    def _check_input(self, X: object, name: str = "X",
                     finite: bool = True) -> Features | CSRInput:
        """_check_X, or for a scipy.sparse X its checked CSR form; ValueError when the
        model needs dense input rows (input dropout, an input transform)."""
        if not (is_sparse(X) or isinstance(X, CSRInput)):
            return self._check_X(X, name, finite=finite)
        out = check_sparse_or_dense(X, self._sizes[0], self._dtype, name,
                                    self._backend_threads())
        if self._transform is not None:
            raise ValueError(f"input_scale/input_shift apply to dense {name} only (a shift "
                             f"would fill the zeros). Pass {name}.toarray()")
        if self._dropout[0] > 0:
            raise ValueError(f"input_dropout needs dense {name}: the engine multiplies sparse "
                             f"rows as they are. Pass {name}.toarray() or drop input_dropout")
        return out

    def _refuse_ties(self, what: str) -> None:
        if self._ties:
            raise ValueError(f"{what}: not implemented for models with tied weights")

    def _targets(self, y: object, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._heads:
            return None, pack_targets(self._heads, y, n, self._dtype)
        return prepare_targets(self._loss, y, n, self._sizes[-1], self._dtype)

    def _evaluate_prepared(self, X, labels, dense) -> dict[str, float | None]:
        loss_sum, correct_sum = self._backend_evaluate(X, labels, dense)
        n = X.shape[0]
        return {
            "loss": loss_sum / n,
            "accuracy": correct_sum / n if reports_accuracy(self._loss, dense) else None,
        }

    # -- backend interface (implemented by subclasses) ------------------------------------------
    def _backend_setup(self, threads: int | None) -> None:
        """Allocate parameters (zeros; BN gamma 1 and running variance 1)."""
        raise NotImplementedError

    def _backend_layout(self) -> list[tuple]:
        """Per dense layer: (W offset, b offset, n_in, n_out, gamma offset or -1,
        running-statistics offset or -1) in the flat vectors."""
        raise NotImplementedError

    def _params_view(self) -> np.ndarray:
        """The live flat parameter array (layout ``_backend_layout``)."""
        raise NotImplementedError

    def _running_view(self) -> np.ndarray:
        """The live flat batch-norm running statistics."""
        raise NotImplementedError

    @reads
    def _backend_flat(self, out: np.ndarray | None = None) -> np.ndarray:
        """A copy of all learnable parameters, flat (into `out` when given)."""
        return _copy_into(self._params_view(), out)

    @writes
    def _backend_set_flat(self, flat: np.ndarray) -> None:
        """Set the parameters from `flat`; tied layers' weights follow their sources."""
        np.copyto(self._params_view(), flat)
        materialize(self._ties, self._layout, self._params_view())

    @reads
    def _backend_running(self, out: np.ndarray | None = None) -> np.ndarray:
        """A copy of the batch-norm running statistics (into `out` when given)."""
        return _copy_into(self._running_view(), out)

    @writes
    def _backend_set_running(self, running: np.ndarray) -> None:
        np.copyto(self._running_view(), running)

    def _backend_set_prune_mask(self, mask: np.ndarray | None) -> None:
        raise NotImplementedError

    def _backend_predict(self, X: np.ndarray, logits: bool = False) -> np.ndarray:
        """Outputs after the output activation (before it with logits=True)."""
        raise NotImplementedError

    def _backend_threads(self) -> int:
        """Threads for the passes over a call's input, such as its NaN check (0: all)."""
        return 0

    def _backend_loss_grad(self, X, labels, dense, training, penalty, counter,
                           weights=None) -> tuple:
        """(objective, flat gradient copy, dLoss/dX); the data loss weighted by `weights`."""
        raise NotImplementedError

    def _backend_evaluate(self, X, labels, dense) -> tuple[float, float]:
        raise NotImplementedError

    def _backend_reserve(self, batch_size: int, sparse: bool = False) -> None:
        """Make room for training batches of up to `batch_size` rows of dense X (of sparse
        X, a CSRInput, with `sparse`)."""
        raise NotImplementedError

    def _backend_train(self, X, labels, dense, order, start, n_steps, batch_size, rates,
                       optimizer, state, clip, penalty, augment, weights=None,
                       snapshot=None, grad_norms=None) -> tuple:
        """Run n_steps steps from step counter self._counter on batches of `order` (one or
        more epochs of len(X) indices) from position `start`, a batch never crossing an
        epoch's end (batch losses weighted by the per-sample `weights` when given); update
        `state` and the counter; return (status, done, losses, accuracies). `snapshot` (flat
        parameters, running statistics, state dict; see fastmlp.train.state.snapshot)
        receives, in place, the state at the start once the first step's loss is finite (its
        "step" entry is left to the caller). `grad_norms`
        (None, or float64 (n_steps, n_layers)) receives each step's L2 norm of every dense
        layer's weight gradient, the one the update used (after penalties, pruning mask
        and clipping)."""
        raise NotImplementedError

    def _backend_last_grad(self) -> np.ndarray:
        """The flat gradient of the last training step (or loss_grad call)."""
        raise NotImplementedError

    def _backend_rng_state(self) -> np.ndarray:
        """The shuffling generator's state (4 uint64)."""
        raise NotImplementedError

    def _backend_set_rng_state(self, state: np.ndarray) -> None:
        raise NotImplementedError

    def _backend_seed(self, seed: int) -> None:
        raise NotImplementedError

    def _backend_shuffle(self, order: np.ndarray) -> None:
        raise NotImplementedError

    def _backend_shuffles(self, order: np.ndarray, n: int) -> list[np.ndarray]:
        """Shuffle the consecutive blocks of n entries of `order` in place, one after
        another, as as many _backend_shuffle calls would; returns the generator's state
        before each shuffle and after the last (a backend may do it in one locked call)."""
        states = []
        for e in range(len(order) // n):
            states.append(self._backend_rng_state())
            self._backend_shuffle(order[e * n : (e + 1) * n])
        states.append(self._backend_rng_state())
        return states

    # -- curvature (second-order information) ------------------------------------------------
    @writes
    def hvp(self, X: object, y: object, v: object, *, training: bool = False,
            step: int | None = None, sample_weight: object = None,
            **penalties: object) -> np.ndarray:
        """Hessian-vector product ``H v`` of the objective of :meth:`gradients` on ``(X, y)``.

        Computed exactly (to rounding) by Pearlmutter's R-operator -- a forward-mode pass
        over the forward and backward passes -- at about twice the cost of one gradient,
        over all of X in blocks of rows. `v` and the result are ordered as
        :meth:`get_flat_params`. The objective is the one of :meth:`gradients` with the
        same `training`, `step`, `sample_weight` and penalties (``l2``, ``l1``, ...); L1
        penalties contribute nothing (their second derivative is 0 where it exists), the
        hinge losses only through the network (they are piecewise linear in the logits).
        With tied weights it is the Hessian in the shared parameters: a tied layer's
        entries of `v` are ignored and those of the result are zero.

        Returns
        -------
        numpy.ndarray
            ``H v``, shape ``(n_params,)``, the model's dtype.
        """
        return self._curvature(X, y, v, False, training, step, sample_weight, penalties)

    @writes
    def gnvp(self, X: object, y: object, v: object, *, training: bool = False,
             step: int | None = None, sample_weight: object = None,
             **penalties: object) -> np.ndarray:
        """Gauss-Newton(-Bartlett) product ``G v = J^T H_L J v`` (plus the penalties'
        Hessian, e.g. ``l2 v``) of the objective of :meth:`gradients`.

        J is the Jacobian of the logits with respect to the parameters and H_L the Hessian
        of the loss with respect to the logits (Schraudolph 2002). G is positive
        semi-definite for every loss here (each is convex in the logits), which makes it
        the curvature of choice for Hessian-free optimization. Arguments as :meth:`hvp`.
        """
        return self._curvature(X, y, v, True, training, step, sample_weight, penalties)

    @writes
    def jvp(self, X: object, v_params: object = None, v_inputs: object = None, *,
            training: bool = False, step: int | None = None) -> np.ndarray:
        """Forward-mode Jacobian-vector product of the logits (:meth:`predict_logits`):
        ``J_theta v_params + J_x v_inputs``, shape ``(n, n_outputs)``.

        `v_params` is ordered as :meth:`get_flat_params`, `v_inputs` shaped like X; either
        may be None (zero). A tied layer's entries of `v_params` are ignored (its weights
        move with its source's). With ``training=True`` the network is the one of training step
        `step` (dropout masks, batch statistics), as in :meth:`gradients`.
        """
        X = self._check_X(X, dense=True)
        v = np.zeros(self._n_params, self._dtype) if v_params is None else \
            _check_param(v_params, (self._n_params,), self._dtype, "v_params")
        vx = None if v_inputs is None else _check_param(v_inputs, X.shape, self._dtype,
                                                         "v_inputs")
        if vx is not None and self._transform is not None:  # the tangent of x * scale + shift
            vx *= self._transform[0]
        counter = self._counter if step is None else check_int(step, "step", 0)
        return self._backend_jvp(X, self._tied_vector(v), vx, bool(training), counter)

    @writes
    def hessian(self, X: object, y: object, *, gauss_newton: bool = False,
                training: bool = False, step: int | None = None, sample_weight: object = None,
                **penalties: object) -> np.ndarray:
        """The dense Hessian (or, with `gauss_newton`, Gauss-Newton matrix) of the objective
        of :meth:`gradients`, shape ``(n_params, n_params)``, ordered as
        :meth:`get_flat_params`: for small networks (n_params products, n_params^2 memory).

        Column j is ``hvp(X, y, e_j)``; the result is ``(H + H^T) / 2`` of those columns,
        so it is exactly symmetric (the columns agree with their transposes to rounding).
        """
        X, labels, dense, *rest = self._curvature_inputs(X, y, training, step, sample_weight,
                                                         penalties)
        cols = np.empty((self._n_params, self._n_params), self._dtype)
        e = np.zeros(self._n_params, self._dtype)
        for j in range(self._n_params):
            e[j] = 1
            cols[:, j] = self._shared_product(
                lambda u: self._backend_curvature(X, labels, dense, u, gauss_newton, *rest), e)
            e[j] = 0
        return (cols + cols.T) / cols.dtype.type(2)

    def _curvature_inputs(self, X, y, training, step, sample_weight, penalties) -> tuple:
        """(X, labels, dense, training, penalty, counter, weights), checked."""
        if not self._loss.has_curvature:
            raise ValueError(f"Hessian and Gauss-Newton products are not implemented for "
                             f"{self._loss.name}")
        X = self._check_X(X, dense=True)
        labels, dense = self._targets(y, X.shape[0])
        counter = self._counter if step is None else check_int(step, "step", 0)
        weights = check_sample_weight(sample_weight, X.shape[0], self._dtype)
        return X, labels, dense, bool(training), penalty_config(**penalties), counter, weights

    def _curvature(self, X, y, v, gauss_newton, training, step, sample_weight, penalties):
        X, labels, dense, *rest = self._curvature_inputs(X, y, training, step, sample_weight,
                                                         penalties)
        v = _check_param(v, (self._n_params,), self._dtype, "v")
        return self._shared_product(
            lambda u: self._backend_curvature(X, labels, dense, u, gauss_newton, *rest), v)

    def _tied_vector(self, v: np.ndarray) -> np.ndarray:
        """A direction v in the shared parameters as one of every layer's weights (P v): each
        tied layer's entries become its source's (a copy; v itself without ties)."""
        if not self._ties:
            return v
        v = v.copy()
        materialize(self._ties, self._layout, v)
        return v

    def _shared_product(self, product: Callable, v: np.ndarray) -> np.ndarray:
        """``P^T product(P v)``: a curvature product of the per-layer parameters, taken in
        the shared ones (tied layers' entries of v ignored, of the result zero)."""
        out = product(self._tied_vector(v))
        fold(self._ties, self._layout, out)
        return out

    def _backend_curvature(self, X, labels, dense, v, gauss_newton, training, penalty,
                           counter, weights) -> np.ndarray:
        """H v (G v with gauss_newton) of the objective of _backend_loss_grad."""
        raise NotImplementedError

    def _backend_jvp(self, X, v, vx, training, counter) -> np.ndarray:
        """The logits' Jacobian-vector product along parameters v and inputs vx (or None)."""
        raise NotImplementedError


def _copy_into(src: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return src.copy()
    np.copyto(out, src)
    return out


def _per_hidden(value, n_hidden, what, convert, scalar_types):
    """One setting for every hidden layer, or a sequence with one per hidden layer."""
    if isinstance(value, scalar_types) or not isinstance(value, Sequence):
        return [convert(value)] * n_hidden
    values = [convert(v) for v in value]
    if len(values) != n_hidden:
        raise ValueError(f"got {len(values)} {what} for {n_hidden} hidden layers")
    return values


def _per_layer(value, n_layers):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * n_layers
    values = [check_float(v, "prune amount", low=0.0, high=1.0) for v in value]
    if len(values) != n_layers:
        raise ValueError(f"got {len(values)} prune amounts for {n_layers} layers")
    return values


def _bn_code(value) -> int:
    try:
        return BATCH_NORM_CODES[value]
    except (KeyError, TypeError):
        raise ValueError(
            f"batch_norm must be False, True, 'before' or 'after', got {value!r}"
        ) from None


def _check_layer_sizes(layer_sizes: object) -> tuple[int, ...]:
    if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Sequence):
        raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}")
    sizes = tuple(check_int(s, "every layer size", 1, C_INT_MAX) for s in layer_sizes)
    if not 2 <= len(sizes) <= MAX_LAYERS + 1:
        raise ValueError(
            f"layer_sizes needs 2 to {MAX_LAYERS + 1} entries (inputs, ..., outputs); "
            f"got {len(sizes)}"
        )
    return sizes


def _check_transform(value: object, name: str, n: int, dtype: np.dtype) -> float | list | None:
    """None, one finite number or n of them (a list), each fitting `dtype`."""
    if value is None:
        return None
    if np.ndim(value) == 0:
        return check_representable(check_float(value, name), name, dtype)
    arr = _check_param(value, (n,), np.dtype(np.float64), name)
    for v in arr:
        check_representable(float(v), name, dtype)
    return arr.tolist()


def _check_param(a: object, shape: tuple, dtype: np.dtype, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf" or arr.dtype == np.float16:
        raise TypeError(f"{name} must be a float32/float64 (or integer) array, got {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return out


