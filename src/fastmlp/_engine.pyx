# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The Cython boundary of the C engine (csrc/).

`Engine` owns every buffer as a NumPy array (parameters, gradients, batch-norm
running statistics, pruning mask, workspace, RNG state) and hands raw pointers to C
for the length of one call, with the GIL released. Arguments arrive validated by
the Python layer; the checks here are the cheap last line (dtypes, shapes,
contiguity) so that no call can reach C with a buffer that does not fit. The
parameter layout is private: Python reads and writes it through the getters and
setters below.

X is a C-contiguous array or a checked `fastmlp.io.csr.CSRInput` (sparse rows that the
first layer multiplies in place); a sparse call runs on a workspace sized without the
dense input regions (fm_net.csr_input).

Concurrency: `predict` and `evaluate` take a workspace of their own from a small pool for
each call, so any number of them can run at once; `train` and `loss_grad` use the
engine's training workspace and gradients, so the caller (fastmlp.model.base's model lock)
runs them one at a time and never beside a call that changes the parameters. Every
call reads the network description and its workspace once, before releasing the GIL.
"""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_STRIDES, PyBuffer_Release,
                             PyObject_GetBuffer)
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from libc.stdint cimport int32_t, int64_t, uint64_t

import os
import threading
import warnings

import numpy as np

from fastmlp._buffers import faulted
from fastmlp.io.csr import CSRInput

from fastmlp._cengine cimport *

STATUS_OK = FM_OK
STATUS_NONFINITE_LOSS = FM_ERR_NONFINITE_LOSS
STATUS_NONFINITE_GRAD = FM_ERR_NONFINITE_GRAD
MAX_LAYERS = FM_MAX_LAYERS
_U64 = 0xFFFFFFFFFFFFFFFF
_POOL_SIZE = 4  # free predict/evaluate workspaces an engine keeps
# fm_head (csrc/fastmlp.h) as a NumPy record: a multitask net's segment table
HEAD_DTYPE = np.dtype([("offset", np.int32), ("width", np.int32), ("loss", np.int32),
                       ("labels", np.int32), ("weight", np.float64),
                       ("label_smoothing", np.float64)], align=True)
_N_LOSSES = 9  # fm_loss codes 0..8
_MULTI_HINGE = 4  # fm_loss code of the multi-class hinge, which takes class labels only
_LABEL_LOSSES = (0, _MULTI_HINGE)  # fm_loss codes of class-index targets (0: cross-entropy)


def have_openmp():
    """True when the engine was built with OpenMP."""
    return bool(fm_have_openmp())


def all_finite(arr, int threads=0):
    """True when no element of the C-contiguous float32/float64 array is NaN or infinite
    (one vectorized pass, on `threads` threads for large arrays, 0: all); None for other
    arrays."""
    if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous or \
            arr.dtype not in (np.float32, np.float64):
        return None
    cdef size_t n = arr.size
    if n == 0:
        return True
    cdef void *p = _ptr(arr)
    cdef int nt = threads if threads > 0 else fm_max_threads()
    cdef bint single = arr.dtype == np.float32
    cdef int ok
    with nogil:
        if single:
            ok = fm_all_finite_f32(<const float *>p, n, nt)
        else:
            ok = fm_all_finite_f64(<const double *>p, n, nt)
    return bool(ok)


def forget_thread_timings():
    """New models start their adaptive thread count afresh, as if no model of this
    process had measured a slow thread team (tests)."""
    fm_adapt_forget()


def fork_serial():
    """True in a process forked after its parent ran OpenMP thread teams: the engine then
    runs single-threaded there (GNU OpenMP cannot start teams after such a fork; results
    are the same for any thread count). Spawned processes (joblib's default loky backend,
    multiprocessing's "spawn"/"forkserver") keep all their threads."""
    return bool(fm_fork_serial())


def default_threads():
    """OpenMP's default thread count (OMP_NUM_THREADS or the number of cores)."""
    return fm_max_threads()


KERNELS = ("generic", "avx2", "avx512", "blas")
_blas_looked_for = False
_blas_lock = threading.Lock()


def _find_blas():
    """Hands SciPy's BLAS to the engine the first time it is asked for (fastmlp._blas);
    True when the engine has a BLAS. Threads asking at once wait for the first one's
    answer (one that saw the flag set before the BLAS was registered reported none)."""
    global _blas_looked_for
    with _blas_lock:
        if not _blas_looked_for:
            from fastmlp._blas import scipy_blas

            found = scipy_blas()
            if found is not None:
                _register_blas(*found)
            _blas_looked_for = True
    return bool(fm_blas_ready())


cdef void *_capsule_pointer(object capsule) except NULL:
    return PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))


def _register_blas(sgemm, dgemm, size_t get_threads, size_t set_threads):
    """Registers a BLAS: sgemm and dgemm as scipy.linalg.cython_blas's capsules, the
    addresses of its get/set-thread-count functions (0: none)."""
    cdef fm_gemm_fn_f32 s = <fm_gemm_fn_f32>_capsule_pointer(sgemm)
    cdef fm_gemm_fn_f64 d = <fm_gemm_fn_f64>_capsule_pointer(dgemm)
    fm_blas_register(s, d, <fm_blas_get_threads_fn>get_threads,
                     <fm_blas_set_threads_fn>set_threads)


def kernel():
    """Name of the kernel set in use (float32 and float64): "generic", "avx2", "avx512"
    (whose float64 tiles are the AVX2 ones) or "blas" (SciPy's BLAS for the dense layer's
    products)."""
    return KERNELS[fm_kernel_active()]


def available_kernels():
    """Kernel sets this CPU and build can run ("blas" with SciPy installed)."""
    _find_blas()
    return [name for i, name in enumerate(KERNELS) if fm_kernel_available(i)]


def set_kernel(name):
    """Force a kernel set (also: environment variable FASTMLP_KERNEL at import).

    Process-wide, for tests and benchmarks: call it while no fit, predict or other engine
    call runs in any thread (the kernel sets' panel widths differ, and a call that saw
    the switch half-way would read its weights in the wrong layout)."""
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {name!r}")
    if name == "blas" and not _find_blas():
        raise ValueError("kernel 'blas' is not available here (it needs SciPy's BLAS, "
                         f"scipy.linalg.cython_blas); available: {available_kernels()}")
    if fm_kernel_select(KERNELS.index(name)) != 0:
        raise ValueError(f"kernel {name!r} is not available here; available: "
                         f"{available_kernels()}")


def blas_threads_controlled():
    """True when the "blas" kernel can hold the BLAS to one thread of its own during its
    calls (OpenBLAS, as SciPy's wheels ship it): it then runs on the engine's threads with
    results independent of their number. False (another BLAS, or none): it calls the BLAS
    from one thread and lets the BLAS thread itself."""
    return bool(fm_blas_threads_controlled())


_CACHE_SOURCES = ("default", "cpuid", "sysfs")
_BLOCK_MAX = 1 << 20


def kernel_info() -> dict:
    """What the engine knows of this CPU and how it blocks its matrix products.

    Returns
    -------
    dict
        ``kernel`` (the kernel set in use, as :func:`kernel`); ``vendor`` (cpuid's vendor
        string, "" when unknown), ``family`` and ``model`` (display family and model, e.g.
        25 and 17 for a Zen 4 EPYC; -1 when unknown); ``l1d`` and ``l2`` (bytes of one
        core's L1 data and L2 caches) and ``l3`` (bytes of L3, 0 when unknown);
        ``cache_source`` ("cpuid", "sysfs" or "default": where the sizes came from); and
        per dtype (``"float32"``, ``"float64"``) the register tile ``mr`` x ``nr``, the
        largest k-block ``kc`` (a packed panel's ``kc`` x ``nr`` slice fills a quarter of L2 for the AVX-512 tiles,
        half of L1d for narrower ones)
        and the rows ``mc`` that share one packed panel (a multiple of ``mr``, at most 64,
        ``mc`` x ``kc`` within half of L2). Results never depend on ``kc`` or ``mc``.
        ``fused_update_default``: whether training fuses the optimizer update into the
        backward pass unless told otherwise (see :func:`set_fused_update`).
    """
    cdef const fm_cpu_info *ci = fm_cpu_info_get()
    cdef int mr, nr, kc, mc
    info = {"kernel": kernel(), "vendor": ci.vendor.decode("ascii", "replace"),
            "family": ci.family, "model": ci.model, "l1d": ci.l1d, "l2": ci.l2, "l3": ci.l3,
            "cache_source": _CACHE_SOURCES[ci.cache_source],
            "fused_update_default": bool(fm_fused_update_default())}
    for name, f64 in (("float32", 0), ("float64", 1)):
        fm_blocking_info(f64, &mr, &nr, &kc, &mc)
        info[name] = {"mr": mr, "nr": nr, "kc": kc, "mc": mc}
    return info


def _block_size(value, str name):
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if not 1 <= value <= _BLOCK_MAX:
        raise ValueError(f"{name} must be in [1, {_BLOCK_MAX}] or None, got {value}")
    return int(value)


