# Declarations of the C engine's public API (csrc/fastmlp.h).
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef extern from "fastmlp.h" nogil:
    enum:
        FM_MAX_LAYERS
    enum:
        FM_OPT_MAX_SLOTS
    enum:
        FM_OPT_SGD
        FM_OPT_DELTA_BAR_DELTA
    enum:
        FM_OK
        FM_ERR_NONFINITE_LOSS
        FM_ERR_BAD_ARGUMENT
        FM_ERR_NONFINITE_GRAD
        FM_ERR_NONFINITE_INPUT

    ctypedef struct fm_net:
        int n_layers
        int sizes[FM_MAX_LAYERS + 1]
        int act[FM_MAX_LAYERS]
        double leaky_slope
        int loss
        int n_threads
        double dropout[FM_MAX_LAYERS]
        int dropout_classic
        int bn[FM_MAX_LAYERS]
        double bn_eps, bn_momentum
        int csr_input
        int tie[FM_MAX_LAYERS]
        int tie_transpose[FM_MAX_LAYERS]

    ctypedef struct fm_adapt:
        int enabled
        double test_extra[2]
        int64_t steps[2]
        int current

    void fm_adapt_forget()
    int fm_adapt_hint(const fm_net *net, int rows)

    ctypedef struct fm_pruned_csr:
        const int32_t *rowptr
        const int32_t *cols
        const void *vals

    ctypedef struct fm_buffers:
        void *params
        void *grads
        void *running
        const void *prune_mask
        void *work
        int batch_cap
        const void *panels
        void *scratch
        fm_adapt *adapt
        const fm_pruned_csr *pruned
        double *grad_norms

    ctypedef struct fm_penalty:
        double l2, l1
        int l1_proximal, biases
        double act_l1, act_l2

    ctypedef struct fm_augment:
        double noise_std
        int shift, height, width, channels
        double adv_eps, adv_ratio
        double rotate, scale, shear

    ctypedef struct fm_random:
        uint64_t key
        int64_t counter

    ctypedef struct fm_head:
        int offset, width, loss, labels
        double weight, label_smoothing

    ctypedef struct fm_targets:
        const int32_t *labels
        const void *dense
        const void *weights
        double label_smoothing
        const fm_head *heads
        int n_heads

    enum:
        FM_IN_F32
        FM_IN_F64
        FM_IN_F16
        FM_IN_U8
        FM_IN_I8
        FM_IN_U16
        FM_IN_I16
        FM_IN_I32

    ctypedef struct fm_input:
        const void *data
        int type
        int64_t row_stride
        const int64_t *rows
        const void *scale
        const void *shift
        int check_finite

    ctypedef struct fm_optimizer:
        int kind
        double momentum, dampening, weight_decay, eps
        double alpha, rho, beta1, beta2, lr_decay
        double etaminus, etaplus, step_min, step_max
        double kappa, phi, theta
        int nesterov, centered, amsgrad
        int eps_inside
        int64_t step
        void *slot[FM_OPT_MAX_SLOTS]

    ctypedef struct fm_snapshot:
        void *params
        void *running
        void *slot[FM_OPT_MAX_SLOTS]

    ctypedef struct fm_clip:
        double max_norm
        double max_value
        int error_if_nonfinite

    size_t fm_param_count(const fm_net *net)
    size_t fm_weight_offset(const fm_net *net, int layer)
    size_t fm_bias_offset(const fm_net *net, int layer)
    size_t fm_bn_offset(const fm_net *net, int layer)
    size_t fm_running_count(const fm_net *net)
    size_t fm_running_offset(const fm_net *net, int layer)
    size_t fm_workspace_bytes(const fm_net *net, int batch, size_t real_size)

    void fm_rng_seed(uint64_t state[4], uint64_t seed)
    uint64_t fm_rng_next(uint64_t state[4])
    void fm_shuffle(uint64_t state[4], int64_t *order, int64_t n)
    uint64_t fm_hash(uint64_t key, uint64_t counter, uint64_t stream, uint64_t index)

    int fm_predict_f32(const fm_net *net, const fm_buffers *buf, const fm_input *X, int64_t n,
                       int logits, float *out)
    int fm_predict_f64(const fm_net *net, const fm_buffers *buf, const fm_input *X, int64_t n,
                       int logits, double *out)
    int fm_loss_grad_f32(const fm_net *net, const fm_buffers *buf, const float *X,
                         fm_targets targets, int n, int training, const fm_penalty *pen,
                         fm_random rng, double *loss, float *input_grad)
    int fm_loss_grad_f64(const fm_net *net, const fm_buffers *buf, const double *X,
                         fm_targets targets, int n, int training, const fm_penalty *pen,
                         fm_random rng, double *loss, double *input_grad)
    int fm_evaluate_f32(const fm_net *net, const fm_buffers *buf, const fm_input *X,
                        fm_targets targets, int64_t n, double *loss_sum, double *correct_sum)
    int fm_evaluate_f64(const fm_net *net, const fm_buffers *buf, const fm_input *X,
                        fm_targets targets, int64_t n, double *loss_sum, double *correct_sum)
    int fm_train_f32(const fm_net *net, const fm_buffers *buf, int batch_size, const fm_input *X,
                     fm_targets targets, int64_t n, const int64_t *order, int64_t start,
                     int n_steps, const double *lr, fm_optimizer *opt, const fm_clip *clip,
                     const fm_penalty *pen, const fm_augment *aug, fm_random *rng,
                     const fm_snapshot *snap, double *step_loss, double *step_correct,
                     int *steps_done)
    int fm_train_f64(const fm_net *net, const fm_buffers *buf, int batch_size, const fm_input *X,
                     fm_targets targets, int64_t n, const int64_t *order, int64_t start,
                     int n_steps, const double *lr, fm_optimizer *opt, const fm_clip *clip,
                     const fm_penalty *pen, const fm_augment *aug, fm_random *rng,
                     const fm_snapshot *snap, double *step_loss, double *step_correct,
                     int *steps_done)
    int fm_block_grad_f32(float *out, const fm_net *net, const fm_buffers *buf, const fm_input *X,
                          fm_targets targets, const int64_t *idx, int B, int block,
                          int64_t row0, double grad_scale, double stat_scale,
                          const fm_augment *aug, fm_random rng, double *loss, double *correct,
                          int *threads)
    int fm_block_grad_f64(double *out, const fm_net *net, const fm_buffers *buf,
                          const fm_input *X, fm_targets targets, const int64_t *idx, int B,
                          int block, int64_t row0, double grad_scale, double stat_scale,
                          const fm_augment *aug, fm_random rng, double *loss, double *correct,
                          int *threads)
    int fm_apply_grad_f32(const fm_net *net, const fm_buffers *buf, const float *stats,
                          double lr, fm_optimizer *opt, const fm_clip *clip,
                          const fm_penalty *pen, int threads, double *loss)
    int fm_apply_grad_f64(const fm_net *net, const fm_buffers *buf, const double *stats,
                          double lr, fm_optimizer *opt, const fm_clip *clip,
                          const fm_penalty *pen, int threads, double *loss)
    ctypedef struct fm_csr:
        const void *data
        const int32_t *indices
        const int64_t *indptr
        int64_t n_rows

    int fm_predict_csr_f32(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                           int logits, float *out)
    int fm_predict_csr_f64(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                           int logits, double *out)
    int fm_loss_grad_csr_f32(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                             fm_targets targets, int training, const fm_penalty *pen,
                             fm_random rng, double *loss)
    int fm_loss_grad_csr_f64(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                             fm_targets targets, int training, const fm_penalty *pen,
                             fm_random rng, double *loss)
    int fm_evaluate_csr_f32(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                            fm_targets targets, double *loss_sum, double *correct_sum)
    int fm_evaluate_csr_f64(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                            fm_targets targets, double *loss_sum, double *correct_sum)
    int fm_train_csr_f32(const fm_net *net, const fm_buffers *buf, int batch_size,
                         const fm_csr *X, fm_targets targets, const int64_t *order,
                         int64_t start, int n_steps, const double *lr, fm_optimizer *opt,
                         const fm_clip *clip, const fm_penalty *pen, const fm_augment *aug,
                         fm_random *rng, const fm_snapshot *snap, double *step_loss,
                         double *step_correct, int *steps_done)
    int fm_train_csr_f64(const fm_net *net, const fm_buffers *buf, int batch_size,
                         const fm_csr *X, fm_targets targets, const int64_t *order,
                         int64_t start, int n_steps, const double *lr, fm_optimizer *opt,
                         const fm_clip *clip, const fm_penalty *pen, const fm_augment *aug,
                         fm_random *rng, const fm_snapshot *snap, double *step_loss,
                         double *step_correct, int *steps_done)

    void fm_optimizer_step_f32(fm_optimizer *opt, float *p, const float *g, size_t n, double lr,
                               int n_threads)
    void fm_optimizer_step_f64(fm_optimizer *opt, double *p, const double *g, size_t n,
                               double lr, int n_threads)
    int fm_fork_serial()
    size_t fm_packed_weights_count(const fm_net *net, size_t elem)
    size_t fm_layout_scratch_count(const fm_net *net, size_t elem)
    unsigned long long fm_panel_layout_calls()
    unsigned long long fm_predict_split_calls()
    unsigned long long fm_evaluate_split_calls()
    void fm_pack_weights_f32(const fm_net *net, const float *params, float *panels)
    void fm_pack_weights_f64(const fm_net *net, const double *params, double *panels)
    int fm_all_finite_f32(const float *x, size_t n, int n_threads)
    int fm_all_finite_f64(const double *x, size_t n, int n_threads)

    size_t fm_curvature_workspace_bytes(const fm_net *net, int batch, size_t real_size)

    int fm_ties_ok(const fm_net *net)
    void fm_tie_refresh_f32(const fm_net *net, float *params)
    void fm_tie_refresh_f64(const fm_net *net, double *params)
    int fm_hvp_f32(float *Hv, const fm_net *net, const fm_buffers *buf, const float *v,
                   const float *X, fm_targets targets, int64_t n, const fm_penalty *pen,
                   int training, fm_random rng)
    int fm_hvp_f64(double *Hv, const fm_net *net, const fm_buffers *buf, const double *v,
                   const double *X, fm_targets targets, int64_t n, const fm_penalty *pen,
                   int training, fm_random rng)
    int fm_gnvp_f32(float *Gv, const fm_net *net, const fm_buffers *buf, const float *v,
                    const float *X, fm_targets targets, int64_t n, const fm_penalty *pen,
                    int training, fm_random rng)
    int fm_gnvp_f64(double *Gv, const fm_net *net, const fm_buffers *buf, const double *v,
                    const double *X, fm_targets targets, int64_t n, const fm_penalty *pen,
                    int training, fm_random rng)
    int fm_jvp_f32(float *JV, const fm_net *net, const fm_buffers *buf, const float *v,
                   const float *vx, const float *X, int64_t n, int training,
                   fm_random rng)
    int fm_jvp_f64(double *JV, const fm_net *net, const fm_buffers *buf, const double *v,
                   const double *vx, const double *X, int64_t n, int training,
                   fm_random rng)


