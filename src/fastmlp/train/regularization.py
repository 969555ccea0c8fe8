"""Configuration of the regularizers that run inside the engine's training step:
weight and activity penalties, input noise, random image shifts and FGSM adversarial
examples; and the stratified split used for early stopping. Each ``*_config``
validates its arguments and returns the tuple the engine (and the reference) take."""

from __future__ import annotations

import numpy as np

from fastmlp.validation import check_float, check_int

BATCH_NORM_CODES = {False: 0, None: 0, True: 1, "before": 1, "after": 2}


def penalty_config(
    l2: float = 0.0,
    l1: float = 0.0,
    l1_proximal: bool = False,
    penalize_biases: bool = False,
    activity_l1: float = 0.0,
    activity_l2: float = 0.0,
) -> tuple:
    """Penalties added to the mean loss:

    * ``l2``: ``l2/2 * sum W^2`` (gradient ``l2 W``), the course's weight decay;
    * ``l1``: ``l1 * sum |W|`` by its subgradient ``l1 sign(W)`` (sign(0) = 0), or with
      ``l1_proximal=True`` by soft-thresholding ``w <- sign(w) max(|w| - lr l1, 0)``
      after each update (exact zeros);
    * ``activity_l1`` / ``activity_l2``: ``mean over samples of sum |a|`` (or ``sum a^2/2``)
      over the hidden units' activations (sparse representations).

    Biases and batch-norm parameters are excluded unless ``penalize_biases=True``.
    """
    vals = [check_float(v, name, low=0.0) for v, name in
            ((l2, "l2"), (l1, "l1"), (activity_l1, "activity_l1"),
             (activity_l2, "activity_l2"))]
    return (vals[0], vals[1], int(bool(l1_proximal)), int(bool(penalize_biases)), vals[2], vals[3])


def augment_config(
    n_features: int,
    input_noise: float = 0.0,
    shift: int = 0,
    image_shape: tuple | None = None,
    adversarial_eps: float = 0.0,
    adversarial_ratio: float = 0.5,
    rotate: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
) -> tuple:
    """Training-time input transformations, applied in the batch-gather step in this
    order (affine map, shift, noise, FGSM), each sample with its own draws from the
    model's seed and the step counter (reproducible, independent of the thread count):

    * ``rotate``, ``scale``, ``shear`` with ``image_shape``: each image is mapped about its
      centre by a rotation of U(-rotate, rotate) degrees (in [0, 180]; positive turns
      the content counterclockwise as displayed, rows pointing down), a scaling by
      U(1 - scale, 1 + scale) (scale in [0, 1)) and a horizontal shear of U(-shear, shear)
      degrees (in [0, 60]), resampled bilinearly with zero fill outside the image;
    * ``shift`` with ``image_shape=(height, width[, channels])``: each sample moves by a
      random whole number of pixels in [-shift, shift] along each axis, zero-filled;
    * ``input_noise``: standard deviation of Gaussian noise added to every input;
    * ``adversarial_eps``: FGSM — a fraction ``adversarial_ratio`` of every batch is
      replaced by ``x + eps * sign(dLoss/dx)``, the gradient taken through the current
      network (Goodfellow et al. 2015).
    """
    noise = check_float(input_noise, "input_noise", low=0.0)
    shift = check_int(shift, "shift", 0)
    rotate = check_float(rotate, "rotate", low=0.0)
    scale = check_float(scale, "scale", low=0.0, high=1.0)
    shear = check_float(shear, "shear", low=0.0)
    for name, value, top in (("rotate", rotate, 180), ("shear", shear, 60)):
        if value > top:
            raise ValueError(f"{name} must lie in [0, {top}] degrees, got {value}")
    h = w = c = 0
    images = [name for name, v in (("shift", shift), ("rotate", rotate), ("scale", scale),
                                   ("shear", shear)) if v > 0]
    if images:
        if image_shape is None:
            raise ValueError(f"{images[0]} needs image_shape=(height, width[, channels])")
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
            raise ValueError(
                f"image_shape must be (height, width[, channels]), got {image_shape!r}")
        h, w = (check_int(v, "image_shape", 1) for v in image_shape[:2])
        c = check_int(image_shape[2], "image_shape", 1) if len(image_shape) == 3 else 1
        if h * w * c != n_features:
            raise ValueError(f"image_shape {tuple(image_shape)} has {h * w * c} values but X "
                             f"has {n_features} features")
        if shift > 0 and shift >= max(h, w):
            raise ValueError(f"shift ({shift}) must be smaller than the image ({h}x{w})")
    eps = check_float(adversarial_eps, "adversarial_eps", low=0.0)
    ratio = check_float(adversarial_ratio, "adversarial_ratio", low=0.0)
    if ratio > 1:
        raise ValueError(f"adversarial_ratio must lie in [0, 1], got {ratio}")
    return (noise, shift, h, w, c, eps, ratio, rotate, scale, shear)


def stratified_split(labels: np.ndarray | None, n: int, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): `fraction` of every class (at least one sample each
    when it has two or more) goes to validation; without labels a plain random split."""
    fraction = check_float(fraction, "validation_fraction", low=0.0)
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        k = max(1, int(round(n * fraction)))
        val = order[:k]
    else:
        val = []
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            k = int(round(len(idx) * fraction))
            if len(idx) >= 2:
                k = min(max(k, 1), len(idx) - 1)
            val.append(idx[:k])
        val = np.concatenate(val)
    if len(val) == 0 or len(val) == n:
        raise ValueError(f"validation_fraction={fraction} leaves no training or no "
                         f"validation data for {n} samples")
    mask = np.zeros(n, dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)