def set_blocking(kc=None, mc=None, span=None):
    """Force the k-block ``kc``, the row group ``mc`` and the ``span`` (rows of the left
    operand run through every panel before the next rows; rounded down to a multiple of
    ``mc``, at least ``mc``) of the register-tile products (tests; None: derived from the
    caches again, see :func:`kernel_info`). A forced ``kc`` splits every product deeper
    than it into blocks of exactly ``kc``. Results are bitwise the same for any values."""
    k = _block_size(kc, "kc")
    m = _block_size(mc, "mc")
    s = _block_size(span, "span")
    fm_blocking_force(k, m, s)


def panel_layout_calls():
    """Arrays the engine has converted into its training panel layout so far (tests read
    it to see that a fit trained in that layout)."""
    return fm_panel_layout_calls()


def predict_split_calls():
    """Predict calls whose rows the engine split between threads so far (tests read it)."""
    return fm_predict_split_calls()


def evaluate_split_calls():
    """Evaluate calls whose rows the engine split between threads so far (tests read it)."""
    return fm_evaluate_split_calls()


def set_fused_update(on):
    """Whether fit applies the optimizer update inside the backward pass (each weight
    tile's update while its gradient is in cache) where the step allows it: an
    elementwise rule, no ties, weight penalties, pruning mask, gradient clipping or
    per-layer gradient norms. ``None`` restores this machine's default
    (``kernel_info()["fused_update_default"]``: off on AMD and Hygon CPUs, where it was
    measured slower, on elsewhere). The environment variable FASTMLP_FUSED_UPDATE=0 or 1
    sets it at import (another value is named in a warning). Results are bitwise the same
    either way (tests and benchmarks compare the two); process-wide, and safe to call
    while fits run (each fit call reads it once)."""
    fm_fused_update_set(-1 if on is None else 1 if on else 0)


def fused_update():
    """Whether the fused update is on (see :func:`set_fused_update`)."""
    return bool(fm_fused_update_enabled())


cdef inline fm_fpenv _fp_enter() noexcept nogil:
    """An engine call's floating-point mode on this thread (csrc/fpenv.h): subnormals
    flushed to zero unless set_flush_denormal(False); fm_fp_leave gives the thread's own
    environment back after the call."""
    return fm_fp_enter(fm_flush_denormal_enabled())


def set_flush_denormal(on):
    """Whether the engine flushes subnormal numbers to zero in its arithmetic (on by
    default; off: IEEE gradual underflow, as NumPy and the reference compute).

    Subnormals (magnitudes below 1.2e-38 in float32, 2.2e-308 in float64) cost Intel cores
    a microcode assist of about a hundred cycles per instruction that meets one, and
    training makes them: Adam's moment of a weight whose gradient stays zero decays into
    that range and stays there. On an Intel Xeon a Fashion-MNIST fit with Adam at batch
    128 took 1.12 s for its first epoch and 2.43 s for its eighth with them, 1.14-1.17 s
    for every epoch flushed (at batch 32: 4.8 s and 10.3 s, flushed 1.64-1.71 s; the same
    test accuracy; benchmarks/subnormal.py). Flushing changes only results below
    those magnitudes (to zero) and what depends on them (ReLU's derivative at a
    pre-activation that small), the same way on every path and thread count, so results
    stay deterministic; the FTZ and DAZ modes are set on the engine's threads for the
    duration of each engine call and restored after it (the calling thread's NumPy
    arithmetic is not affected). Only x86-64 flushes (elsewhere this setting is kept
    but has no effect: see :func:`flush_denormal_supported`). The environment variable
    FASTMLP_FLUSH_DENORMAL=0 or 1 sets it at import. Process-wide, and safe to call while
    other threads run engine calls (each call reads it once, at its start)."""
    if not isinstance(on, (bool, np.bool_)):
        raise TypeError(f"on must be True or False, got {type(on).__name__}")
    fm_flush_denormal_set(1 if on else 0)


def flush_denormal():
    """Whether the engine flushes subnormal numbers to zero (see :func:`set_flush_denormal`)."""
    return bool(fm_flush_denormal_enabled())


def flush_denormal_supported():
    """Whether this build and CPU can flush subnormals (x86-64)."""
    return bool(fm_flush_denormal_supported())


def _team_fp_modes(int threads, bint flush):
    """Tests: (size, seen, after) - a region of `threads` threads opened from a thread in
    mode `flush` by an engine call: each thread's mode inside it (as every engine region
    sets it), and each thread's mode in a second region opened after the call (the
    caller's mode outside the call, here not flushing)."""
    if threads < 1 or threads > 256:
        raise ValueError(f"threads must be in [1, 256], got {threads}")
    cdef int[::1] seen = np.empty(threads, dtype=np.intc)
    cdef int[::1] after = np.empty(threads, dtype=np.intc)
    cdef int size = fm_fp_team_modes(threads, flush, &seen[0], &after[0])
    return size, np.asarray(seen)[:size].tolist(), np.asarray(after)[:size].tolist()


def _fp_flushing():
    """Tests: whether the calling thread flushes subnormals now."""
    return bool(fm_fp_flushing())


def fused_update_calls():
    """Layer weight updates made inside the backward pass so far (tests read it to see
    that a fit took the fused update)."""
    return fm_fused_update_calls()


def kernel_calls():
    """Dense-layer calls (either dtype) served by each kernel set so far."""
    return {name: fm_kernel_calls(i) for i, name in enumerate(KERNELS)}


def transposing_copy(m, int nr):
    """``m.T`` into a panel of ``nr`` columns by the active kernel set's transposing copy
    (csrc/gemm.h's ``pack_t``: csrc/transpose_avx2.c), for tests.

    `m` (nb, K) is a float32 or float64 NumPy array whose rows are contiguous, at any row
    stride (a column slice of a wider array reads as the weight gradient reads a layer's
    input); ``nb <= nr``. Returns buf (K, nr) of m's dtype with ``buf[:, :nb] == m.T``;
    the copy must leave the columns from nb on as they were: NaN. ValueError when the
    active set has no transposing copy of that dtype (the generic and blas sets use a
    portable loop inside the products instead)."""
    if not isinstance(m, np.ndarray) or m.dtype not in (np.float32, np.float64):
        raise TypeError("m must be a float32 or float64 NumPy array")
    if m.ndim != 2:
        raise ValueError(f"m must be 2-D, got {m.ndim} dimensions")
    cdef Py_ssize_t nb = m.shape[0], K = m.shape[1], size = m.itemsize
    if nr < 1 or nb > nr:
        raise ValueError(f"nr must be at least 1 and at least m's {nb} rows, got {nr}")
    if K > 1 and m.strides[1] != size:
        raise ValueError("m's rows must be contiguous")
    if nb > 1 and (m.strides[0] < K * size or m.strides[0] % size):
        raise ValueError("m's row stride must be a whole number of elements, at least K")
    cdef int ldm = m.strides[0] // size if nb > 1 else K
    cdef const fm_kernel_set *ks = fm_kernels_uncounted()
    cdef bint single = m.dtype == np.float32
    if (single and ks.f32.pack_t == NULL) or (not single and ks.f64.pack_t == NULL):
        raise ValueError(f"kernel set {kernel()!r} has no transposing copy for {m.dtype}")
    buf = np.full((K, nr), np.nan, dtype=m.dtype)
    if nb == 0 or K == 0:
        return buf
    cdef size_t src = m.__array_interface__["data"][0]
    cdef void *dst = _ptr(buf)
    cdef int inb = nb, iK = K
    with nogil:
        if single:
            ks.f32.pack_t(<float *>dst, nr, <const float *>src, ldm, inb, iK)
        else:
            ks.f64.pack_t(<double *>dst, nr, <const double *>src, ldm, inb, iK)
    return buf


def vector_math(str name, x):
    """``name(x)`` elementwise ("exp" or "sigmoid") by the active kernel path's vector math
    (csrc/vmath.h, what the softmax and the logistic activation use), for tests: `x` a
    float32 or float64 NumPy array; returns a new C-contiguous array of its dtype and shape."""
    if name not in ("exp", "sigmoid"):
        raise ValueError(f"name must be 'exp' or 'sigmoid', got {name!r}")
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise TypeError("x must be a float32 or float64 NumPy array")
    y = np.array(x, order="C")
    cdef size_t n = y.size
    cdef void *p = _ptr(y)
    cdef const fm_vmath_set *vm = fm_vmath()
    cdef bint single = y.dtype == np.float32
    cdef bint use_exp = name == "exp"
    if n == 0:
        return y
    with nogil:
        if single and use_exp:
            vm.exp_f32(<float *>p, <const float *>p, n)
        elif single:
            vm.sigmoid_f32(<float *>p, <const float *>p, n)
        elif use_exp:
            vm.exp_f64(<double *>p, <const double *>p, n)
        else:
            vm.sigmoid_f64(<double *>p, <const double *>p, n)
    return y


