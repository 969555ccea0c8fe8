/* vmath_impl.h — the loops of vmath.h for one instruction set, named fm_v*_<VM_SFX>:
 * included by vmath.c (portable) and vmath_avx2.c (-mavx2 -mfma). Branch-free scalar code
 * that the compiler turns into vector loops; the remainder of a loop computes the same
 * operations as its vector body, so an element's bits do not depend on where it lies.
 *
 * exp(x) = 2^n * p(r): n = round(x / ln 2), r = x - n ln 2 in two parts (Cody-Waite, exact
 * for the n that occur), |r| <= ln(2)/2, p the Taylor polynomial of degree 13 (float64:
 * truncation 4e-18 relative) or 7 (float32: 5e-9), evaluated by Estrin's scheme. x is
 * first clamped to [lo, hi] just outside the finite range, where 2^n overflows to inf or underflows to 0 by itself; 2^n is
 * applied as two factors 2^n1 2^n2, each a normal number, so the subnormal results round
 * once. NaN passes every clamp (its comparisons are false) and stays NaN. The integer
 * parts are read from the bits of x / ln 2 + 1.5 * 2^52 (2^23), which needs no
 * float-to-int conversion the vector units lack. */
#include <stdint.h>
#include <string.h>

#define VM_CAT(a, b) a##_##b
#define VM_NAME(name, sfx) VM_CAT(name, sfx)
#define VM(name) VM_NAME(name, VM_SFX)

/* 2^n for an integer n of a normal power of two: the exponent field built from the bits
 * of n + MAGIC (n in its low mantissa bits) */
#define VM_POW2(NAME, T, U, MAGIC, BIAS, SHIFT)                                  \
    static inline T VM(NAME)(T n) {                                             \
        const T magic = MAGIC, s = n + magic;                                   \
        U bits, mbits;                                                          \
        memcpy(&bits, &s, sizeof bits);                                         \
        memcpy(&mbits, &magic, sizeof mbits);                                   \
        bits = (bits - mbits + BIAS) << SHIFT;                                  \
        T out;                                                                  \
        memcpy(&out, &bits, sizeof out);                                        \
        return out;                                                             \
    }
VM_POW2(pow2_f64, double, uint64_t, 0x1.8p52, 1023, 52)
VM_POW2(pow2_f32, float, uint32_t, 0x1.8p23f, 127, 23)

static inline double VM(exp_f64)(double x) {
    const double magic = 0x1.8p52;
    x = x < -745.2 ? -745.2 : x; /* exp(-745.2) < 2^-1075: rounds to 0 */
    x = x > 709.8 ? 709.8 : x;   /* exp(709.8) > DBL_MAX: inf */
    const double n = (x * 0x1.71547652b82fep0 + magic) - magic;
    const double r = (x - n * 0x1.62e42fee00000p-1) - n * 0x1.a39ef35793c76p-33;
    /* p(r) - 1 = r + r^2 (c2 + c3 r + ... + c13 r^11), c_k = 1/k!, the bracket by Estrin's
       scheme (a short dependency chain: a row of the softmax is only ~10 elements) */
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double a0 = 1.0 / 2 + r * (1.0 / 6), a1 = 1.0 / 24 + r * (1.0 / 120);
    const double a2 = 1.0 / 720 + r * (1.0 / 5040), a3 = 1.0 / 40320 + r * (1.0 / 362880);
    const double a4 = 1.0 / 3628800 + r * (1.0 / 39916800);
    const double a5 = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
    const double b0 = a0 + r2 * a1, b1 = a2 + r2 * a3, b2 = a4 + r2 * a5;
    const double p = r + r2 * (b0 + r4 * b1 + r8 * b2);
    const double n1 = (n * 0.5 + magic) - magic, n2 = n - n1;
    return (p + 1.0) * VM(pow2_f64)(n1) * VM(pow2_f64)(n2);
}

static inline float VM(exp_f32)(float x) {
    const float magic = 0x1.8p23f;
    x = x < -104.0f ? -104.0f : x; /* exp(-104) < 2^-150: rounds to 0 */
    x = x > 89.0f ? 89.0f : x;     /* exp(89) > FLT_MAX: inf */
    const float n = (x * 0x1.715476p0f + magic) - magic;
    const float r = (x - n * 0x1.62e4p-1f) - n * 0x1.7f7d1cp-20f;
    const float r2 = r * r;
    const float a0 = 1.0f / 2 + r * (1.0f / 6), a1 = 1.0f / 24 + r * (1.0f / 120);
    const float a2 = 1.0f / 720 + r * (1.0f / 5040);
    const float p = r + r2 * (a0 + r2 * (a1 + r2 * a2));
    const float n1 = (n * 0.5f + magic) - magic, n2 = n - n1;
    return (p + 1.0f) * VM(pow2_f32)(n1) * VM(pow2_f32)(n2);
}

#define VM_LOOP(T, NAME, EXPR)                                                   \
    void VM(NAME)(T *y, const T *x, size_t n) {                                 \
        for (size_t i = 0; i < n; i++) {                                        \
            const T v = x[i];                                                   \
            y[i] = EXPR;                                                        \
        }                                                                       \
    }

VM_LOOP(double, fm_vexp_f64, VM(exp_f64)(v))
VM_LOOP(float, fm_vexp_f32, VM(exp_f32)(v))
/* sigmoid(v) from e = exp(-|v|) <= 1, never overflowing: 1 / (1 + e) for v >= 0, else
 * e / (1 + e) */
VM_LOOP(double, fm_vsigmoid_f64, (v >= 0 ? 1.0 : VM(exp_f64)(v < 0 ? v : -v)) /
                                     (1.0 + VM(exp_f64)(v < 0 ? v : -v)))
VM_LOOP(float, fm_vsigmoid_f32, (v >= 0 ? 1.0f : VM(exp_f32)(v < 0 ? v : -v)) /
                                    (1.0f + VM(exp_f32)(v < 0 ? v : -v)))
