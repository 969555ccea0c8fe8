"""Second-order solvers against Adam (issue 17): loss against wall time and iterations.

Three cases; in each, every method starts from the same initial weights (the model's seed)
on the same data and runs on one engine thread (``--threads``) until a wall-time budget
per case is spent (a callback stops it) or it stops by itself (converged, diverged):

* ``clouds``      the 2-3-5-3-1 sigmoid net on two Gaussian clouds in 2-D, mse on 0/1
                  targets (the course's toy), float64, several seeds
* ``autoencoder`` a deep narrow autoencoder 784-256-64-16-64-256-784 (sigmoid, linear code
                  layer, mse on the pixels) on 1000 images of the Fashion-MNIST subset
                  shipped with fastmlp: the classic Hessian-free case (Martens 2010),
                  float32, one seed
* ``regression``  a 1-20-1 tanh net fitting ``sin(3x) + 0.3 x^2`` on 200 points (zero
                  residual: where Levenberg-Marquardt shines), float64, several seeds

Methods: Adam (``model.fit``, minibatches; one iteration = one epoch), L-BFGS, BFGS,
nonlinear CG, Newton, damped Newton, Hessian-free and Levenberg-Marquardt
(``fastmlp.solvers``; BFGS and the Newton methods only where the dense matrices are
small). The loss is the full-data objective (mean squared error); for Adam it is evaluated
after every epoch, and that evaluation is not counted in Adam's time.

The table (stdout, markdown) gives per case and method the median over seeds of the
iterations and time used, the final loss, the time and iterations to the best loss Adam
reached (the target; "-" where not reached), and the best loss reached within Adam's time
(the same budget). One PNG per case (log loss against wall time and against iterations) goes to
``--out`` (default ``docs/figures``).

    python benchmarks/second_order.py                      # ~6 minutes; figures in docs/figures
    python benchmarks/second_order.py --cases clouds regression --seeds 5
    python benchmarks/second_order.py --quick --out /tmp/so  # tiny sizes, seconds (the test)

Needs matplotlib (``pip install fastmlp[plot]``) and SciPy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import NamedTuple

import numpy as np
import scipy.optimize  # noqa: F401 - loads SciPy's BLAS before threadpool_limits sees it
from threadpoolctl import threadpool_limits

import fastmlp
from fastmlp import solvers
from fastmlp.optim import Adam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Case(NamedTuple):
    """A problem: data, the net, Adam's settings, each solver's options, the budget."""

    name: str
    title: str
    X: np.ndarray
    y: np.ndarray
    sizes: list
    activation: object
    dtype: str
    adam_lr: float
    adam_batch: int
    budget: float
    seeds: list
    methods: dict  # name -> solver keywords


SMALL = {"adam": {}, "lbfgs": {}, "bfgs": {}, "nonlinear_cg": {}, "newton": {},
         "damped_newton": {}, "hessian_free": {}, "levenberg_marquardt": {}}
LARGE = {"adam": {}, "lbfgs": {}, "nonlinear_cg": {}, "hessian_free": {},
         "levenberg_marquardt": {"cg_iterations": 20}}
COLORS = {"adam": "black", "lbfgs": "tab:blue", "bfgs": "tab:cyan",
          "nonlinear_cg": "tab:purple", "newton": "tab:gray", "damped_newton": "tab:olive",
          "hessian_free": "tab:red", "levenberg_marquardt": "tab:green"}
LABELS = {"adam": "Adam", "lbfgs": "L-BFGS", "bfgs": "BFGS", "nonlinear_cg": "nonlinear CG",
          "newton": "Newton", "damped_newton": "damped Newton", "hessian_free": "Hessian-free",
          "levenberg_marquardt": "Levenberg-Marquardt"}


def clouds(n: int, budget: float, seeds: list) -> Case:
    rng = np.random.default_rng(0)
    half = n // 2
    X = np.vstack([rng.normal(-1, 1, (half, 2)), rng.normal(1, 1, (n - half, 2))])
    y = np.repeat([0.0, 1.0], [half, n - half])[:, None]
    return Case("clouds", "2-3-5-3-1 sigmoid, two Gaussian clouds (mse)", X, y,
                [2, 3, 5, 3, 1], "sigmoid", "float64", 0.01, 32, budget, seeds, SMALL)


def autoencoder(n: int, sizes: list, budget: float, seeds: list) -> Case:
    X = fastmlp.datasets.load_embedded_fashion_mnist().X_train[:n]
    depth = len(sizes) - 2
    act = ["identity" if l == depth // 2 else "sigmoid" for l in range(depth)]
    return Case("autoencoder", "-".join(map(str, sizes)) + f" autoencoder, {n} Fashion-MNIST "
                "images (mse)", X, X, sizes, act, "float32", 1e-3, 64, budget, seeds, LARGE)


def regression(n: int, budget: float, seeds: list) -> Case:
    X = np.linspace(-2, 2, n)[:, None]
    y = np.sin(3 * X) + 0.3 * X**2
    return Case("regression", "1-20-1 tanh, sin(3x) + 0.3x^2 (mse)", X, y, [1, 20, 1],
                "tanh", "float64", 0.01, 32, budget, seeds, SMALL)


class Trace:
    """A callback for fit and the solvers: (time, loss) after every iteration, time
    without its own evaluations; truthy (stop) once the budget is spent."""

    def __init__(self, X, y, budget: float, evaluate: bool):
        self.X, self.y, self.budget, self.evaluate = X, y, budget, evaluate
        self.times, self.losses = [0.0], []
        self.paused = 0.0
        self.t0 = time.perf_counter()

    def __call__(self, model, history) -> bool:
        t = time.perf_counter()
        elapsed = t - self.t0 - self.paused
        loss = model.evaluate(self.X, self.y)["loss"] if self.evaluate else history.loss[-1]
        self.times.append(elapsed)
        self.losses.append(float(loss))
        self.paused += time.perf_counter() - t
        return elapsed >= self.budget


def run(case: Case, method: str, seed: int, threads: int, iterations: int = 10**7) -> dict:
    """One method from the case's initial weights for `seed`: its trace."""
    model = fastmlp.MLP(case.sizes, activation=case.activation, loss="mse", dtype=case.dtype,
                        seed=seed)
    model.threads = threads
    start = model.evaluate(case.X, case.y)["loss"]
    trace = Trace(case.X, case.y, case.budget, evaluate=method == "adam")
    note = ""
    try:
        if method == "adam":
            model.fit(case.X, case.y, epochs=iterations, batch_size=case.adam_batch,
                      optimizer=Adam(case.adam_lr), callbacks=[trace])
        else:
            getattr(solvers, method)(model, case.X, case.y, iterations=iterations,
                                     callbacks=[trace], **case.methods[method])
    except fastmlp.TrainingDivergedError:
        note = "diverged"
    trace.losses.insert(0, float(start))
    return {"times": np.array(trace.times), "losses": np.array(trace.losses), "note": note}


