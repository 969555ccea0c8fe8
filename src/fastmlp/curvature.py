"""Curvature of a model's objective: extreme eigenvalues and their vectors, the condition
number, the spectral density, per-layer blocks, and the sharpness seen during training.

Everything here runs on Hessian-vector (or Gauss-Newton-vector) products,
:meth:`fastmlp.MLP.hvp` / :meth:`~fastmlp.MLP.gnvp`, each about two gradients' work over
the data given; nothing forms the Hessian unless asked (:meth:`fastmlp.MLP.hessian`).
The objective is that of :meth:`fastmlp.MLP.gradients` with the same keyword options
(``training``, ``step``, ``sample_weight`` and the penalties ``l2``, ``l1``, ...).

Extreme eigenpairs come from SciPy's Lanczos solver (``scipy.sparse.linalg.eigsh``, ARPACK)
on a :class:`scipy.sparse.linalg.LinearOperator`. The spectral density uses stochastic
Lanczos quadrature, for which SciPy has nothing (ARPACK does not expose its tridiagonal
matrix): a short Lanczos iteration with full reorthogonalization is written out here for it.
SciPy is an optional dependency (``pip install fastmlp[sklearn]``), imported when needed.
"""

from __future__ import annotations

import numpy as np

from fastmlp.validation import check_float, check_int

__all__ = ["hessian_operator", "eigenvalues", "condition_number", "spectral_density",
           "layer_slices", "block_eigenvalues", "SharpnessCallback"]


def _linalg():
    try:
        from scipy.sparse import linalg
    except ImportError:  # pragma: no cover - scipy is in the test extra
        raise ImportError("fastmlp.curvature needs SciPy: pip install scipy "
                          "(or fastmlp[sklearn])") from None
    return linalg


def hessian_operator(model, X: object, y: object, *, gauss_newton: bool = False,
                     restrict: slice | None = None, **options: object):
    """The Hessian (or Gauss-Newton matrix) of the objective as a float64 SciPy
    ``LinearOperator`` of shape ``(n_params, n_params)``; each product is one
    :meth:`~fastmlp.MLP.hvp`. Inputs and options are checked once, here.

    `restrict`: a slice of the flat parameters (see :func:`layer_slices`): the operator is
    then that diagonal block, ``H[restrict, restrict]``. With tied weights it acts on the
    shared parameters: a tied layer's rows and columns are zero (zero eigenvalues).
    """
    linalg = _linalg()
    training = options.pop("training", False)
    step = options.pop("step", None)
    sample_weight = options.pop("sample_weight", None)
    X, labels, dense, *rest = model._curvature_inputs(X, y, training, step, sample_weight,
                                                      options)
    P = model._n_params
    part = slice(0, P) if restrict is None else restrict
    size = len(range(P)[part])

    def matvec(v):
        full = np.zeros(P, model.dtype)
        full[part] = np.ravel(v)
        with model._lock.write():
            out = model._shared_product(  # tied weights: in the shared parameters
                lambda u: model._backend_curvature(X, labels, dense, u, gauss_newton, *rest),
                full)
        return out[part].astype(np.float64)

    return linalg.LinearOperator((size, size), matvec=matvec, rmatvec=matvec,
                                 dtype=np.float64)


def eigenvalues(model, X: object, y: object, k: int = 1, which: str = "largest", *,
                gauss_newton: bool = False, return_vectors: bool = False, tol: float = 0.0,
                maxiter: int | None = None, seed: int = 0, restrict: slice | None = None,
                **options: object):
    """The `k` largest or smallest (algebraic) eigenvalues of the Hessian (or Gauss-Newton
    matrix) of the objective, by Lanczos iteration (``scipy.sparse.linalg.eigsh``).

    Parameters
    ----------
    k : int
        How many, ``1 <= k < n_params`` (for all of them use
        ``numpy.linalg.eigh(model.hessian(X, y))``).
    which : {"largest", "smallest"}
        The top of the spectrum (the sharpest directions) or its bottom (the most negative
        curvature; the smallest ones converge more slowly).
    return_vectors : bool
        Also return the unit eigenvectors, as columns ordered like the values.
    tol, maxiter : float, int
        ARPACK's relative accuracy (0: machine precision) and iteration limit.
    seed : int
        Seeds the starting vector, so that results repeat.
    restrict : slice, optional
        Eigenvalues of the diagonal block of these parameters only (:func:`layer_slices`).
    **options
        As for :meth:`fastmlp.MLP.hvp`: ``training``, ``step``, ``sample_weight``, ``l2``, ...

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        Eigenvalues, largest first (``which="largest"``) or smallest first; with
        `return_vectors` also the ``(n, k)`` eigenvectors.
    """
    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")
    op = hessian_operator(model, X, y, gauss_newton=gauss_newton, restrict=restrict,
                          **options)
    n = op.shape[0]
    k = check_int(k, "k", 1)
    if k >= n:
        raise ValueError(f"k must be smaller than the {n} parameters; for the whole spectrum "
                         "use numpy.linalg.eigh(model.hessian(X, y))")
    v0 = np.random.default_rng(seed).standard_normal(n)
    vals, vecs = _linalg().eigsh(op, k=k, which="LA" if which == "largest" else "SA",
                                 v0=v0, tol=check_float(tol, "tol", low=0.0), maxiter=maxiter)
    order = np.argsort(-vals if which == "largest" else vals)
    return (vals[order], vecs[:, order]) if return_vectors else vals[order]


