#!/usr/bin/env python
"""Time one training epoch of fastmlp against its peers on the CPU.

Every contender trains the same network (default 784-512-256-10, ``--sizes``; ReLU hidden
layers, softmax cross-entropy) in float32 with Adam (lr 1e-3, PyTorch defaults) or, with
``--optimizer sgd``, plain minibatch SGD (lr 0.01), data reshuffled every epoch, on
synthetic data (standard-normal X, uniform labels 0..9, fixed seed). With
``--predict-batches`` it times inference instead: ``predict`` on batches of the given
sizes (probabilities out), as many calls as fit in the same data:

* ``fastmlp``    -- the C/OpenMP engine (``fastmlp.MLP``, ``threads=N``);
* ``reference``  -- fastmlp's pure-NumPy reference (``fastmlp.reference.MLP``; NumPy's BLAS);
* ``torch``      -- PyTorch CPU: ``nn.Sequential`` of Linear/ReLU, ``CrossEntropyLoss``,
  ``optim.SGD``, a plain Python loop over shuffled minibatches of pre-made float32 tensors,
  ``torch.set_num_threads(N)``;
* ``sklearn``    -- ``MLPClassifier(hidden_layer_sizes=(512, 256), solver="adam"|"sgd",
  learning_rate_init=lr, momentum=0, alpha=0, batch_size=B, max_iter=1, shuffle=True)``
  (NumPy's BLAS; its ConvergenceWarning is suppressed).

"% peak" divides the GFLOP/s by this machine's float32 FMA peak for the thread count used,
measured by benchmarks/peak.py (skip with ``--no-peak``).

Each contender is warmed up once (a short fit at the same batch size), then the contenders are
timed in ``--repeats`` interleaved rounds (so machine noise hits all of them alike). The table
gives, per peer and batch size, the median seconds per epoch, GFLOP/s and % of peak at the
median (counting 6 * n_weights * n_samples FLOPs per epoch: 192.6 GFLOP for 60,000
samples), the best (shortest) run and its % of peak -- what the code does when nothing
disturbs the machine --, the ratio of medians peer_time / fastmlp_time (above 1: fastmlp
is faster) and the individual runs; the footer gives the share of the machine that other
processes and the hypervisor (steal) took while timing -- on a shared 2-core VM, anything
above a few percent makes the numbers noisy. NumPy's BLAS (reference, sklearn) is limited
to N threads with threadpoolctl when it is installed.

Run from the repository root::

    python benchmarks/peers.py                                  # batch sizes 32 128 512
    python benchmarks/peers.py --batch-sizes 128 --repeats 5 --markdown
    python benchmarks/peers.py --only fastmlp torch --threads 1

Missing peers are skipped with a hint: ``pip install torch==2.13.0`` (the CPU build; a bare
``pip install torch`` pulls a multi-GB CUDA build) and ``pip install 'fastmlp[bench]'``
(scikit-learn, threadpoolctl).

OpenBLAS note: OpenBLAS picks its kernels from the CPU at load time unless
``OPENBLAS_CORETYPE`` names a core. Some environments set ``OPENBLAS_CORETYPE=Haswell``
(and ``OPENBLAS_L2_SIZE``), which pins NumPy's OpenBLAS -- hence the reference and
scikit-learn -- to AVX2 kernels even on AVX-512 CPUs. The header prints both variables and
the kernel ("architecture") threadpoolctl reports. To let OpenBLAS choose (e.g. its
SkylakeX AVX-512 kernels), unset them for that one command::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/peers.py

PyTorch's CPU wheel uses MKL / oneDNN rather than OpenBLAS, so these variables do not
affect it; the header prints its CPU capability instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

SIZES = (784, 512, 256, 10)  # replaced by --sizes
OPTIMIZER = "adam"  # replaced by --optimizer
LRS = {"adam": 1e-3, "sgd": 0.01}
SEED = 0
PEERS = ("fastmlp", "reference", "torch", "sklearn")

HINTS = {
    "fastmlp": "pip install -e .  (from the repository root)",
    "reference": "pip install -e .  (from the repository root)",
    "torch": "pip install torch==2.13.0 (the CPU build; a bare `pip install torch` pulls a "
             "multi-GB CUDA build)",
    "sklearn": "pip install 'fastmlp[bench]'",
}


# -- environment -------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_limits(threads: int):
    """Context manager limiting the BLAS pools (NumPy's OpenBLAS) to `threads`, if possible."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def numpy_blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [d for d in threadpool_info()
            if d.get("user_api") == "blas" and "numpy" in d.get("filepath", "")]