# Choose once, at import, before any thread can race for it; SciPy's BLAS is looked for
# (an import of scipy.linalg) only where it is asked for or no hand kernel applies.
if os.environ.get("FASTMLP_KERNEL") == "blas" or not (
        fm_kernel_available(FM_KERNEL_AVX2) or fm_kernel_available(FM_KERNEL_AVX512)):
    _find_blas()
fm_kernel_active()

# The fused update's switch from the environment, read here once: "0" off, "1" on;
# anything else is named in a warning and leaves this machine's default.
_fused_env = os.environ.get("FASTMLP_FUSED_UPDATE")
if _fused_env in ("0", "1"):
    fm_fused_update_set(int(_fused_env))
elif _fused_env is not None:
    warnings.warn(f"FASTMLP_FUSED_UPDATE={_fused_env!r} is neither '0' (off) nor '1' (on): "
                  "the fused optimizer update stays at this machine's default ("
                  f"{'on' if fm_fused_update_default() else 'off'})", RuntimeWarning)

# The subnormal flush from the environment, read here once: "0" off, "1" on (the default);
# anything else is named in a warning and leaves it on.
_flush_env = os.environ.get("FASTMLP_FLUSH_DENORMAL")
if _flush_env in ("0", "1"):
    fm_flush_denormal_set(int(_flush_env))
elif _flush_env is not None:
    warnings.warn(f"FASTMLP_FLUSH_DENORMAL={_flush_env!r} is neither '0' (off) nor '1' (on): "
                  "the engine flushes subnormal numbers to zero (the default)", RuntimeWarning)


def hash_u64(key, counter, stream, index):
    """The engine's counter-based hash (for tests of the reference twin)."""
    return fm_hash(key & _U64, counter & _U64, stream & _U64, index & _U64)


class NonFiniteInput(ValueError):
    """predict(check_finite=True) met NaN or infinity in an input row as the network sees it
    (the caller's own input check names it)."""


def _check_status(int status, str what):
    if status == FM_ERR_BAD_ARGUMENT:
        raise ValueError(f"fastmlp engine rejected the arguments of {what} (internal error)")


cdef void *_ptr(object arr) except? NULL:
    """Address of a C-contiguous array's data (NULL for None or empty). Through the buffer
    protocol: a typed memoryview of a reshaped view cost ~3 us a call, several per call of
    a one-row predict."""
    if arr is None:
        return NULL
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS)
    except (BufferError, ValueError):
        raise ValueError("internal error: non-contiguous buffer") from None
    cdef void *p = view.buf if view.len > 0 else NULL
    PyBuffer_Release(&view)  # (the caller keeps arr alive: its data stays where it is)
    return p


cdef const void *_first(object arr) except? NULL:
    """Address of a (possibly strided) array's first element."""
    cdef Py_buffer view
    PyObject_GetBuffer(arr, &view, PyBUF_STRIDES)
    cdef const void *p = view.buf
    PyBuffer_Release(&view)
    return p


cdef fm_csr _csr(object X, bint csr):
    """The C view of X when `csr` (empty data and indices: NULL, never read), else of no
    rows at all."""
    cdef fm_csr c
    c.data = NULL
    c.indices = NULL
    c.indptr = NULL
    c.n_rows = 0
    if not csr:
        return c
    c.data = _ptr(X.data)
    c.indices = <const int32_t *>_ptr(X.indices)
    c.indptr = <const int64_t *>_ptr(X.indptr)
    c.n_rows = X.shape[0]
    return c


cdef fm_penalty _penalty(object pen) except *:
    cdef fm_penalty p
    p.l2, p.l1, p.l1_proximal, p.biases, p.act_l1, p.act_l2 = pen
    return p


cdef fm_augment _augment(object aug) except *:
    cdef fm_augment a
    (a.noise_std, a.shift, a.height, a.width, a.channels, a.adv_eps, a.adv_ratio, a.rotate,
     a.scale, a.shear) = aug
    return a


# Element types the engine reads input rows of (fm_input_type), converting as it copies
INPUT_TYPES = {np.dtype(np.float32): FM_IN_F32, np.dtype(np.float64): FM_IN_F64,
               np.dtype(np.float16): FM_IN_F16, np.dtype(np.uint8): FM_IN_U8,
               np.dtype(np.int8): FM_IN_I8, np.dtype(np.uint16): FM_IN_U16,
               np.dtype(np.int16): FM_IN_I16, np.dtype(np.int32): FM_IN_I32}


NO_PENALTY = (0.0, 0.0, 0, 0, 0.0, 0.0)
# predict reads the weights of a layer with fewer non-zeros than this share as CSR
SPARSE_DENSITY = 0.15
NO_AUGMENT = (0.0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)


def augment(X, augment, uint64_t key, int64_t counter, int64_t row0=0, scale=None,
            shift=None):
    """A copy of the batch X (B, n) (float32 or float64, C-contiguous) transformed as
    training step `counter` of a model seeded with `key` transforms it, X's rows being rows
    `row0`.. of that step's batch (random affine maps,
    shifts, noise; an `augment` tuple of fastmlp.train.regularization.augment_config; FGSM
    excluded): what the engine trains on, for tests and for looking at the augmentation.
    With `scale` and `shift` ((n,) of X's dtype: a model's input transform) X holds raw
    rows, which move as they are before the transform (x * scale + shift), as in training."""
    if X.dtype not in (np.float32, np.float64) or X.ndim != 2 or not X.flags.c_contiguous:
        raise ValueError("X must be a C-contiguous 2-D float32 or float64 array")
    cdef fm_input tr
    cdef const fm_input *transform = NULL
    if (scale is None) != (shift is None):
        raise ValueError("the input transform needs both scale and shift")
    if scale is not None:
        for v in (scale, shift):
            if not isinstance(v, np.ndarray) or v.dtype != X.dtype or \
                    v.shape != (X.shape[1],) or not v.flags.c_contiguous:
                raise ValueError(f"scale and shift must be contiguous {X.dtype} of shape "
                                 f"({X.shape[1]},)")
        tr.data, tr.rows = NULL, NULL
        tr.scale, tr.shift = _ptr(scale), _ptr(shift)
        tr.check_finite = 0
        transform = &tr
    cdef fm_augment a = _augment(augment)
    if (a.shift > 0 or a.rotate > 0 or a.scale > 0 or a.shear > 0) and \
            a.height * a.width * a.channels != X.shape[1]:
        raise ValueError("the image shape does not match X's columns")
    out = X.copy()
    tmp = np.empty(X.shape[1], dtype=X.dtype)
    cdef int B = X.shape[0], n = X.shape[1]
    if B == 0 or n == 0:
        return out
    cdef void *o = _ptr(out)
    cdef void *t = _ptr(tmp)
    cdef bint f64 = X.dtype == np.float64
    cdef fm_fpenv fe
    with nogil:
        fe = _fp_enter()
        if f64:
            fm_augment_f64(<double *>o, <double *>t, B, n, &a, transform, key,
                           <uint64_t>counter, row0)
        else:
            fm_augment_f32(<float *>o, <float *>t, B, n, &a, transform, key,
                           <uint64_t>counter, row0)
        fm_fp_leave(fe)
    return out


def _check_heads(heads, int K):
    """`heads` as a contiguous HEAD_DTYPE array of the engine's own (a copy: the caller
    cannot change it after the checks), checked: blocks that cover the K outputs in order,
    known loss codes, weights >= 0 and label smoothing in [0, 1]."""
    table = np.array(heads, dtype=HEAD_DTYPE, order="C", copy=True)
    if sizeof(fm_head) != HEAD_DTYPE.itemsize:
        raise RuntimeError("HEAD_DTYPE does not match the engine's fm_head")
    if table.ndim != 1 or len(table) < 1:
        raise ValueError("heads must be a 1-D table of at least one head")
    end = 0
    for h in table:
        if h["offset"] != end or h["width"] < 1:
            raise ValueError("the heads' column blocks must cover the outputs in order")
        end += int(h["width"])
        if not 0 <= h["loss"] < _N_LOSSES or h["labels"] not in (0, 1):
            raise ValueError(f"unknown head loss code {h['loss']}")
        if h["labels"] and h["loss"] not in _LABEL_LOSSES or \
                h["loss"] == _MULTI_HINGE and not h["labels"]:
            raise ValueError(f"head loss code {h['loss']} with labels={h['labels']}: class "
                             "labels go with cross-entropy (0) or multi-hinge (4), which "
                             "must have them")
        if not (np.isfinite(h["weight"]) and h["weight"] >= 0):
            raise ValueError("head weights must be finite and >= 0")
        if not 0 <= h["label_smoothing"] <= 1:
            raise ValueError("a head's label_smoothing must lie in [0, 1]")
    if end != K:
        raise ValueError(f"the heads have {end} outputs in all; the network has {K}")
    table.flags.writeable = False
    return table


