# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The Cython boundary of the C engine (csrc/).

`Engine` owns every buffer as a NumPy array (parameters, gradients, workspace, RNG
state) and hands raw pointers to C for the length of one call, with the GIL
released. Arguments arrive validated by `fastmlp.model`; the checks here are the
cheap last line (sizes, dtypes via typed memoryviews) so that no call can reach
C with a buffer too small for it. The parameter layout is private: Python reads
and writes weights only through `get_params` / `set_params`.
"""
from libc.stdint cimport int32_t, int64_t, uint64_t

import numpy as np

from fastmlp._cengine cimport *

ctypedef fused real:
    float
    double

STATUS_OK = FM_OK
STATUS_NONFINITE_LOSS = FM_ERR_NONFINITE_LOSS
STATUS_NONFINITE_GRAD = FM_ERR_NONFINITE_GRAD
MAX_LAYERS = FM_MAX_LAYERS


def have_openmp():
    """True when the engine was built with OpenMP."""
    return bool(fm_have_openmp())


def default_threads():
    """OpenMP's default thread count (OMP_NUM_THREADS or the number of cores)."""
    return fm_max_threads()


def _check_status(int status, str what):
    if status == FM_ERR_BAD_ARGUMENT:
        raise ValueError(f"fastmlp engine rejected the arguments of {what} (internal error)")