def first_reaching(r: dict, target: float) -> tuple:
    """(time, iterations) at which the trace first reaches `target`, or (None, None)."""
    hit = np.flatnonzero(r["losses"] <= target)
    return (float(r["times"][hit[0]]), int(hit[0])) if hit.size else (None, None)


def loss_at(r: dict, t: float) -> float:
    """The best loss the trace reached within time t."""
    return float(r["losses"][r["times"] <= t].min())


def summarize(case: Case, results: dict) -> list:
    """Per method: median over seeds of what the table shows."""
    rows = []
    for method, runs in results.items():
        per_seed = []
        for r, adam in zip(runs, results["adam"]):
            target, t_adam = adam["losses"].min(), adam["times"][-1]
            per_seed.append((len(r["losses"]) - 1, r["times"][-1], r["losses"][-1],
                             *first_reaching(r, target), loss_at(r, t_adam)))
        cols = list(zip(*per_seed))

        def med(values):
            # a target not reached counts as infinitely late
            values = [np.inf if v is None else v for v in values]
            return statistics.median(values)

        notes = sorted({r["note"] for r in runs if r["note"]})
        rows.append({"method": method, "iterations": med(cols[0]), "time": med(cols[1]),
                     "final": med(cols[2]), "t_target": med(cols[3]), "it_target": med(cols[4]),
                     "at_adam": med(cols[5]),
                     "note": ", ".join(f"{n} ({sum(r['note'] == n for r in runs)}/{len(runs)})"
                                       for n in notes)})
    return rows