def condition_number(model, X: object, y: object, *, gauss_newton: bool = False,
                     tol: float = 0.0, seed: int = 0, **options: object) -> dict[str, float]:
    """Extreme eigenvalues of the Hessian (or Gauss-Newton matrix) and their ratio.

    Returns ``{"lambda_max", "lambda_min", "condition"}`` with ``condition = lambda_max /
    lambda_min`` when the matrix is positive definite (``lambda_min > 0``) and ``inf``
    otherwise: at a saddle point, or along flat directions, the quadratic model has no
    condition number (the course's ``kappa`` of gradient descent's convergence rate).
    Add ``l2=...`` to see how weight decay bounds it.
    """
    top = eigenvalues(model, X, y, 1, "largest", gauss_newton=gauss_newton, tol=tol,
                      seed=seed, **options)[0]
    bottom = eigenvalues(model, X, y, 1, "smallest", gauss_newton=gauss_newton, tol=tol,
                         seed=seed, **options)[0]
    cond = float(top / bottom) if bottom > 0 else float("inf")
    return {"lambda_max": float(top), "lambda_min": float(bottom), "condition": cond}


def _lanczos(matvec, v, steps: int):
    """`steps` Lanczos steps from the unit vector v with full reorthogonalization: the
    tridiagonal matrix's diagonal and off-diagonal (shorter when an invariant subspace
    is found first)."""
    Q = np.zeros((steps, len(v)))
    alpha, beta = [], []
    q = v / np.linalg.norm(v)
    for j in range(steps):
        Q[j] = q
        w = matvec(q)
        alpha.append(float(q @ w))
        w -= Q[: j + 1].T @ (Q[: j + 1] @ w)  # twice is enough (Kahan-Parlett)
        w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        if j == steps - 1 or b <= 1e-12 * max(1.0, abs(alpha[-1])):
            break
        beta.append(b)
        q = w / b
    return np.array(alpha), np.array(beta)


def spectral_density(model, X: object, y: object, *, n_probes: int = 4, steps: int = 30,
                     grid: object = None, sigma: float | None = None, seed: int = 0,
                     gauss_newton: bool = False, **options: object) -> dict[str, np.ndarray]:
    """The eigenvalue density of the Hessian (or Gauss-Newton matrix) by stochastic Lanczos
    quadrature (Ubaru, Chen and Saad 2017; Ghorbani, Krishnan and Xiao 2019).

    Each of `n_probes` random unit vectors ``u`` (Rademacher) starts `steps` Lanczos steps;
    the eigenvalues ``theta_j`` of the resulting tridiagonal matrix (the nodes) and the
    squared first components ``tau_j`` of its eigenvectors (the weights) give the
    quadrature ``u^T f(H) u ~ sum_j tau_j f(theta_j)``, whose mean over the probes
    estimates ``tr f(H) / n_params``. With ``f`` a Gaussian of width `sigma` this is the
    smoothed density of the spectrum, which integrates to 1.

    Returns
    -------
    dict
        ``nodes`` and ``weights`` (lists of arrays, one per probe), and ``grid`` and
        ``density`` (arrays): the smoothed density on `grid` (default: 512 points over the
        nodes' range, padded by 5 sigma; sigma default: 1% of that range).
    """
    op = hessian_operator(model, X, y, gauss_newton=gauss_newton, **options)
    n_probes, steps = check_int(n_probes, "n_probes", 1), check_int(steps, "steps", 1)
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(n_probes):
        u = rng.choice([-1.0, 1.0], size=op.shape[0])
        alpha, beta = _lanczos(op.matvec, u, min(steps, op.shape[0]))
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, U = np.linalg.eigh(T)
        nodes.append(theta)
        weights.append(U[0] ** 2)
    lo = min(t.min() for t in nodes)
    hi = max(t.max() for t in nodes)
    width = max(hi - lo, 1e-12 * max(1.0, abs(hi)))
    sigma = 0.01 * width if sigma is None else check_float(sigma, "sigma", positive=True)
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, 512) if grid is None else \
        np.asarray(grid, dtype=np.float64)
    density = np.zeros_like(grid)
    for theta, tau in zip(nodes, weights):
        z = (grid[:, None] - theta[None, :]) / sigma
        density += (np.exp(-0.5 * z * z) * tau).sum(axis=1)
    density /= n_probes * sigma * np.sqrt(2 * np.pi)
    return {"nodes": nodes, "weights": weights, "grid": grid, "density": density}