cdef class Engine:
    """Parameters, gradients and workspace of one network, and the C calls on them."""

    cdef fm_net net
    cdef readonly bint is_f64
    cdef readonly object dtype
    cdef readonly object params
    cdef readonly object grads
    cdef readonly object rng_state
    cdef object _work
    cdef int _work_batch

    def __init__(self, sizes, acts, double leaky_slope, int loss, dtype, int threads):
        cdef int L = len(sizes) - 1
        if L < 1 or L > FM_MAX_LAYERS:
            raise ValueError(f"a network needs 1 to {FM_MAX_LAYERS} layers, got {L}")
        if len(acts) != L - 1:
            raise ValueError("one activation per hidden layer is required")
        self.net.n_layers = L
        for l in range(L + 1):
            if sizes[l] < 1:
                raise ValueError("layer sizes must be positive")
            self.net.sizes[l] = sizes[l]
        for l in range(L - 1):
            self.net.act[l] = acts[l]
        self.net.leaky_slope = leaky_slope
        self.net.loss = loss
        self.threads = threads
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"engine dtype must be float32 or float64, got {self.dtype}")
        self.is_f64 = self.dtype == np.float64
        cdef size_t n = fm_param_count(&self.net)
        self.params = np.zeros(n, dtype=self.dtype)
        self.grads = np.zeros(n, dtype=self.dtype)
        self.rng_state = np.zeros(4, dtype=np.uint64)
        self._work = None
        self._work_batch = 0
        self.seed(0)

    @property
    def threads(self):
        return self.net.n_threads

    @threads.setter
    def threads(self, int value):
        if value < 1:
            raise ValueError(f"threads must be >= 1, got {value}")
        self.net.n_threads = value

    @property
    def sizes(self):
        return [self.net.sizes[l] for l in range(self.net.n_layers + 1)]

    def reserve(self, int batch):
        """Allocate the workspace for batches of up to `batch` rows (no-op if large enough)."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if batch > self._work_batch:
            nbytes = fm_workspace_bytes(&self.net, batch, self.dtype.itemsize)
            self._work = np.empty(nbytes, dtype=np.uint8)
            self._work_batch = batch

    def release(self):
        """Free the workspace."""
        self._work = None
        self._work_batch = 0

    # -- parameters (the only way in or out of the private layout) -------------
    def _slices(self, int l):
        cdef size_t w0 = fm_weight_offset(&self.net, l)
        cdef size_t b0 = fm_bias_offset(&self.net, l)
        cdef int I = self.net.sizes[l], O = self.net.sizes[l + 1]
        return w0, b0, I, O

    def get_params(self):
        """Copies of (weights, biases); weights[l] has shape (n_l, n_{l+1})."""
        Ws, bs = [], []
        for l in range(self.net.n_layers):
            w0, b0, I, O = self._slices(l)
            Ws.append(self.params[w0:w0 + I * O].reshape(I, O).copy())
            bs.append(self.params[b0:b0 + O].copy())
        return Ws, bs

    def get_grads(self):
        """Copies of the gradients of the last loss_grad call, shaped like get_params()."""
        Ws, bs = [], []
        for l in range(self.net.n_layers):
            w0, b0, I, O = self._slices(l)
            Ws.append(self.grads[w0:w0 + I * O].reshape(I, O).copy())
            bs.append(self.grads[b0:b0 + O].copy())
        return Ws, bs

    def set_params(self, Ws, bs):
        """Copy weights (n_l, n_{l+1}) and biases (n_{l+1},) in; shapes must match."""
        for l in range(self.net.n_layers):
            w0, b0, I, O = self._slices(l)
            if Ws[l].shape != (I, O) or bs[l].shape != (O,):
                raise ValueError(f"layer {l}: expected W {(I, O)} and b {(O,)}")
        for l in range(self.net.n_layers):
            w0, b0, I, O = self._slices(l)
            self.params[w0:w0 + I * O] = Ws[l].reshape(-1)
            self.params[b0:b0 + O] = bs[l]

    # -- random numbers ---------------------------------------------------------
    def seed(self, seed):
        """Seed the engine's xoshiro256** generator (splitmix64 seeding)."""
        cdef uint64_t[::1] s = self.rng_state
        fm_rng_seed(&s[0], <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF))

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

    # -- compute ----------------------------------------------------------------
    def _check_X(self, X):
        if X.dtype != self.dtype or X.ndim != 2 or X.shape[1] != self.net.sizes[0]:
            raise ValueError(f"X must be ({X.shape[0]}, {self.net.sizes[0]}) {self.dtype}")
        if not X.flags.c_contiguous:
            raise ValueError("X must be C-contiguous")

    def _check_targets(self, labels, dense, n):
        K = self.net.sizes[self.net.n_layers]
        if (labels is None) == (dense is None):
            raise ValueError("exactly one of labels and dense targets is required")
        if labels is not None and (labels.dtype != np.int32 or labels.shape != (n,)):
            raise ValueError(f"labels must be int32 of shape ({n},)")
        if dense is not None and (dense.dtype != self.dtype or dense.shape != (n, K)):
            raise ValueError(f"dense targets must be {self.dtype} of shape ({n}, {K})")

    def predict(self, X, int batch_cap=512):
        """Outputs after the loss's output activation, (n, n_L)."""
        self._check_X(X)
        cdef int64_t n = X.shape[0]
        out = np.empty((n, self.net.sizes[self.net.n_layers]), dtype=self.dtype)
        if n == 0:
            return out
        batch_cap = <int>min(batch_cap, n)
        self.reserve(batch_cap)
        _check_status(_predict(self, self.params, self._work, batch_cap, X, out), "predict")
        return out

    def loss_grad(self, X, labels, dense, bint input_grad=False):
        """Mean loss over the batch; gradients into self.grads; dL/dX if input_grad."""
        self._check_X(X)
        n = X.shape[0]
        if n < 1:
            raise ValueError("loss_grad needs at least one sample")
        self._check_targets(labels, dense, n)
        self.reserve(n)
        dX = np.empty_like(X) if input_grad else None
        loss = _loss_grad(self, self.params, self.grads, self._work, X, labels, dense, dX)
        return loss, dX

    def evaluate(self, X, labels, dense, int batch_cap=512):
        """(sum of per-sample losses, sum of per-sample accuracies) over X."""
        self._check_X(X)
        n = X.shape[0]
        self._check_targets(labels, dense, n)
        if n == 0:
            return 0.0, 0.0
        batch_cap = <int>min(batch_cap, n)
        self.reserve(batch_cap)
        return _evaluate(self, self.params, self._work, batch_cap, X, labels, dense)

    def train(self, X, labels, dense, order, int64_t start, int n_steps, int batch_size,
              lr, int kind, dict hyper, int64_t step, slots, clip):
        """Run n_steps steps with learning rates lr (n_steps,), the update rule `kind` with
        `hyper` (fm_optimizer field names) and state `slots` (3 arrays shaped like params,
        or None), and clip = (max_norm, max_value, error_if_nonfinite).
        Returns (status, steps_done, step_loss, step_correct, step)."""
        self._check_X(X)
        n = X.shape[0]
        self._check_targets(labels, dense, n)
        if order.dtype != np.int64 or order.shape != (n,) or not order.flags.c_contiguous:
            raise ValueError(f"order must be a contiguous int64 array of shape ({n},)")
        if batch_size < 1 or n_steps < 0 or start < 0 or start + (n_steps - 1) * batch_size >= n:
            raise ValueError("steps run past the end of the data")
        if batch_size > self._work_batch:
            raise ValueError("call reserve(batch_size) before train")
        if lr.dtype != np.float64 or lr.shape != (n_steps,):
            raise ValueError(f"lr must be float64 of shape ({n_steps},)")
        _check_slots(slots, self.params)
        step_loss = np.zeros(n_steps, dtype=np.float64)
        step_correct = np.zeros(n_steps, dtype=np.float64)
        if n_steps == 0:
            return FM_OK, 0, step_loss, step_correct, step
        cdef fm_optimizer opt = _make_optimizer(kind, hyper, step)
        cdef fm_clip c
        c.max_norm, c.max_value, c.error_if_nonfinite = clip
        if self.is_f64:
            status, done, step = _train[double](
                self, self.params, self.grads, self._work, batch_size, X, labels, dense, order,
                start, n_steps, lr, &opt, &c, slots[0], slots[1], slots[2], step_loss,
                step_correct)
        else:
            status, done, step = _train[float](
                self, self.params, self.grads, self._work, batch_size, X, labels, dense, order,
                start, n_steps, lr, &opt, &c, slots[0], slots[1], slots[2], step_loss,
                step_correct)
        _check_status(status, "train")
        return status, done, step_loss, step_correct, step