cdef class Engine:
    """Buffers of one network and the C calls on them."""

    cdef fm_net net
    cdef readonly bint is_f64
    cdef readonly object dtype
    cdef readonly object params
    cdef readonly object grads
    cdef readonly object running
    cdef readonly object rng_state
    cdef public object prune_mask
    cdef object _work           # the training workspace (train, loss_grad)
    cdef int _work_batch
    cdef bint _work_csr         # _work is sized for CSR input
    cdef object _pool           # free predict/evaluate workspaces: (threads, batch, array,
                                # sized for CSR input)
    cdef object _pool_lock
    cdef object _panels         # ((parameter version, kernel set), weights (the dtype) in panel
                                # layout for predict), replaced whole, never written in place
    cdef fm_adapt _adapt        # the adaptive thread count of train's steps (csrc/adapt.c)
    cdef object _scratch        # scratch (the dtype's) that lets train use the panel layout
    # False: train keeps every array row-major (tests compare the two layouts)
    cdef public bint panel_layout
    cdef readonly long long version  # bumped by every change of the parameters
    cdef readonly double label_smoothing  # cross-entropy's (fm_targets)
    cdef readonly object heads  # HEAD_DTYPE (n_heads,): the multitask heads, or None
    cdef public double sparse_density  # predict: CSR for layers with fewer non-zero weights
    cdef object _csr            # (parameter version, density, per layer (rowptr, cols, vals)
                                #  or None): predict's sparse weights
    cdef fm_adapt _curv_adapt   # the adaptive thread count of curvature products (per call)
    cdef object _curv_work      # (batch, bytes): the curvature products' workspace

    def __cinit__(self, *args, **kwargs):
        self._pool = []
        self._pool_lock = threading.Lock()

    def __init__(self, sizes, acts, double leaky_slope, int loss, dtype, int threads,
                 dropout=None, bint dropout_classic=False, bn=None, double bn_eps=1e-5,
                 double bn_momentum=0.1, double label_smoothing=0.0, heads=None, ties=()):
        cdef int L = len(sizes) - 1
        if L < 1 or L > FM_MAX_LAYERS:
            raise ValueError(f"a network needs 1 to {FM_MAX_LAYERS} layers, got {L}")
        if len(acts) != L - 1:
            raise ValueError("one activation per hidden layer is required")
        dropout = [0.0] * L if dropout is None else list(dropout)
        bn = [0] * (L - 1) if bn is None else list(bn)
        if len(dropout) != L or len(bn) != L - 1:
            raise ValueError("dropout needs one rate per dense layer input, bn one code per hidden layer")
        self.net.n_layers = L
        for l in range(L + 1):
            if sizes[l] < 1:
                raise ValueError("layer sizes must be positive")
            self.net.sizes[l] = sizes[l]
        for l in range(L):
            if not 0 <= dropout[l] < 1:
                raise ValueError("dropout rates must lie in [0, 1)")
            self.net.dropout[l] = dropout[l]
            self.net.act[l] = acts[l] if l < L - 1 else 0
            self.net.bn[l] = bn[l] if l < L - 1 else 0
        self.net.dropout_classic = dropout_classic
        self.net.bn_eps = bn_eps
        self.net.bn_momentum = bn_momentum
        self.net.csr_input = 0
        self.net.leaky_slope = leaky_slope
        self.net.loss = loss
        for layer, source, transpose in ties:  # (layer, source, transpose): ties.c
            if not (0 <= layer < L and 0 <= source < L):
                raise ValueError(f"tie ({layer}, {source}) names a layer outside 0..{L - 1}")
            self.net.tie[layer] = source + 1
            self.net.tie_transpose[layer] = bool(transpose)
        if not fm_ties_ok(&self.net):
            raise ValueError(f"invalid weight ties {list(ties)} for layer sizes {list(sizes)}")
        if not 0 <= label_smoothing <= 1:
            raise ValueError("label_smoothing must lie in [0, 1]")
        self.label_smoothing = label_smoothing
        self.heads = None if heads is None else _check_heads(heads, sizes[L])
        self.threads = threads
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"engine dtype must be float32 or float64, got {self.dtype}")
        self.is_f64 = self.dtype == np.float64
        self.params = np.zeros(fm_param_count(&self.net), dtype=self.dtype)
        self.grads = faulted(self.params.shape, self.dtype)  # the engine's threads write it
        self.running = np.zeros(fm_running_count(&self.net), dtype=self.dtype)
        for l in range(L - 1):  # running variance starts at 1, gamma at 1
            if self.net.bn[l]:
                O = self.net.sizes[l + 1]
                r0 = fm_running_offset(&self.net, l)
                self.running[r0 + O:r0 + 2 * O] = 1
                g0 = fm_bn_offset(&self.net, l)
                self.params[g0:g0 + O] = 1
        self.prune_mask = None
        self.rng_state = np.zeros(4, dtype=np.uint64)
        self._work = None
        self._work_batch = 0
        self._panels = None
        self._csr = None
        self.sparse_density = SPARSE_DENSITY
        self._scratch = None
        self._adapt.enabled = 1
        self._curv_adapt.enabled = 1
        self.panel_layout = True
        self.version = 0
        # Python writes go through set_params, which bumps `version` (predict's weight
        # panels depend on it); the engine's own calls write through their pointers.
        self.params.flags.writeable = False
        self.seed(0)

    def set_params(self, flat):
        """Copy `flat` (fm_param_count values, cast to the dtype) into the parameters; each
        tied layer's weights are then its source's (the values `flat` has there are
        ignored)."""
        self.params.flags.writeable = True
        try:
            np.copyto(self.params, flat, casting="same_kind")
            if self.is_f64:  # tied layers' weights follow their sources
                fm_tie_refresh_f64(&self.net, <double *>_ptr(self.params))
            else:
                fm_tie_refresh_f32(&self.net, <float *>_ptr(self.params))
        finally:
            self.params.flags.writeable = False
        self.version += 1

    cdef object _predict_panels(self, int64_t n):
        """The weights in panel layout for the active kernel (made when the parameters or
        the kernel changed), or None where predict would not use them. The caller keeps
        the array it gets for the length of its call: a later change makes a new one."""
        if n < 64:
            return None
        key = (self.version, fm_kernel_active())
        cached = self._panels
        if cached is not None and cached[0] == key:
            return cached[1]
        count = fm_packed_weights_count(&self.net, self.dtype.itemsize)
        if count == 0:
            return None
        panels = np.empty(count, dtype=self.dtype)
        if self.is_f64:
            fm_pack_weights_f64(&self.net, <const double *>_ptr(self.params),
                                <double *>_ptr(panels))
        else:
            fm_pack_weights_f32(&self.net, <const float *>_ptr(self.params),
                                <float *>_ptr(panels))
        self._panels = (key, panels)
        return panels

    cdef object _predict_csr(self):
        """Per dense layer, its weights as CSR of W^T (rowptr, cols, vals) when the share
        of non-zero weights is below `sparse_density`, else None; None when no layer is
        sparse. Made when the parameters changed; the caller keeps what it gets for the
        length of its call."""
        key = (self.version, self.sparse_density)
        cached = self._csr
        if cached is not None and cached[0] == key:
            return cached[1]
        layers = []
        for l in range(self.net.n_layers):
            I, O = self.net.sizes[l], self.net.sizes[l + 1]
            w0 = fm_weight_offset(&self.net, l)
            WT = self.params[w0:w0 + I * O].reshape(I, O).T
            nonzero = WT != 0
            nnz = int(np.count_nonzero(nonzero))
            if nnz >= self.sparse_density * I * O:
                layers.append(None)
                continue
            rowptr = np.zeros(O + 1, dtype=np.int32)
            np.cumsum(nonzero.sum(axis=1), out=rowptr[1:])
            rows, cols = np.nonzero(nonzero)  # row-major: inputs in increasing order
            layers.append((rowptr, cols.astype(np.int32), np.ascontiguousarray(WT[rows, cols])))
        result = layers if any(entry is not None for entry in layers) else None
        self._csr = (key, result)
        return result

    cdef fm_targets _targets(self, labels, dense, weights) except *:
        """The engine's view of checked targets, with the model's label smoothing."""
        cdef fm_targets t
        t.labels = <const int32_t *>_ptr(labels)
        t.dense = _ptr(dense)
        t.weights = _ptr(weights)
        t.label_smoothing = self.label_smoothing
        t.heads = <const fm_head *>_ptr(self.heads)
        t.n_heads = 0 if self.heads is None else len(self.heads)
        return t

    cdef void *_layout_scratch(self):
        """Scratch for train's panel layout (kept), or NULL where it has no use."""
        if not self.panel_layout:
            return NULL
        dtype = np.float64 if self.is_f64 else np.float32
        # elements of the dtype; 0 on kernel sets where it is not used
        count = fm_layout_scratch_count(&self.net, np.dtype(dtype).itemsize)
        if count == 0:
            return NULL
        if self._scratch is None or self._scratch.shape[0] < count:
            self._scratch = faulted((count,), dtype)
        return _ptr(self._scratch)

    @property
    def threads(self):
        return self.net.n_threads

    @threads.setter
    def threads(self, int value):
        if value < 1:
            raise ValueError(f"threads must be >= 1, got {value}")
        if value > self.net.n_threads:
            self.release()  # the workspaces hold per-thread buffers
        self.net.n_threads = value

    @property
    def adaptive_threads(self):
        """True: train runs each step, and curvature_product/jvp each call, with `threads`
        or with one thread, whichever its measured steps (calls) show to be faster now
        (csrc/adapt.c), and predict/evaluate run on one thread while the last measurement
        (of any model, in the last 2 s, on steps of about their blocks' work) found teams
        slower; False: always `threads`."""
        return bool(self._adapt.enabled)

    @adaptive_threads.setter
    def adaptive_threads(self, bint value):
        self._adapt.enabled = value
        self._curv_adapt.enabled = value

    def hinted_threads(self, int rows):
        """The threads predict/evaluate use for blocks of `rows` rows: 1 while the last
        adaptive measurement on steps of about that much work found teams slower."""
        return fm_adapt_hint(&self.net, rows) if self._adapt.enabled else self.net.n_threads

    def thread_stats(self):
        """{"one": steps train ran with one thread, "many": with `threads`}."""
        return {"one": self._adapt.steps[0], "many": self._adapt.steps[1]}

    def curvature_thread_stats(self):
        """{"one": curvature_product/jvp calls run with one thread, "many": with
        `threads`}."""
        return {"one": self._curv_adapt.steps[0], "many": self._curv_adapt.steps[1]}

    def _simulate_load(self, double one, double many):
        """Tests only: add `one` / `many` seconds to every measured one-thread /
        multi-thread training step and curvature call, as if the machine made them that
        much slower."""
        self._adapt.test_extra[0] = self._curv_adapt.test_extra[0] = one
        self._adapt.test_extra[1] = self._curv_adapt.test_extra[1] = many

    def reserve(self, int batch, bint csr=False):
        """Allocate the workspace for batches of up to `batch` rows of dense input, or of
        CSR input with `csr` (no-op if large enough and of that kind)."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        cdef fm_net net = self.net
        if batch > self._work_batch or csr != self._work_csr:
            net.csr_input = csr
            nbytes = fm_workspace_bytes(&net, batch, self.dtype.itemsize)
            self._work = None  # before the new one: never both at once
            self._work = faulted(nbytes, np.uint8)
            self._work_batch = batch
            self._work_csr = csr

    def release(self):
        """Free the workspaces (calls running now keep theirs until they return)."""
        self._work = None
        self._work_batch = 0
        with self._pool_lock:
            self._pool = []

    cdef object _take_workspace(self, int batch, bint csr):
        """(threads, batch, array, csr): a workspace for batches of up to `batch` rows
        (of CSR input with `csr`) that no other call uses, from the pool or new."""
        cdef int threads = self.net.n_threads
        with self._pool_lock:
            for i, entry in enumerate(self._pool):
                if entry[0] == threads and entry[1] >= batch and entry[3] == csr:
                    del self._pool[i]
                    return entry
        cdef fm_net net = self.net
        net.csr_input = csr
        return (threads, batch, faulted(fm_workspace_bytes(&net, batch, self.dtype.itemsize),
                                        np.uint8), csr)

    cdef fm_buffers _pooled_buffers(self, object work, int cap, fm_net *net) except *:
        """Buffers of a predict/evaluate call on the pooled workspace `work` (blocks of up
        to `cap` rows), and in net the network with this call's thread count: the
        workspace's, or one while teams are measured slow (csrc/adapt.c)."""
        net[0] = self.net
        net.n_threads = work[0]
        net.csr_input = work[3]
        if self._adapt.enabled and work[0] > 1:
            net.n_threads = fm_adapt_hint(net, cap)
        cdef fm_buffers b = self._buffers()
        b.work = _ptr(work[2])
        b.batch_cap = cap
        return b

    cdef void _give_workspace(self, object entry):
        """Back into the pool (at most a few are kept; none for another thread count)."""
        with self._pool_lock:
            if entry[0] == self.net.n_threads and len(self._pool) < _POOL_SIZE:
                self._pool.append(entry)

    cdef fm_buffers _buffers(self) except *:
        cdef fm_buffers b
        if self.prune_mask is not None and (self.prune_mask.shape != self.params.shape
                                             or self.prune_mask.dtype != self.dtype):
            raise ValueError("prune mask must match the parameters")
        b.params = _ptr(self.params)
        b.grads = _ptr(self.grads)
        b.running = _ptr(self.running)
        b.prune_mask = _ptr(self.prune_mask)
        b.work = _ptr(self._work)
        b.batch_cap = self._work_batch
        b.panels = NULL
        b.scratch = NULL
        b.adapt = NULL
        b.pruned = NULL
        b.grad_norms = NULL
        return b

    # -- layout (the only way in or out of the private layout) -------------------------
    def layout(self):
        """Per dense layer: (W offset, b offset, n_in, n_out, BN gamma offset or -1,
        running offset or -1)."""
        out = []
        for l in range(self.net.n_layers):
            bn = l < self.net.n_layers - 1 and self.net.bn[l]
            out.append((fm_weight_offset(&self.net, l), fm_bias_offset(&self.net, l),
                        self.net.sizes[l], self.net.sizes[l + 1],
                        fm_bn_offset(&self.net, l) if bn else -1,
                        fm_running_offset(&self.net, l) if bn else -1))
        return out

    # -- random numbers ---------------------------------------------------------------
    def seed(self, seed):
        """Seed the engine's xoshiro256** generator (splitmix64 seeding)."""
        cdef uint64_t[::1] s = self.rng_state
        fm_rng_seed(&s[0], <uint64_t>(int(seed) & _U64))

    def shuffle(self, order):
        """Fisher-Yates shuffle of an int64 index array in place."""
        cdef int64_t[::1] o = order
        cdef uint64_t[::1] s = self.rng_state
        if o.shape[0] > 1:
            with nogil:
                fm_shuffle(&s[0], &o[0], o.shape[0])

    def next_u64(self):
        cdef uint64_t[::1] s = self.rng_state
        return fm_rng_next(&s[0])

    # -- compute ------------------------------------------------------------------------
    def _check_X(self, X):
        if X.dtype != self.dtype or X.ndim != 2 or X.shape[1] != self.net.sizes[0]:
            raise ValueError(f"X must be (n, {self.net.sizes[0]}) {self.dtype}")
        if not X.flags.c_contiguous:
            raise ValueError("X must be C-contiguous")

    def _check_input(self, X):
        """True for CSR input (a fastmlp.io.csr.CSRInput, whose structure fastmlp.io.csr
        checked; here: dtypes, lengths, contiguity), False for dense X (which the caller
        checks: `_input`, or `_check_X`)."""
        if not isinstance(X, CSRInput):
            return False
        n = X.shape[0]
        if (X.shape[1] != self.net.sizes[0] or X.data.dtype != self.dtype
                or X.indices.dtype != np.int32 or X.indptr.dtype != np.int64
                or X.indptr.shape != (n + 1,) or X.data.ndim != 1
                or X.indices.shape != X.data.shape or X.indptr[0] != 0
                or X.indptr[n] != X.data.shape[0] or not X.data.flags.c_contiguous
                or not X.indices.flags.c_contiguous or not X.indptr.flags.c_contiguous):
            raise ValueError(f"sparse X must be ({n}, {self.net.sizes[0]}) CSR of {self.dtype} "
                             "values, int32 indices and int64 indptr (fastmlp.io.csr)")
        if self.net.dropout[0] > 0:
            raise ValueError("input dropout needs dense X: the engine multiplies sparse rows "
                             "as they are (densify X, or train without input dropout)")
        return True

    cdef fm_input _input(self, X) except *:
        """The rows of X as the engine reads them (fm_input): X is a C-contiguous array of
        the engine's dtype, or an object with the attributes of fastmlp.io.inputs.Features
        (`data`, `rows`, `scale`, `shift`). Checks what the C side relies on: the element
        type, the width, each row's elements contiguous, every selected row inside
        `data`, and the transform's arrays. The caller keeps X alive for the call."""
        cdef fm_input r
        if isinstance(X, np.ndarray):
            self._check_X(X)
            data, rows, scale, shift = X, None, None, None
        else:
            data, rows, scale, shift = X.data, X.rows, X.scale, X.shift
        cdef int I = self.net.sizes[0]
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != I or \
                data.dtype not in INPUT_TYPES:
            raise ValueError(f"input data must be (n, {I}) of one of "
                             f"{[str(t) for t in INPUT_TYPES]}")
        if I > 1 and data.strides[1] != data.dtype.itemsize:
            raise ValueError("each input row's elements must be contiguous")
        if rows is not None:
            if rows.dtype != np.int64 or rows.ndim != 1 or not rows.flags.c_contiguous:
                raise ValueError("input rows must be a contiguous 1-D int64 array")
            if rows.shape[0] and (rows.min() < 0 or rows.max() >= data.shape[0]):
                raise ValueError(f"input rows must lie in [0, {data.shape[0]})")
        if (scale is None) != (shift is None):
            raise ValueError("the input transform needs both scale and shift")
        for v in (scale, shift):
            if v is not None and (v.dtype != self.dtype or v.shape != (I,)
                                  or not v.flags.c_contiguous):
                raise ValueError(f"input scale and shift must be contiguous {self.dtype} "
                                 f"of shape ({I},)")
        r.data = _first(data)
        r.type = INPUT_TYPES[data.dtype]
        r.row_stride = data.strides[0]
        r.rows = <const int64_t *>_ptr(rows)
        r.scale = _ptr(scale)
        r.shift = _ptr(shift)
        r.check_finite = 0
        return r

    def _check_targets(self, labels, dense, n, weights=None):
        K = self.net.sizes[self.net.n_layers]
        if weights is not None and (weights.dtype != self.dtype or weights.shape != (n,)
                                    or not weights.flags.c_contiguous):
            raise ValueError(f"weights must be contiguous {self.dtype} of shape ({n},)")
        if (labels is None) == (dense is None):
            raise ValueError("exactly one of labels and dense targets is required")
        if self.heads is not None and labels is not None:
            raise ValueError("a multitask net reads its targets packed per head (dense)")
        if labels is not None and (labels.dtype != np.int32 or labels.shape != (n,)
                                   or not labels.flags.c_contiguous):
            raise ValueError(f"labels must be contiguous int32 of shape ({n},)")
        if dense is not None and (dense.dtype != self.dtype or dense.shape != (n, K)
                                  or not dense.flags.c_contiguous):
            raise ValueError(f"dense targets must be contiguous {self.dtype} of shape ({n}, {K})")

    def predict(self, X, int batch_cap=512, bint logits=False, bint check_finite=False):
        """Outputs after the loss's output activation (before it with logits=True),
        (n, n_L), in inference mode. X: a CSRInput, or dense rows as `_input` takes them.
        check_finite (dense X): the engine checks each block's rows as the network sees
        them, in the same pass, and raises NonFiniteInput for NaN or infinity."""
        if self.heads is not None and not logits:
            raise ValueError("a multitask net's output activations are per head: predict "
                             "logits and apply them per column block")
        cdef bint csr = self._check_input(X)
        cdef fm_input xin
        if not csr:
            xin = self._input(X)
            xin.check_finite = check_finite
        cdef int64_t n = X.shape[0]
        out = np.empty((n, self.net.sizes[self.net.n_layers]), dtype=self.dtype)
        if n == 0:
            return out
        cdef int cap = <int>min(batch_cap, n)
        work = self._take_workspace(cap, csr)
        cdef fm_net net
        cdef fm_buffers b = self._pooled_buffers(work, cap, &net)
        panels = self._predict_panels(n)
        b.panels = _ptr(panels)
        csr_layers = self._predict_csr()
        cdef fm_pruned_csr pruned[FM_MAX_LAYERS]
        if csr_layers is not None:
            for l, entry in enumerate(csr_layers):
                pruned[l].rowptr = NULL if entry is None else <const int32_t *>_ptr(entry[0])
                pruned[l].cols = NULL if entry is None else <const int32_t *>_ptr(entry[1])
                pruned[l].vals = NULL if entry is None else _ptr(entry[2])
            b.pruned = pruned
        cdef fm_csr c = _csr(X, csr)
        cdef void *o = _ptr(out)
        cdef int status
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if csr and self.is_f64:
                status = fm_predict_csr_f64(&net, &b, &c, logits, <double *>o)
            elif csr:
                status = fm_predict_csr_f32(&net, &b, &c, logits, <float *>o)
            elif self.is_f64:
                status = fm_predict_f64(&net, &b, &xin, n, logits, <double *>o)
            else:
                status = fm_predict_f32(&net, &b, &xin, n, logits, <float *>o)
            fm_fp_leave(fe)
        self._give_workspace(work)
        if status == FM_ERR_NONFINITE_INPUT:
            raise NonFiniteInput("the input holds NaN or infinity")
        _check_status(status, "predict")
        return out

    def loss_grad(self, X, labels, dense, bint training=False, penalty=NO_PENALTY,
                  uint64_t key=0, int64_t counter=0, bint input_grad=False, weights=None):
        """Mean loss (weighted by `weights` (n,) when given) + penalties over the batch;
        gradients into self.grads; dL/dX if asked (dense X only: None for CSR input)."""
        cdef bint csr = self._check_input(X)
        if not csr:
            self._check_X(X)
        n = X.shape[0]
        if n < 1:
            raise ValueError("loss_grad needs at least one sample")
        self._check_targets(labels, dense, n, weights)
        self.reserve(n, csr)
        dX = np.empty_like(X) if input_grad and not csr else None
        cdef fm_buffers b = self._buffers()
        cdef fm_penalty p = _penalty(penalty)
        cdef fm_random r
        r.key, r.counter = key, counter
        cdef fm_targets t = self._targets(labels, dense, weights)
        cdef void *x = NULL if csr else _ptr(X)
        cdef fm_csr c = _csr(X, csr)
        cdef fm_net net = self.net
        net.csr_input = csr
        cdef void *dx = _ptr(dX)
        cdef int nn = n
        cdef double loss = 0
        cdef int status
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if csr and self.is_f64:
                status = fm_loss_grad_csr_f64(&net, &b, &c, t, training, &p, r, &loss)
            elif csr:
                status = fm_loss_grad_csr_f32(&net, &b, &c, t, training, &p, r, &loss)
            elif self.is_f64:
                status = fm_loss_grad_f64(&self.net, &b, <double *>x, t, nn, training, &p, r,
                                          &loss, <double *>dx)
            else:
                status = fm_loss_grad_f32(&self.net, &b, <float *>x, t, nn, training, &p, r,
                                          &loss, <float *>dx)
            fm_fp_leave(fe)
        _check_status(status, "loss_grad")
        return loss, dX

    def evaluate(self, X, labels, dense, int batch_cap=512):
        """(sum of per-sample losses, sum of per-sample accuracies) over X (a CSRInput, or
        dense rows as `_input` takes them), inference mode."""
        cdef bint csr = self._check_input(X)
        cdef fm_input xin
        if not csr:
            xin = self._input(X)
        cdef int64_t n = X.shape[0]
        self._check_targets(labels, dense, n)
        if n == 0:
            return 0.0, 0.0
        cdef int cap = <int>min(batch_cap, n)
        work = self._take_workspace(cap, csr)
        cdef fm_net net
        cdef fm_buffers b = self._pooled_buffers(work, cap, &net)
        cdef fm_targets t = self._targets(labels, dense, None)
        cdef fm_csr c = _csr(X, csr)
        cdef double loss_sum = 0, correct_sum = 0
        cdef int status
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if csr and self.is_f64:
                status = fm_evaluate_csr_f64(&net, &b, &c, t, &loss_sum, &correct_sum)
            elif csr:
                status = fm_evaluate_csr_f32(&net, &b, &c, t, &loss_sum, &correct_sum)
            elif self.is_f64:
                status = fm_evaluate_f64(&net, &b, &xin, t, n, &loss_sum, &correct_sum)
            else:
                status = fm_evaluate_f32(&net, &b, &xin, t, n, &loss_sum, &correct_sum)
            fm_fp_leave(fe)
        self._give_workspace(work)
        _check_status(status, "evaluate")
        return loss_sum, correct_sum

    def train(self, X, labels, dense, order, int64_t start, int n_steps, int batch_size, lr,
              int kind, dict hyper, int64_t step, slots, clip, penalty, augment, uint64_t key,
              int64_t counter, weights=None, snapshot=None, grad_norms=None):
        """Run n_steps steps with learning rates lr (n_steps,), the update rule `kind` with
        `hyper` (fm_optimizer field names) and state `slots` (3 arrays shaped like params,
        or None), clip = (max_norm, max_value, error_if_nonfinite), penalty and augment
        tuples (see NO_PENALTY / NO_AUGMENT), the step randomness (key, counter) and optional
        per-sample weights (n,). snapshot: None, or (params, running, slots) arrays shaped
        like those, that receive the state at the start once the first step's loss is
        finite. grad_norms: None, or a float64 array (n_steps, n_layers) that receives each
        step's per-layer weight-gradient norms. `order` holds k >= 1 epochs of n = len(X)
        sample indices; the steps take batches from position `start` on, never across an
        epoch's end (see steps_end). X: a CSRInput, or dense rows as `_input` takes them.
        Returns (status, steps_done, step_loss, step_correct, step, counter). CSR input takes
        no input augmentation (noise, shifts, affine maps, adversarial rows)."""
        cdef bint csr = self._check_input(X)
        cdef fm_input xin
        if not csr:
            xin = self._input(X)
        n = X.shape[0]
        self._check_targets(labels, dense, n, weights)
        if (order.dtype != np.int64 or order.ndim != 1 or order.shape[0] == 0
                or order.shape[0] % n or not order.flags.c_contiguous):
            raise ValueError(f"order must be a contiguous int64 array of k * {n} indices "
                             "(k epochs)")
        if batch_size < 1 or n_steps < 0 or start < 0 or \
                steps_end(start, n_steps, batch_size, n) > order.shape[0]:
            raise ValueError("steps run past the end of the data")
        self.reserve(batch_size, csr)  # again: a larger thread count releases the workspace
        if lr.dtype != np.float64 or lr.shape != (n_steps,) or not lr.flags.c_contiguous:
            raise ValueError(f"lr must be contiguous float64 of shape ({n_steps},)")
        _check_slots(slots, self.params)
        cdef fm_snapshot snap
        cdef fm_snapshot *snap_ptr = NULL
        if snapshot is not None:
            snap_params, snap_running, snap_slots = snapshot
            _check_slots([snap_params] + [None] * (FM_OPT_MAX_SLOTS - 1), self.params)
            _check_slots([snap_running] + [None] * (FM_OPT_MAX_SLOTS - 1), self.running)
            _check_slots(snap_slots, self.params)
            snap.params = _ptr(snap_params)
            snap.running = _ptr(snap_running)
            for i in range(FM_OPT_MAX_SLOTS):
                snap.slot[i] = _ptr(snap_slots[i])
            snap_ptr = &snap
        step_loss = np.zeros(n_steps, dtype=np.float64)
        step_correct = np.zeros(n_steps, dtype=np.float64)
        if n_steps == 0:
            return FM_OK, 0, step_loss, step_correct, step, counter
        cdef fm_optimizer opt = _make_optimizer(kind, hyper, step, slots)
        cdef fm_clip c
        c.max_norm, c.max_value, c.error_if_nonfinite = clip
        cdef fm_penalty p = _penalty(penalty)
        cdef fm_augment a = _augment(augment)
        if csr and (a.noise_std > 0 or a.shift > 0 or a.adv_eps > 0):
            raise ValueError("input noise, shifts and adversarial training need dense X")
        cdef fm_random r
        r.key, r.counter = key, counter
        cdef fm_buffers b = self._buffers()
        b.scratch = self._layout_scratch()
        b.adapt = &self._adapt
        if grad_norms is not None:
            if (not isinstance(grad_norms, np.ndarray) or grad_norms.dtype != np.float64
                    or grad_norms.shape != (n_steps, self.net.n_layers)
                    or not grad_norms.flags.c_contiguous or not grad_norms.flags.writeable):
                raise ValueError(f"grad_norms must be a writeable contiguous float64 array "
                                 f"of shape ({n_steps}, {self.net.n_layers})")
            b.grad_norms = <double *>_ptr(grad_norms)
        cdef fm_targets t = self._targets(labels, dense, weights)
        cdef fm_csr cx = _csr(X, csr)
        cdef fm_net net = self.net
        net.csr_input = csr
        cdef const int64_t *o = <const int64_t *>_ptr(order)
        cdef const double *rates = <const double *>_ptr(lr)
        cdef double *sl = <double *>_ptr(step_loss)
        cdef double *sc = <double *>_ptr(step_correct)
        cdef int64_t nn = n
        cdef int status, done = 0
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if csr and self.is_f64:
                status = fm_train_csr_f64(&net, &b, batch_size, &cx, t, o, start, n_steps, rates,
                                          &opt, &c, &p, &a, &r, snap_ptr, sl, sc, &done)
            elif csr:
                status = fm_train_csr_f32(&net, &b, batch_size, &cx, t, o, start, n_steps, rates,
                                          &opt, &c, &p, &a, &r, snap_ptr, sl, sc, &done)
            elif self.is_f64:
                status = fm_train_f64(&net, &b, batch_size, &xin, t, nn, o, start,
                                      n_steps, rates, &opt, &c, &p, &a, &r, snap_ptr, sl, sc,
                                      &done)
            else:
                status = fm_train_f32(&self.net, &b, batch_size, &xin, t, nn, o, start,
                                      n_steps, rates, &opt, &c, &p, &a, &r, snap_ptr, sl, sc,
                                      &done)
            fm_fp_leave(fe)
        self.version += 1
        _check_status(status, "train")
        return status, done, step_loss, step_correct, opt.step, r.counter

    # -- data-parallel training (fastmlp.distributed) ------------------------------------
    def block_grad(self, out, X, labels, dense, idx, int block, int64_t row0,
                   double grad_scale, double stat_scale, augment, uint64_t key,
                   int64_t counter, weights=None):
        """The first half of a data-parallel step: into out (params + running count)
        grad_scale * the mean-loss gradient over rows idx of X, which are rows row0.. of
        the global batch of step `counter` (their dropout and augmentation draws), with
        batch norm on these rows' statistics, then stat_scale * (each batch-norm layer's
        mean, unbiased variance of these rows). Returns grad_scale * (the rows' mean loss,
        mean accuracy), before penalties, and the thread count it ran on: `threads` or one,
        as train's steps of `block` rows would (adaptive_threads; the result is the same
        either way). X: dense rows as `_input` takes them."""
        cdef fm_input xin = self._input(X)
        n = X.shape[0]
        self._check_targets(labels, dense, n, weights)
        if idx.dtype != np.int64 or idx.ndim != 1 or not idx.flags.c_contiguous or \
                idx.shape[0] < 1 or idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"idx must be a non-empty contiguous int64 array of rows of X")
        count = self.params.shape[0] + self.running.shape[0]
        if out.dtype != self.dtype or out.shape != (count,) or not out.flags.c_contiguous \
                or not out.flags.writeable:
            raise ValueError(f"out must be a writeable contiguous {self.dtype} array of "
                             f"shape ({count},)")
        if row0 < 0:
            raise ValueError("row0 must be >= 0")
        if block < idx.shape[0]:
            raise ValueError("block must be at least the number of rows")
        cdef int B = idx.shape[0]
        self.reserve(B)
        cdef fm_augment a = _augment(augment)
        cdef fm_random r
        r.key, r.counter = key, counter
        cdef fm_buffers b = self._buffers()
        b.adapt = &self._adapt
        cdef fm_targets t = self._targets(labels, dense, weights)
        cdef void *o = _ptr(out)
        cdef const int64_t *ip = <const int64_t *>_ptr(idx)
        cdef double loss = 0, correct = 0
        cdef int status, threads = 1
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if self.is_f64:
                status = fm_block_grad_f64(<double *>o, &self.net, &b, &xin, t, ip, B,
                                           block, row0, grad_scale, stat_scale, &a, r, &loss,
                                           &correct, &threads)
            else:
                status = fm_block_grad_f32(<float *>o, &self.net, &b, &xin, t, ip, B,
                                           block, row0, grad_scale, stat_scale, &a, r, &loss,
                                           &correct, &threads)
            fm_fp_leave(fe)
        _check_status(status, "block_grad")
        return loss, correct, threads

    def apply_grad(self, stats, double lr, int kind, dict hyper, int64_t step, slots, clip,
                   penalty, int threads=1):
        """The second half of a data-parallel step, on `threads` threads: the update of
        `train`'s step from the gradient in self.grads (weight penalties, pruning mask,
        clipping, the update rule `kind`, the L1 proximal step), then the batch-norm running
        statistics move towards `stats` (laid out as self.running). Returns (status,
        penalty value, step)."""
        if stats.dtype != self.dtype or stats.shape != self.running.shape or \
                not stats.flags.c_contiguous:
            raise ValueError(f"stats must be contiguous {self.dtype} of shape "
                             f"{self.running.shape}")
        _check_slots(slots, self.params)
        cdef fm_optimizer opt = _make_optimizer(kind, hyper, step, slots)
        cdef fm_clip c
        c.max_norm, c.max_value, c.error_if_nonfinite = clip
        cdef fm_penalty p = _penalty(penalty)
        cdef fm_buffers b = self._buffers()
        cdef void *st = _ptr(stats)
        cdef double loss = 0
        cdef int status
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if self.is_f64:
                status = fm_apply_grad_f64(&self.net, &b, <double *>st, lr, &opt, &c, &p,
                                           max(threads, 1), &loss)
            else:
                status = fm_apply_grad_f32(&self.net, &b, <float *>st, lr, &opt, &c, &p,
                                           max(threads, 1), &loss)
            fm_fp_leave(fe)
        self.version += 1
        _check_status(status, "apply_grad")
        return status, loss, opt.step

    # -- curvature (csrc/curvature_impl.h) ----------------------------------------------
    cdef fm_buffers _curvature_buffers(self, int64_t n, int block, fm_net *net) except *:
        """Buffers with the curvature workspace for blocks of min(block, n) rows (kept for
        the next call), and in net the thread count of this call: `threads` or one,
        whichever the calls' measured times show to be faster now (csrc/adapt.c; each call
        is one timed step, see _record_curvature), as train's steps."""
        cdef int cap = <int>min(block, n)
        net[0] = self.net
        net.n_threads = fm_adapt_threads(&self._curv_adapt, &self.net, cap)
        w = self._curv_work
        cdef int batch = cap if w is None else max(cap, <int>w[0])
        cdef size_t needed = fm_curvature_workspace_bytes(net, batch, self.dtype.itemsize)
        if w is None or w[1].nbytes < needed:
            w = (batch, faulted(needed, np.uint8))
        else:  # one workspace serves either thread count (it holds `batch` rows at this one)
            w = (batch, w[1])
        self._curv_work = w
        cdef fm_buffers b = self._buffers()
        b.work = _ptr(w[1])
        b.batch_cap = batch
        return b

    cdef void _record_curvature(self, const fm_net *net, double t0):
        fm_adapt_record(&self._curv_adapt, net.n_threads, fm_seconds() - t0, 1)

    def _check_vector(self, v, shape, name):
        if v.dtype != self.dtype or v.shape != shape or not v.flags.c_contiguous:
            raise ValueError(f"{name} must be contiguous {self.dtype} of shape {shape}")

    def curvature_product(self, X, labels, dense, v, bint gauss_newton, penalty=NO_PENALTY,
                          weights=None, int block=512, bint training=False, uint64_t key=0,
                          int64_t counter=0):
        """H v (or, gauss_newton, G v) of the objective over all of X (mean loss weighted by
        `weights`, + penalties), in blocks of `block` rows in inference mode; with `training`,
        in the mode of training step (key, counter), all rows in one block (batch statistics
        and dropout masks span them)."""
        self._check_X(X)
        cdef int64_t n = X.shape[0]
        if n < 1 or block < 1:
            raise ValueError("curvature products need at least one sample and block >= 1")
        if self.heads is not None:  # (the loss Hessian has one loss per output layer)
            raise ValueError("curvature products do not support multitask heads")
        self._check_targets(labels, dense, n, weights)
        self._check_vector(v, self.params.shape, "v")
        out = np.empty_like(self.params)
        cdef fm_net net
        cdef fm_buffers b = self._curvature_buffers(n, _curvature_block(n, block, training),
                                                    &net)
        cdef fm_penalty p = _penalty(penalty)
        cdef fm_random r
        r.key, r.counter = key, counter
        cdef fm_targets t = self._targets(labels, dense, weights)
        cdef void *x = _ptr(X)
        cdef void *vp = _ptr(v)
        cdef void *o = _ptr(out)
        cdef int status
        cdef double t0 = fm_seconds()
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if self.is_f64 and gauss_newton:
                status = fm_gnvp_f64(<double *>o, &net, &b, <double *>vp, <double *>x, t, n, &p,
                                     training, r)
            elif self.is_f64:
                status = fm_hvp_f64(<double *>o, &net, &b, <double *>vp, <double *>x, t, n, &p,
                                    training, r)
            elif gauss_newton:
                status = fm_gnvp_f32(<float *>o, &net, &b, <float *>vp, <float *>x, t, n, &p,
                                     training, r)
            else:
                status = fm_hvp_f32(<float *>o, &net, &b, <float *>vp, <float *>x, t, n, &p,
                                    training, r)
            fm_fp_leave(fe)
        self._record_curvature(&net, t0)
        _check_status(status, "a curvature product")
        return out

    def jvp(self, X, v, vx=None, int block=512, bint training=False, uint64_t key=0,
            int64_t counter=0):
        """(n, n_L): the logits' Jacobian-vector product along parameters v and inputs vx
        (None: zero), in blocks of `block` rows in inference mode, or in the mode of training
        step (key, counter) as curvature_product."""
        self._check_X(X)
        cdef int64_t n = X.shape[0]
        self._check_vector(v, self.params.shape, "v")
        if vx is not None:
            self._check_vector(vx, X.shape, "vx")
        out = np.empty((n, self.net.sizes[self.net.n_layers]), dtype=self.dtype)
        if n == 0:
            return out
        cdef fm_net net
        cdef fm_buffers b = self._curvature_buffers(n, _curvature_block(n, block, training),
                                                    &net)
        cdef fm_random r
        r.key, r.counter = key, counter
        cdef void *x = _ptr(X)
        cdef void *vp = _ptr(v)
        cdef void *vxp = _ptr(vx)
        cdef void *o = _ptr(out)
        cdef int status
        cdef double t0 = fm_seconds()
        cdef fm_fpenv fe
        with nogil:
            fe = _fp_enter()
            if self.is_f64:
                status = fm_jvp_f64(<double *>o, &net, &b, <double *>vp, <double *>vxp,
                                    <double *>x, n, training, r)
            else:
                status = fm_jvp_f32(<float *>o, &net, &b, <float *>vp, <float *>vxp,
                                    <float *>x, n, training, r)
            fm_fp_leave(fe)
        self._record_curvature(&net, t0)
        _check_status(status, "a jacobian-vector product")
        return out