def version_of(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return "not installed"
    return getattr(mod, "__version__", "?")


def environment_lines(threads: int) -> list[str]:
    lines = [
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)",
        f"threads used: {threads}",
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"fastmlp {version_of('fastmlp')}, torch {version_of('torch')}, "
        f"scikit-learn {version_of('sklearn')}",
        "OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "<unset>")
        + "  OPENBLAS_L2_SIZE=" + os.environ.get("OPENBLAS_L2_SIZE", "<unset>"),
    ]
    infos = numpy_blas_info()
    if infos:
        for d in infos:
            lines.append(
                f"numpy BLAS (threadpoolctl): internal_api={d.get('internal_api')} "
                f"architecture={d.get('architecture')} num_threads={d.get('num_threads')} "
                f"version={d.get('version')}"
            )
    else:
        lines.append("numpy BLAS: threadpoolctl not installed (pip install threadpoolctl)")
    try:
        import torch

        lines.append(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}, "
                     f"MKL: {torch.backends.mkl.is_available()}, "
                     f"oneDNN: {torch.backends.mkldnn.is_available()}")
    except ImportError:
        pass
    return lines


# -- contenders --------------------------------------------------------------------------------
# Each factory returns a function run(X, y, batch_size, epochs) that trains a fresh model
# (the model build is outside the timed region where the library allows it) and returns
# the wall time of the training itself.


def make_fastmlp(threads: int):
    import fastmlp

    def run(X, y, batch_size, epochs):
        model = fastmlp.MLP(list(SIZES), activation="relu", loss="cross_entropy",
                            init="he_normal", dtype="float32", seed=SEED, threads=threads)
        t0 = time.perf_counter()
        model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=True,
                  optimizer=fastmlp_optimizer())
        return time.perf_counter() - t0

    def predict(X, batch_size):
        model = fastmlp.MLP(list(SIZES), seed=SEED, threads=threads)
        return time_predict(model.predict, X, batch_size)

    run.predict = predict
    return run


def fastmlp_optimizer():
    from fastmlp import optim

    return optim.Adam(lr=LRS["adam"]) if OPTIMIZER == "adam" else optim.SGD(lr=LRS["sgd"])


def time_predict(fn, X, batch_size):
    """Seconds to predict all of X in batches of batch_size (one call per batch)."""
    t0 = time.perf_counter()
    for start in range(0, len(X), batch_size):
        fn(X[start:start + batch_size])
    return time.perf_counter() - t0


def make_reference(threads: int):
    import fastmlp.reference

    def run(X, y, batch_size, epochs):
        model = fastmlp.reference.MLP(list(SIZES), activation="relu", loss="cross_entropy",
                                      dtype="float32", seed=SEED)
        with blas_limits(threads):
            t0 = time.perf_counter()
            model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=True,
                      optimizer=fastmlp_optimizer())
            return time.perf_counter() - t0

    def predict(X, batch_size):
        model = fastmlp.reference.MLP(list(SIZES), seed=SEED)
        with blas_limits(threads):
            return time_predict(model.predict, X, batch_size)

    run.predict = predict
    return run


def make_torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    cache = {}

    def tensors(X, y):
        # Pre-made tensors (shared with the NumPy arrays), built once per data set.
        if cache.get("key") is not X:
            cache.update(key=X, X=torch.from_numpy(X), y=torch.from_numpy(y.astype(np.int64)))
        return cache["X"], cache["y"]

    def build():
        layers = []
        for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
            layers.append(torch.nn.Linear(n_in, n_out))
            if i < len(SIZES) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    def run(X, y, batch_size, epochs):
        Xt, yt = tensors(X, y)
        torch.manual_seed(SEED)
        model = build()
        loss_fn = torch.nn.CrossEntropyLoss()
        opt = (torch.optim.Adam(model.parameters(), lr=LRS["adam"]) if OPTIMIZER == "adam"
               else torch.optim.SGD(model.parameters(), lr=LRS["sgd"]))
        gen = torch.Generator().manual_seed(SEED)
        n = Xt.shape[0]
        t0 = time.perf_counter()
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(Xt[idx]), yt[idx])
                loss.backward()
                opt.step()
        return time.perf_counter() - t0

    def predict(X, batch_size):
        torch.manual_seed(SEED)
        model = build()
        Xt = torch.from_numpy(X)

        def forward(xb):
            with torch.no_grad():
                return torch.softmax(model(xb), dim=1).numpy()

        return time_predict(forward, Xt, batch_size)

    run.predict = predict
    return run


