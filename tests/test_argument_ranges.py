"""Integer and float arguments are range-checked where they enter: a ValueError naming the
argument, not an OverflowError from the engine later or an infinite parameter."""

from __future__ import annotations

import numpy as np
import pytest

from fastmlp.validation import MAX_THREADS, check_threads
from conftest import make_problem


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seed": 2**64}, "seed must be <= 18446744073709551615"),
        ({"seed": 2**100}, "seed must be <= "),
        ({"layer_sizes": [4, 2**31, 3]}, "every layer size must be <= 2147483647"),
        ({"layer_sizes": [2**63, 3]}, "every layer size must be <= 2147483647"),
        ({"threads": 2**31}, "threads must be <= 1024"),
        ({"threads": 100_000}, "threads must be <= 1024"),
        ({"threads": MAX_THREADS + 1}, "threads must be <= 1024"),
        ({"bias_init": 1e39}, r"bias_init=1e\+39 does not fit in float32"),
        ({"bias_init": -4e38}, r"bias_init=-4e\+38 does not fit in float32"),
        ({"init": "normal", "init_kwargs": {"std": 1e39}}, r"init_kwargs\['std'\]=1e\+39"),
        ({"init": "constant", "init_kwargs": {"value": 1e39}}, "does not fit in float32"),
        ({"init": "normal", "init_kwargs": {"mean": float("inf")}}, "must be finite"),
        ({"init": "normal", "init_kwargs": {"std": 3e38}}, "not finite in float32"),
        ({"init": "sparse", "init_kwargs": {"k": 10**400}}, "integer of 401 digits"),
        ({"bias_init": -(10**400)}, "bias_init must be finite"),
    ],
)
def test_out_of_range_constructor_arguments(impl, kwargs, match):
    args = {"layer_sizes": [4, 5, 3], "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        impl(**args)


def test_non_numeric_init_kwargs_are_a_type_error(impl):
    with pytest.raises(TypeError, match=r"init_kwargs\['std'\] must be a number"):
        impl([4, 5, 3], init="normal", init_kwargs={"std": "wide"})


def test_the_extremes_that_fit_are_accepted(impl):
    X, y = make_problem("cross_entropy", 12, 4, 3, seed=0)
    m = impl([4, 5, 3], seed=2**64 - 1, threads=1)
    m.fit(X, y, epochs=1, batch_size=2**31 - 1)  # clamped to the 12 samples
    assert m.seed == 2**64 - 1 and m.training_step == 1
    wide = impl([4, 5, 3], bias_init=1e39, dtype="float64")
    assert all((b == 1e39).all() for b in wide.biases)
    big = impl([4, 5, 3], bias_init=3e38)  # fits float32
    assert all(np.isfinite(b).all() for b in big.biases)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"epochs": 2**31}, "epochs must be <= 2147483647"),
        ({"batch_size": 2**31}, "batch_size must be <= 2147483647"),
        ({"batch_size": 2**64}, "batch_size must be <= 2147483647"),
    ],
)
def test_out_of_range_fit_arguments(impl, options, match):
    X, y = make_problem("cross_entropy", 12, 4, 3, seed=0)
    m = impl([4, 5, 3], seed=0)
    before = m.get_flat_params()
    with pytest.raises(ValueError, match=match):
        m.fit(X, y, **options)
    assert np.array_equal(m.get_flat_params(), before)


def test_gradient_step_beyond_the_engine_counter(impl):
    X, y = make_problem("cross_entropy", 6, 4, 3, seed=0)
    m = impl([4, 5, 3], seed=0, dropout=0.5)
    with pytest.raises(ValueError, match="step must be <= 9223372036854775807"):
        m.gradients(X, y, training=True, step=2**63)
    assert np.isfinite(m.gradients(X, y, training=True, step=2**63 - 1)["loss"])


def test_check_threads():
    assert check_threads(1) == 1 and check_threads(np.int64(MAX_THREADS)) == MAX_THREADS
    for bad, exc in [(0, ValueError), (-3, ValueError), (MAX_THREADS + 1, ValueError),
                     (2.0, TypeError), (True, TypeError), ("4", TypeError)]:
        with pytest.raises(exc, match="threads must be"):
            check_threads(bad)