def _check_slots(slots, params):
    if len(slots) != FM_OPT_MAX_SLOTS:
        raise ValueError(f"expected {FM_OPT_MAX_SLOTS} optimizer slots")
    for s in slots:
        if s is not None and (s.dtype != params.dtype or s.shape != params.shape
                              or not s.flags.c_contiguous):
            raise ValueError(f"optimizer state must be {params.dtype} of shape {params.shape}")


cdef fm_optimizer _make_optimizer(int kind, dict h, int64_t step) except *:
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
    o.step = step
    for k in range(FM_OPT_MAX_SLOTS):
        o.slot[k] = NULL
    return o


def optimizer_step(int kind, dict hyper, int64_t step, p, g, slots, double lr, int threads):
    """One in-place update of the 1-D contiguous array p from g; returns the new step count."""
    if p.ndim != 1 or not p.flags.c_contiguous or not p.flags.writeable:
        raise ValueError("p must be a writeable contiguous 1-D array")
    if g.shape != p.shape or g.dtype != p.dtype:
        raise ValueError("g must match p in shape and dtype")
    _check_slots(slots, p)
    cdef fm_optimizer opt = _make_optimizer(kind, hyper, step)
    if p.shape[0] == 0:
        opt.step += 1
        return opt.step
    if p.dtype == np.float64:
        _step[double](p, g, &opt, slots[0], slots[1], slots[2], lr, max(threads, 1))
    elif p.dtype == np.float32:
        _step[float](p, g, &opt, slots[0], slots[1], slots[2], lr, max(threads, 1))
    else:
        raise TypeError(f"optimizer arrays must be float32 or float64, got {p.dtype}")
    return opt.step


cdef fm_targets _targets(const int32_t[::1] labels, const void *dense):
    cdef fm_targets t
    t.labels = &labels[0] if labels is not None else NULL
    t.dense = dense
    return t