def fmt(x, spec: str) -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def table(case: Case, rows: list) -> str:
    lines = [f"**{case.name}**: {case.title}; budget {case.budget:g} s per method, "
             f"{len(case.seeds)} seed(s), medians", "",
             "| method | iterations | time (s) | final loss | time to Adam's best loss (s) "
             "| iterations to it | loss within Adam's time | note |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {LABELS[r['method']]} | {fmt(r['iterations'], '.0f')} | "
                     f"{fmt(r['time'], '.2f')} | {fmt(r['final'], '.3e')} | "
                     f"{fmt(r['t_target'], '.2f')} | {fmt(r['it_target'], '.0f')} | "
                     f"{fmt(r['at_adam'], '.3e')} | {r['note']} |")
    adam = next(r["at_adam"] for r in rows if r["method"] == "adam")
    verdict = [f"{LABELS[r['method']]} {'below' if r['at_adam'] < adam else 'NOT below'} Adam"
               for r in rows if r["method"] in ("hessian_free", "levenberg_marquardt")]
    lines += ["", f"Within Adam's time: {'; '.join(verdict)} ({adam:.3e})."]
    return "\n".join(lines)


def plot(case: Case, results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_i) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, runs in results.items():
        for k, r in enumerate(runs):
            label = LABELS[method] if k == 0 else None
            style = {"color": COLORS[method], "lw": 1.4 if k == 0 else 0.7,
                     "alpha": 1.0 if k == 0 else 0.5}
            ax_t.plot(np.maximum(r["times"], 1e-4), r["losses"], label=label, **style)
            ax_i.plot(np.arange(len(r["losses"])), r["losses"], label=label, **style)
    ax_t.set(xscale="log", yscale="log", xlabel="wall time (s, one thread)", ylabel="loss (mse)")
    ax_i.set(xscale="symlog", yscale="log", xlabel="iterations (Adam: epochs)")
    top = 3 * max(r["losses"][0] for runs in results.values() for r in runs)
    for ax in (ax_t, ax_i):
        ax.set_ylim(top=top)  # (pure Newton's excursions would squash the rest)
        ax.grid(True, which="major", alpha=0.3)
    ax_i.legend(fontsize=8, loc="best")
    fig.suptitle(case.title, fontsize=10)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.9, wspace=0.18)
    tmp = path + ".tmp"
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)  # never a half-written figure


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), platform.machine())
    except OSError:
        return platform.machine()


def cases(quick: bool, seeds: int) -> dict:
    if quick:
        return {"clouds": clouds(40, 0.05, [0]),
                "autoencoder": autoencoder(32, [784, 8, 4, 8, 784], 0.05, [0]),
                "regression": regression(40, 0.05, [0])}
    many = list(range(seeds))
    return {"clouds": clouds(200, 2.0, many),
            "autoencoder": autoencoder(1000, [784, 256, 64, 16, 64, 256, 784], 40.0, [0]),
            "regression": regression(200, 2.0, many)}


def report(case: Case, threads: int, out: str) -> None:
    """Runs every method of the case, interleaved seed by seed; figure and table."""
    for m in case.methods:  # untimed: imports and first calls (SciPy's are slow)
        run(case, m, case.seeds[0], threads, iterations=1)
    results = {m: [] for m in case.methods}
    for seed in case.seeds:
        for m in case.methods:
            results[m].append(run(case, m, seed, threads))
    path = os.path.join(out, f"second_order_{case.name}.png")
    plot(case, results, path)
    print(table(case, summarize(case, results)))
    print(f"\n![{case.name}]({path})  (load {os.getloadavg()[0]:.2f})\n", flush=True)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=["clouds", "autoencoder", "regression"],
                    default=["clouds", "autoencoder", "regression"])
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the small cases")
    ap.add_argument("--threads", type=int, default=1, help="engine and BLAS threads")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and budgets (the test)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "figures"),
                    help="folder for the PNGs")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.threads < 1:
        ap.error("--seeds and --threads must be at least 1")
    os.makedirs(args.out, exist_ok=True)
    print(f"# second_order.py: fastmlp {fastmlp.__version__}, CPU {cpu_model()}, "
          f"load {os.getloadavg()[0]:.2f}, threads {args.threads}"
          f"{', quick' if args.quick else ''}\n")
    every = cases(args.quick, args.seeds)
    with threadpool_limits(limits=args.threads):
        for name in args.cases:
            report(every[name], args.threads, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