def layer_slices(model) -> list[slice]:
    """The flat-parameter slice of each dense layer: its W, b and (batch norm) gamma, beta,
    in the order of :meth:`fastmlp.MLP.get_flat_params`."""
    starts = [w0 for (w0, *_) in model._layout] + [model._n_params]
    return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]


def block_eigenvalues(model, X: object, y: object, k: int = 1, which: str = "largest",
                      **options: object) -> list[np.ndarray]:
    """The `k` extreme eigenvalues of each dense layer's diagonal block of the Hessian
    (or, ``gauss_newton=True``, Gauss-Newton matrix): how sharp the objective is in each
    layer's own parameters. Options as :func:`eigenvalues`; a layer with at most `k`
    parameters gets all of its block's eigenvalues (from the dense block)."""
    out = []
    for part in layer_slices(model):
        size = part.stop - part.start
        if size > k:
            out.append(eigenvalues(model, X, y, k, which, restrict=part, **options))
            continue
        op = hessian_operator(model, X, y, restrict=part,
                              **{key: val for key, val in options.items()
                                 if key not in ("tol", "maxiter", "seed")})
        vals = np.linalg.eigvalsh(op.matmat(np.eye(size)))
        out.append(vals[::-1] if which == "largest" else vals)
    return out


class SharpnessCallback:
    """A ``fit`` callback that records the sharpness -- the largest Hessian eigenvalue of the
    objective on ``(X, y)`` -- after every `every` epochs, next to ``2 / lr``.

    Full-batch gradient descent with rate ``lr`` is stable on a quadratic only while the
    sharpness stays below ``2 / lr``; trained networks climb to that line and hover there,
    the *edge of stability* (Cohen et al. 2021). ``lr`` is the epoch's last rate from the
    History. (With heavy-ball momentum ``beta`` the threshold is ``(2 + 2 beta) / lr``.)

    Attributes ``epoch``, ``sharpness`` and ``threshold`` are lists, one entry per
    measurement. Penalties of the fit should be given here too (``l2=...``) to measure
    the same objective. Training continues (the callback returns None).

    >>> cb = SharpnessCallback(X[:1000], y[:1000])           # doctest: +SKIP
    >>> model.fit(X, y, epochs=20, lr=0.05, callbacks=[cb])  # doctest: +SKIP
    """

    def __init__(self, X: object, y: object, *, every: int = 1, tol: float = 1e-3,
                 gauss_newton: bool = False, **options: object) -> None:
        self.X, self.y = X, y
        self.every = check_int(every, "every", 1)
        self.tol = check_float(tol, "tol", low=0.0)
        self.gauss_newton = bool(gauss_newton)
        self.options = options
        self.epoch: list[int] = []
        self.sharpness: list[float] = []
        self.threshold: list[float] = []

    def __call__(self, model, history) -> None:
        epoch = history.epoch[-1]
        if epoch % self.every:
            return None
        top = eigenvalues(model, self.X, self.y, 1, "largest", gauss_newton=self.gauss_newton,
                          tol=self.tol, **self.options)[0]
        self.epoch.append(epoch)
        self.sharpness.append(float(top))
        self.threshold.append(2.0 / history.lr[-1])
        return None