def make_sklearn(threads: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def run(X, y, batch_size, epochs):
        clf = MLPClassifier(hidden_layer_sizes=SIZES[1:-1], activation="relu",
                            solver=OPTIMIZER, learning_rate_init=LRS[OPTIMIZER],
                            momentum=0.0, batch_size=batch_size,
                            max_iter=epochs, shuffle=True, alpha=0.0,
                            random_state=SEED)
        with warnings.catch_warnings(), blas_limits(threads):
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.fit(X, y)  # float32 X stays float32 (coefs_ are float32)
            return time.perf_counter() - t0

    def predict(X, batch_size):
        clf = MLPClassifier(hidden_layer_sizes=SIZES[1:-1], max_iter=1, random_state=SEED)
        with warnings.catch_warnings(), blas_limits(threads):
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[:64], np.arange(64) % SIZES[-1])
            return time_predict(clf.predict_proba, X, batch_size)

    run.predict = predict
    return run


FACTORIES = {
    "fastmlp": make_fastmlp,
    "reference": make_reference,
    "torch": make_torch,
    "sklearn": make_sklearn,
}


def load_contenders(names, threads):
    runs = {}
    for name in names:
        try:
            runs[name] = FACTORIES[name](threads)
        except ImportError as exc:
            print(f"skipping {name}: {exc}. Install it with: {HINTS[name]}", file=sys.stderr)
    return runs


# -- timing and report -------------------------------------------------------------------------
def cpu_snapshot():
    """(wall, machine busy seconds, steal seconds, this process's CPU seconds), or None.

    Read from /proc/stat (Linux), summed over all CPUs; used to tell how much of the machine
    other processes (or the hypervisor, as steal) took while we were timing."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = f + [0] * (8 - len(f))
    own = os.times()
    return (time.monotonic(), (user + nice + system + irq + softirq) / hz, steal / hz,
            own.user + own.system)


def foreign_load(before, after):
    """Percent of the machine's cores used by other processes, and steal percent."""
    if before is None or after is None:
        return None
    cores = os.cpu_count() or 1
    capacity = (after[0] - before[0]) * cores
    if capacity <= 0:
        return None
    other = (after[1] - before[1]) - (after[3] - before[3])
    return max(0.0, 100.0 * other / capacity), 100.0 * (after[2] - before[2]) / capacity


def time_batch_size(runs, X, y, batch_size, epochs, repeats):
    """Warm up every contender once (short fit, same batch size), then time `repeats` rounds,
    interleaving the contenders in each round so that a noisy machine hits all of them alike.
    Returns {name: [seconds per epoch, ...]}."""
    warm = min(len(X), max(20 * batch_size, 2048))
    for run in runs.values():
        run(X[:warm], y[:warm], batch_size, 1)
    times = {name: [] for name in runs}
    for r in range(repeats):
        for name, run in runs.items():
            times[name].append(run(X, y, batch_size, epochs) / epochs)
            print(f"  batch {batch_size:<4} round {r + 1}/{repeats}  {name:<9} "
                  f"{times[name][-1]:8.3f} s/epoch", file=sys.stderr, flush=True)
            time.sleep(0.5)  # let spinning BLAS/OpenMP worker threads go idle
    return times