def _curvature_block(int64_t n, int block, bint training):
    """Rows per block of a curvature product: all n in training mode (its batch statistics
    and masks span them), which must then fit an int."""
    if not training:
        return block
    if n > 2147483647:
        raise ValueError(f"a training-mode curvature product takes all {n} rows in one block; "
                         "at most 2**31 - 1 fit")
    return <int>n


def steps_end(int64_t start, int64_t n_steps, int64_t batch_size, int64_t n):
    """The position in `order` after n_steps batches of up to batch_size from `start`, where
    `order` holds epochs of n indices and a batch never crosses an epoch's end (fm_train's
    rule; n_steps >= 0)."""
    cdef int64_t r = start % n
    cdef int64_t first = (n - r + batch_size - 1) // batch_size  # steps left in start's epoch
    if n_steps <= first:
        return min(start + n_steps * batch_size, start - r + n)
    cdef int64_t per_epoch = (n + batch_size - 1) // batch_size
    cdef int64_t last = n_steps - first - 1  # the last step, counted from the next epoch
    return start - r + n * (1 + last // per_epoch) + min((last % per_epoch + 1) * batch_size, n)


def _check_slots(slots, params):
    if len(slots) != FM_OPT_MAX_SLOTS:
        raise ValueError(f"expected {FM_OPT_MAX_SLOTS} optimizer slots")
    for s in slots:
        if s is not None and (s.dtype != params.dtype or s.shape != params.shape
                              or not s.flags.c_contiguous or not s.flags.writeable):
            raise ValueError(f"optimizer state must be {params.dtype} of shape {params.shape}")


cdef fm_optimizer _make_optimizer(int kind, dict h, int64_t step, slots) except *:
    if not FM_OPT_SGD <= kind <= FM_OPT_DELTA_BAR_DELTA:
        raise ValueError(f"unknown optimizer kind {kind}")
    cdef fm_optimizer o
    o.kind = kind
    o.momentum = h.get("momentum", 0.0)
    o.dampening = h.get("dampening", 0.0)
    o.weight_decay = h.get("weight_decay", 0.0)
    o.eps = h.get("eps", 0.0)
    o.alpha = h.get("alpha", 0.0)
    o.rho = h.get("rho", 0.0)
    o.beta1 = h.get("beta1", 0.0)
    o.beta2 = h.get("beta2", 0.0)
    o.lr_decay = h.get("lr_decay", 0.0)
    o.etaminus = h.get("etaminus", 0.0)
    o.etaplus = h.get("etaplus", 0.0)
    o.step_min = h.get("step_min", 0.0)
    o.step_max = h.get("step_max", 0.0)
    o.kappa = h.get("kappa", 0.0)
    o.phi = h.get("phi", 0.0)
    o.theta = h.get("theta", 0.0)
    o.nesterov = h.get("nesterov", False)
    o.centered = h.get("centered", False)
    o.amsgrad = h.get("amsgrad", False)
    o.eps_inside = h.get("eps_inside", False)
    o.step = step
    for k in range(FM_OPT_MAX_SLOTS):
        o.slot[k] = _ptr(slots[k])
    return o


def optimizer_step(int kind, dict hyper, int64_t step, p, g, slots, double lr, int threads):
    """One in-place update of the 1-D contiguous array p from g; returns the new step count."""
    if p.ndim != 1 or not p.flags.c_contiguous or not p.flags.writeable:
        raise ValueError("p must be a writeable contiguous 1-D array")
    if g.shape != p.shape or g.dtype != p.dtype or not g.flags.c_contiguous:
        raise ValueError("g must match p in shape and dtype")
    if p.dtype not in (np.float32, np.float64):
        raise TypeError(f"optimizer arrays must be float32 or float64, got {p.dtype}")
    _check_slots(slots, p)
    cdef fm_optimizer opt = _make_optimizer(kind, hyper, step, slots)
    cdef size_t n = p.shape[0]
    cdef void *pp = _ptr(p)
    cdef void *gp = _ptr(g)
    cdef int nt = max(threads, 1)
    cdef bint f64 = p.dtype == np.float64
    if n == 0:
        return step + 1
    cdef fm_fpenv fe
    with nogil:
        fe = _fp_enter()
        if f64:
            fm_optimizer_step_f64(&opt, <double *>pp, <const double *>gp, n, lr, nt)
        else:
            fm_optimizer_step_f32(&opt, <float *>pp, <const float *>gp, n, lr, nt)
        fm_fp_leave(fe)
    return opt.step
