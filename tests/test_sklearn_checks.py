"""scikit-learn's estimator check suite on fastmlp.MLPClassifier / MLPRegressor, in the
default configuration and with early stopping, in float32 (the default) and float64,
with the lbfgs and sgd solvers, and with the Poisson loss.

Some checks are expected to fail. For the Poisson instance: check_regressors_train
and check_regressor_multioutput (see POISSON_FIT and POISSON_NEGATIVE). For float32
instances only: check_sample_weight_equivalence_on_dense_data (and _on_sparse_data, whose
sparse rows train to the same bits) demands that weighted fitting equal fitting on repeated
rows to rtol=1e-7. A weighted float32 sum and the float32 sum of
repeated rows round differently (about 1e-7), and 200 epochs of Adam amplify that
beyond the tolerance. In float64 the two fits agree to about 1e-15, and the float64
instances below pass the check (so does every other check, in both precisions).
The expectation is not strict: whether a float32 fit lands within rtol=1e-7 depends on
the kernel path's rounding. MLPClassifier(early_stopping=True) passes both checks on the
AVX-512 and AVX2 tiles, only the dense one through the BLAS path, and neither on the
portable C path (FASTMLP_KERNEL=generic), so its passes show up as XPASS, not as
failures.
"""

from __future__ import annotations

import pytest

from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import MLPClassifier, MLPRegressor

ESTIMATORS = [
    MLPClassifier(),
    MLPRegressor(),
    MLPClassifier(early_stopping=True),
    MLPRegressor(early_stopping=True),
    MLPClassifier(dtype="float64"),
    MLPRegressor(dtype="float64"),
    MLPClassifier(early_stopping=True, dtype="float64"),
    MLPRegressor(early_stopping=True, dtype="float64"),
    MLPClassifier(solver="lbfgs", dtype="float64"),
    MLPRegressor(solver="sgd", dtype="float64"),
    MLPRegressor(loss="poisson", dtype="float64"),
]

FLOAT32_ROUNDING = (
    "float32 rounding: weighted sums and sums of repeated rows differ by ~1e-7, which "
    "training amplifies past rtol=1e-7; the float64 instances pass this check"
)


POISSON_FIT = (
    "R^2 > 0.5 after 200 Adam epochs on the check's shifted targets: scikit-learn's own "
    "MLPRegressor(loss='poisson') (tagged positive_only) fails this check the same way"
)
POISSON_NEGATIVE = (
    "the check's multi-output targets are negative whatever the positive_only tag says, "
    "and the Poisson loss rejects y < 0 with a ValueError"
)


def expected_failures(estimator):
    if estimator.dtype == "float32":
        return {"check_sample_weight_equivalence_on_dense_data": FLOAT32_ROUNDING,
                "check_sample_weight_equivalence_on_sparse_data": FLOAT32_ROUNDING}
    if getattr(estimator, "loss", None) == "poisson":
        return {"check_regressors_train": POISSON_FIT,
                "check_regressor_multioutput": POISSON_NEGATIVE}
    return {}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)