def format_table(rows, markdown: bool) -> str:
    header = ["peer", "batch", "median s", "GFLOP/s", "% peak", "best s", "% peak best",
              "peer/fastmlp", "runs (s)"]
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i in (0, len(header) - 1) else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths))
    )
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--epochs", type=int, default=1, help="epochs per timed run (default 1)")
    p.add_argument("--samples", type=int, default=60_000, help="training samples (60000)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every contender (default: all cores)")
    p.add_argument("--only", nargs="+", choices=PEERS, default=list(PEERS),
                   help="contenders to run (default: all)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                   help="layer widths (default 784 512 256 10)")
    p.add_argument("--optimizer", choices=sorted(LRS), default="adam")
    p.add_argument("--predict-batches", type=int, nargs="+", default=None,
                   help="time predict at these batch sizes instead of training")
    p.add_argument("--no-peak", action="store_true", help="do not measure the FMA peak")
    args = p.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.epochs < 1 or args.samples < 1 or args.repeats < 1:
        p.error("batch sizes, --epochs, --samples and --repeats must be >= 1")
    if args.threads is None:
        args.threads = os.cpu_count() or 1
    return args


def main(argv=None) -> int:
    global SIZES, OPTIMIZER
    args = parse_args(argv)
    SIZES, OPTIMIZER = tuple(args.sizes), args.optimizer
    n_weights = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    threads = args.threads
    runs = load_contenders(args.only, threads)

    for line in environment_lines(threads):
        print(line)
    peak = None
    if not args.no_peak:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from peak import measure_peak

        measured = measure_peak(threads)
        peak = max(measured["threads"].values())
        print(f"float32 FMA peak ({measured['isa']}, {threads} thread(s)): {peak:.1f} GFLOP/s "
              "(benchmarks/peak.py)")
    predicting = args.predict_batches is not None
    flop_per_sample = (2 if predicting else 6) * n_weights
    gflop = flop_per_sample * args.samples / 1e9
    if predicting:
        print(f"model {'-'.join(map(str, SIZES))} float32, predict on {args.samples} samples "
              f"in batches, median of {args.repeats} run(s) after 1 warm-up; {gflop:.1f} GFLOP")
    else:
        print(f"model {'-'.join(map(str, SIZES))} float32, {OPTIMIZER} lr {LRS[OPTIMIZER]}, "
              f"shuffled; {args.samples} synthetic samples, {args.epochs} epoch(s) per run, "
              f"median of {args.repeats} run(s) after 1 warm-up; {gflop:.1f} GFLOP per epoch")
    print(flush=True)

    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((args.samples, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], size=args.samples, dtype=np.int64)

    rows, load_notes = [], []
    for batch in (args.predict_batches if predicting else args.batch_sizes):
        before = cpu_snapshot()
        if predicting:
            times = time_predictions(runs, X, batch, args.repeats)
        else:
            times = time_batch_size(runs, X, y, batch, args.epochs, args.repeats)
        load = foreign_load(before, cpu_snapshot())
        if load is not None:
            load_notes.append(f"batch {batch}: {load[0]:.0f}% other processes, "
                              f"{load[1]:.0f}% steal")
        base = statistics.median(times["fastmlp"]) if "fastmlp" in times else None
        for name, ts in times.items():
            med, best = statistics.median(ts), min(ts)
            rows.append([
                name, str(batch), f"{med:.3f}", f"{gflop / med:.1f}",
                f"{100 * gflop / med / peak:.0f}%" if peak else "n/a",
                f"{best:.3f}", f"{100 * gflop / best / peak:.0f}%" if peak else "n/a",
                f"{med / base:.2f}" if base else "n/a",
                ", ".join(f"{t:.2f}" for t in ts),
            ])

    print(format_table(rows, args.markdown))
    if load_notes:
        print()
        print("machine share taken by others while timing (high values mean noisy numbers): "
              + "; ".join(load_notes))
    return 0


def time_predictions(runs, X, batch_size, repeats):
    """Like time_batch_size, for predict: seconds to predict all of X, per contender."""
    for run in runs.values():
        run.predict(X[:2048], batch_size)
    times = {name: [] for name in runs}
    for r in range(repeats):
        for name, run in runs.items():
            times[name].append(run.predict(X, batch_size))
            print(f"  predict batch {batch_size:<5} round {r + 1}/{repeats}  {name:<9} "
                  f"{times[name][-1]:8.3f} s", file=sys.stderr, flush=True)
            time.sleep(0.5)
    return times


if __name__ == "__main__":
    sys.exit(main())