cdef extern from "kernels.h" nogil:
    int fm_adapt_threads(fm_adapt *a, const fm_net *net, int batch)
    void fm_adapt_record(fm_adapt *a, int threads, double seconds, int timed)
    double fm_seconds()
    void fm_blocking_info(int f64, int *mr, int *nr, int *kc, int *mc)
    int fm_fused_update_enabled()
    int fm_fused_update_default()
    void fm_fused_update_set(int on)
    unsigned long long fm_fused_update_calls()
    void fm_augment_f32(float *X, float *tmp, int B, int n, const fm_augment *aug,
                        const fm_input *transform, uint64_t key, uint64_t counter, int64_t row0)
    void fm_augment_f64(double *X, double *tmp, int B, int n, const fm_augment *aug,
                        const fm_input *transform, uint64_t key, uint64_t counter, int64_t row0)


cdef extern from "cpuinfo.h" nogil:
    ctypedef struct fm_cpu_info:
        char vendor[13]
        int family, model
        long l1d, l2, l3
        int cache_source
    const fm_cpu_info *fm_cpu_info_get()
    int fm_block_k(int nr, size_t elem_size)
    int fm_block_rows(int mr, int kc, size_t elem_size)
    void fm_blocking_force(int kc, int mc, int span)


cdef extern from "gemm.h" nogil:
    enum:
        FM_KERNEL_AVX2
        FM_KERNEL_AVX512
    int fm_kernel_active()
    int fm_kernel_available(int kernel)
    int fm_kernel_select(int kernel)
    unsigned long long fm_kernel_calls(int kernel)
    ctypedef struct fm_tiles_f32:
        void (*pack_t)(float *buf, int nr, const float *M, int ldm, int nb, int K) noexcept nogil
    ctypedef struct fm_tiles_f64:
        void (*pack_t)(double *buf, int nr, const double *M, int ldm, int nb,
                       int K) noexcept nogil
    ctypedef struct fm_kernel_set:
        fm_tiles_f32 f32
        fm_tiles_f64 f64
    const fm_kernel_set *fm_kernels_uncounted()