def _predict(Engine e, const real[::1] params, unsigned char[::1] work, int cap,
             const real[:, ::1] X, real[:, ::1] out):
    cdef int status
    with nogil:
        if real is float:
            status = fm_predict_f32(&e.net, &params[0], &work[0], cap, &X[0, 0], X.shape[0],
                                    &out[0, 0])
        else:
            status = fm_predict_f64(&e.net, &params[0], &work[0], cap, &X[0, 0], X.shape[0],
                                    &out[0, 0])
    return status


def _loss_grad(Engine e, const real[::1] params, real[::1] grads, unsigned char[::1] work,
               const real[:, ::1] X, const int32_t[::1] labels, const real[:, ::1] dense,
               real[:, ::1] dX):
    cdef double loss = 0
    cdef int status
    cdef fm_targets t = _targets(labels, &dense[0, 0] if dense is not None else NULL)
    cdef real *dx = &dX[0, 0] if dX is not None else NULL
    with nogil:
        if real is float:
            status = fm_loss_grad_f32(&e.net, &params[0], &grads[0], &work[0], &X[0, 0], t,
                                      X.shape[0], &loss, dx)
        else:
            status = fm_loss_grad_f64(&e.net, &params[0], &grads[0], &work[0], &X[0, 0], t,
                                      X.shape[0], &loss, dx)
    _check_status(status, "loss_grad")
    return loss


def _evaluate(Engine e, const real[::1] params, unsigned char[::1] work, int cap,
              const real[:, ::1] X, const int32_t[::1] labels, const real[:, ::1] dense):
    cdef double loss_sum = 0, correct_sum = 0
    cdef int status
    cdef fm_targets t = _targets(labels, &dense[0, 0] if dense is not None else NULL)
    with nogil:
        if real is float:
            status = fm_evaluate_f32(&e.net, &params[0], &work[0], cap, &X[0, 0], t, X.shape[0],
                                     &loss_sum, &correct_sum)
        else:
            status = fm_evaluate_f64(&e.net, &params[0], &work[0], cap, &X[0, 0], t, X.shape[0],
                                     &loss_sum, &correct_sum)
    _check_status(status, "evaluate")
    return loss_sum, correct_sum


cdef void _set_slots(fm_optimizer *opt, real[::1] s0, real[::1] s1, real[::1] s2):
    opt.slot[0] = &s0[0] if s0 is not None else NULL
    opt.slot[1] = &s1[0] if s1 is not None else NULL
    opt.slot[2] = &s2[0] if s2 is not None else NULL


cdef _train(Engine e, real[::1] params, real[::1] grads, unsigned char[::1] work,
            int batch_size, const real[:, ::1] X, const int32_t[::1] labels,
            const real[:, ::1] dense, const int64_t[::1] order, int64_t start, int n_steps,
            const double[::1] lr, fm_optimizer *opt, const fm_clip *clip, real[::1] s0,
            real[::1] s1, real[::1] s2, double[::1] step_loss, double[::1] step_correct):
    cdef int status, done = 0
    cdef fm_targets t = _targets(labels, &dense[0, 0] if dense is not None else NULL)
    _set_slots(opt, s0, s1, s2)
    with nogil:
        if real is float:
            status = fm_train_f32(&e.net, &params[0], &grads[0], &work[0], batch_size, &X[0, 0],
                                  t, X.shape[0], &order[0], start, n_steps, &lr[0], opt, clip,
                                  &step_loss[0], &step_correct[0], &done)
        else:
            status = fm_train_f64(&e.net, &params[0], &grads[0], &work[0], batch_size, &X[0, 0],
                                  t, X.shape[0], &order[0], start, n_steps, &lr[0], opt, clip,
                                  &step_loss[0], &step_correct[0], &done)
    return status, done, opt.step


cdef _step(real[::1] p, const real[::1] g, fm_optimizer *opt, real[::1] s0, real[::1] s1,
           real[::1] s2, double lr, int threads):
    _set_slots(opt, s0, s1, s2)
    with nogil:
        if real is float:
            fm_optimizer_step_f32(opt, &p[0], &g[0], p.shape[0], lr, threads)
        else:
            fm_optimizer_step_f64(opt, &p[0], &g[0], p.shape[0], lr, threads)
