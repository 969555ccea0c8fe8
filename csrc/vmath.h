/* vmath.h — vectorised, deterministic elementwise math for the loss and the activations:
 * exp and the logistic function over arrays, float32 and float64, within 1-2 ulp of the
 * correctly rounded result over the whole range (overflow to +inf, underflow through the
 * subnormals to +0, exp(-inf) = 0, NaN in gives NaN out). Each element's result depends on
 * its value only (not on its position or the array's length), so splitting work over
 * threads never changes a bit. One set per kernel path (dispatch.c's FASTMLP_KERNEL /
 * fm_kernel_select): portable C and AVX2+FMA; the AVX-512 path uses the AVX2 set. */
#ifndef FASTMLP_VMATH_H
#define FASTMLP_VMATH_H

#include <stddef.h>

typedef struct {
    /* y (n) = exp(x (n)); y may be x */
    void (*exp_f32)(float *y, const float *x, size_t n);
    void (*exp_f64)(double *y, const double *x, size_t n);
    /* y (n) = 1 / (1 + exp(-x (n))); y may be x */
    void (*sigmoid_f32)(float *y, const float *x, size_t n);
    void (*sigmoid_f64)(double *y, const double *x, size_t n);
} fm_vmath_set;

/* The set of the active kernel path (fm_kernel_active). */
const fm_vmath_set *fm_vmath(void);

#define FM_VMATH_DECLARE(SFX)                                                    \
    void fm_vexp_f32_##SFX(float *y, const float *x, size_t n);                  \
    void fm_vexp_f64_##SFX(double *y, const double *x, size_t n);                \
    void fm_vsigmoid_f32_##SFX(float *y, const float *x, size_t n);              \
    void fm_vsigmoid_f64_##SFX(double *y, const double *x, size_t n);
FM_VMATH_DECLARE(generic)
FM_VMATH_DECLARE(avx2)
#undef FM_VMATH_DECLARE

#endif
