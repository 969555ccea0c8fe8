/* kernels.h — internal kernel declarations shared by the engine's translation units.
 * Shapes are row-major; B = batch rows, I = inputs, O = outputs, K = output units.
 * Every kernel exists as _f32 and _f64 (generated from the *_impl.h templates). */
#ifndef FASTMLP_KERNELS_H
#define FASTMLP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "fastmlp.h"

/* Work below this many multiply-adds stays on one thread: waking the pool costs more. */
#define FM_PARALLEL_MIN_WORK 32768

#define FM_KERNELS(T, SFX)                                                                      \
    /* x (n) <- act(x), in place */                                                             \
    void fm_act_forward_##SFX(T *x, size_t n, int act, double slope);                          \
    /* d (n) <- d * act'(z), with act'(z) computed from the activation's output a (n) */        \
    void fm_act_backward_##SFX(T *d, const T *a, size_t n, int act, double slope);             \
    /* Y (B, O) = act(X (B, I) @ W (I, O) + b (O)) */                                          \
    void fm_dense_forward_##SFX(T *Y, const T *X, const T *W, const T *b, int B, int I, int O, \
                                int act, double slope, int nt);                                 \
    /* dW (I, O) = X (B, I)^T @ D (B, O);  db (O) = sum over rows of D */                       \
    void fm_dense_backward_params_##SFX(T *dW, T *db, const T *X, const T *D, int B, int I,    \
                                        int O, int nt);                                         \
    /* dX (B, I) = (D (B, O) @ W (I, O)^T) * act'(A (B, I)); A == NULL: no activation factor */ \
    void fm_dense_backward_input_##SFX(T *dX, const T *D, const T *W, const T *A, int B, int I, \
                                       int O, int act, double slope, int nt);                   \
    /* Loss of logits Z (B, K) against targets rows idx[0..B) (idx NULL: rows 0..B).           \
       Writes sample_loss (B) and sample_correct (B); delta (B, K) = d(mean loss)/dZ unless     \
       delta is NULL. */                                                                        \
    void fm_loss_##SFX(T *delta, double *sample_loss, double *sample_correct, const T *Z,      \
                       fm_targets targets, const int64_t *idx, int B, int K, int loss);        \
    /* Y (B, K) <- the loss's output activation of logits Y, in place */                       \
    void fm_output_activation_##SFX(T *Y, int B, int K, int loss);                             \
    /* sum of squares of g (n) in double, summed over fixed blocks: thread-count independent */ \
    double fm_sum_squares_##SFX(const T *g, size_t n, int nt);

FM_KERNELS(float, f32)
FM_KERNELS(double, f64)
#undef FM_KERNELS

#endif
