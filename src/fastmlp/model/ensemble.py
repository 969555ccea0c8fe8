"""Ensembles: k networks trained on bootstrap resamples (bagging) or on the same data
with different seeds, combined by averaged outputs or by majority vote."""

from __future__ import annotations

import copy

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastmlp.model.base import BaseMLP
from fastmlp.model.losses import labels_from_outputs
from fastmlp.train.history import History
from fastmlp.validation import check_int


class Ensemble:
    """A committee of models with the same inputs, outputs and loss.

    Build it from models (``Ensemble([m1, m2, m3])``) or with :meth:`of`. Members train
    independently, so ``fit(..., n_jobs=k)`` trains k at once in threads (the engine
    releases the GIL; each member then uses ``threads // n_jobs`` engine threads during
    that fit). Members must be distinct models.
    """

    def __init__(self, members: Sequence[BaseMLP]) -> None:
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for m in members:
            if not isinstance(m, BaseMLP):
                raise TypeError(f"ensemble members must be fastmlp models, got {type(m).__name__}")
            if m.heads:
                raise ValueError("ensembles of models with multitask heads are not supported")
        if len({id(m) for m in members}) < len(members):
            raise ValueError("ensemble members must be distinct models (a model listed twice "
                             "would be trained twice, in place); use copy.deepcopy")
        first = members[0]
        for m in members[1:]:
            if (m.layer_sizes[0], m.layer_sizes[-1], m.loss) != \
                    (first.layer_sizes[0], first.layer_sizes[-1], first.loss):
                raise ValueError("ensemble members need the same inputs, outputs and loss")
        self.members = members

    @classmethod
    def of(cls, k: int, factory: Callable[..., BaseMLP], *args: object, seed: int = 0,
           **kwargs: object) -> Ensemble:
        """k members ``factory(*args, seed=seed + i, **kwargs)``."""
        k = check_int(k, "k", 1)
        return cls([factory(*args, seed=seed + i, **kwargs) for i in range(k)])

    def __len__(self) -> int:
        return len(self.members)

    def fit(self, X: object, y: object, *, bagging: bool = True, n_jobs: int = 1,
            **fit_options: object) -> list[History]:
        """Train every member (``fit_options`` go to each ``fit``). With `bagging`, member
        i trains on a bootstrap resample of (X, y) (n draws with replacement, seeded by
        its seed); otherwise on all of it, differing only by seed. Returns the Histories.

        An ``optimizer`` or ``lr_schedule`` given here is copied for each member (deep
        copies, taken before any member trains): optimizers and schedules keep state
        (moments, step counts, plateau counters), which members must not share; the objects
        passed in are left as they were."""
        n_jobs = check_int(n_jobs, "n_jobs", 1)
        first = self.members[0]
        Xc = first._check_X(X)
        first._targets(y, Xc.shape[0])  # validate once, with a clear message
        y_arr = np.asarray(y)

        stateful = {k: fit_options.pop(k) for k in ("optimizer", "lr_schedule")
                    if fit_options.get(k) is not None}
        own = {id(m): {k: copy.deepcopy(v) for k, v in stateful.items()} for m in self.members}

        def train(member: BaseMLP) -> History:
            Xi, yi = Xc, y_arr
            if bagging:
                idx = np.random.default_rng(member.seed).integers(0, len(Xc), size=len(Xc))
                Xi, yi = Xc.take(idx), y_arr[idx]
            return member.fit(Xi, yi, **fit_options, **own[id(member)])

        if n_jobs == 1:
            return [train(m) for m in self.members]
        # n_jobs fits at once share the cores: each member gets its share of its engine
        # threads for the fit (never more threads than cores in all), then its own back
        saved = [(m, m.threads) for m in self.members if hasattr(m, "threads")]
        for m, threads in saved:
            m.threads = max(1, threads // n_jobs)
        try:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                return list(pool.map(train, self.members))
        finally:
            for m, threads in saved:
                m.threads = threads

    def predict(self, X: object) -> np.ndarray:
        """The members' outputs (probabilities for cross_entropy), averaged."""
        return np.mean([m.predict(X) for m in self.members], axis=0)

    def predict_labels(self, X: object, vote: str = "soft") -> np.ndarray:
        """Classes by ``soft`` voting (labels of the averaged outputs) or ``hard``
        voting (the most common member label; ties go to the smallest label)."""
        if vote == "soft":
            return labels_from_outputs(self.members[0]._loss, self.predict(X))
        if vote == "hard":
            labels = np.stack([m.predict_labels(X) for m in self.members])
            values = np.unique(labels)
            counts = np.stack([(labels == v).sum(axis=0) for v in values])
            return values[counts.argmax(axis=0)]
        raise ValueError(f"vote must be 'soft' or 'hard', got {vote!r}")

    def score(self, X: object, y: object, vote: str = "soft") -> float:
        """Accuracy of the ensemble's labels on (X, y)."""
        pred = self.predict_labels(X, vote)
        y = np.asarray(y)
        if pred.ndim == 2 and y.ndim == 1:
            y = y.reshape(-1, 1)
        return float(np.mean(pred == y))