cdef extern from "blas.h" nogil:
    ctypedef void (*fm_gemm_fn_f32)(char *, char *, int *, int *, int *, float *, float *,
                                    int *, float *, int *, float *, float *, int *)
    ctypedef void (*fm_gemm_fn_f64)(char *, char *, int *, int *, int *, double *, double *,
                                    int *, double *, int *, double *, double *, int *)
    ctypedef int (*fm_blas_get_threads_fn)()
    ctypedef void (*fm_blas_set_threads_fn)(int)
    int fm_blas_register(fm_gemm_fn_f32 sgemm, fm_gemm_fn_f64 dgemm,
                         fm_blas_get_threads_fn get, fm_blas_set_threads_fn set)
    int fm_blas_ready()
    int fm_blas_threads_controlled()


cdef extern from "vmath.h" nogil:
    ctypedef struct fm_vmath_set:
        void (*exp_f32)(float *y, const float *x, size_t n) noexcept nogil
        void (*exp_f64)(double *y, const double *x, size_t n) noexcept nogil
        void (*sigmoid_f32)(float *y, const float *x, size_t n) noexcept nogil
        void (*sigmoid_f64)(double *y, const double *x, size_t n) noexcept nogil
    const fm_vmath_set *fm_vmath()


cdef extern from *:
    """
    #ifdef FASTMLP_HAVE_OPENMP
    #include <omp.h>
    static int fm_max_threads(void) { return omp_get_max_threads(); }
    static int fm_have_openmp(void) { return 1; }
    #else
    static int fm_max_threads(void) { return 1; }
    static int fm_have_openmp(void) { return 0; }
    #endif
    """
    int fm_max_threads() nogil
    int fm_have_openmp() nogil


cdef extern from "fpenv.h" nogil:
    ctypedef unsigned fm_fpenv
    int fm_fp_flushing()
    fm_fpenv fm_fp_enter(int on)
    void fm_fp_leave(fm_fpenv had)
    int fm_flush_denormal_enabled()
    void fm_flush_denormal_set(int on)
    int fm_flush_denormal_supported()
    int fm_fp_team_modes(int nt, int mode, int *seen, int *after)
