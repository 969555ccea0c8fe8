/* Template: included by activations.c through instantiate.h. */

#undef TANH
#undef SIGMOID
#ifdef FM_REAL_IS_FLOAT
#define TANH tanhf
#define SIGMOID sigmoid_f32
#else
#define TANH tanh
#define SIGMOID sigmoid_f64
#endif

/* Elementwise loops (element i reads only element i of each array; d and a never overlap
 * in part) marked for the vectorizer (-fopenmp-simd, CMakeLists.txt): where n is a
 * constant (FM_TILE_ROWS below: a tile's row of 16 doubles) gcc 12 otherwise unrolled
 * the loop completely into scalar code before vectorizing it, and the float64 epilogues
 * took 7 % of a batch-128 epoch on an Intel Xeon instead of 0.7 %. */
#ifndef FM_ELEMENTWISE
#define FM_ELEMENTWISE _Pragma("omp simd")
#endif

/* x (n) <- act(x): the body of fm_act_forward and fm_act_forward_rows */
static inline __attribute__((always_inline)) void FN(act_forward_run)(real *x, size_t n, int act,
                                                                      real s) {
    switch (act) {
    case FM_SIGMOID:
        fm_vmath()->SIGMOID(x, x, n);
        break;
    case FM_TANH:
        for (size_t i = 0; i < n; i++) x[i] = TANH(x[i]);
        break;
    case FM_RELU:
        FM_ELEMENTWISE for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : (real)0;
        break;
    case FM_LEAKY_RELU:
        FM_ELEMENTWISE for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : s * x[i];
        break;
    default: /* FM_IDENTITY */
        break;
    }
}

FM_ISA_CLONES
void FN(fm_act_forward)(real *x, size_t n, int act, double slope) {
    FN(act_forward_run)(x, n, act, (real)slope);
}

/* Each of `rows` rows of n elements, ld apart: one call for a register tile's rows in the
 * products' epilogue (a call per row of 32 floats took 1.7 % of a one-thread predict of
 * 784-512-256-10). A tile's row is 128 bytes (the AVX-512 tiles) or 64 (the AVX2 ones):
 * with n a constant those loops compile to a few vectors a row, without the loop's
 * run-time prologue and tail (FM_TILE_ROWS). */
#undef FM_TILE_ROWS
#define FM_TILE_ROWS(CALL)                                                                     \
    do {                                                                                       \
        if (n * sizeof(real) == 128) {                                                         \
            const size_t n_ = 128 / sizeof(real);                                              \
            for (int r = 0; r < rows; r++) CALL(n_);                                           \
        } else if (n * sizeof(real) == 64) {                                                   \
            const size_t n_ = 64 / sizeof(real);                                               \
            for (int r = 0; r < rows; r++) CALL(n_);                                           \
        } else {                                                                               \
            for (int r = 0; r < rows; r++) CALL(n);                                            \
        }                                                                                      \
    } while (0)

FM_ISA_CLONES
void FN(fm_act_forward_rows)(real *x, size_t ld, int rows, size_t n, int act, double slope) {
#define FORWARD_ROW(N) FN(act_forward_run)(x + (size_t)r * ld, N, act, (real)slope)
    FM_TILE_ROWS(FORWARD_ROW);
#undef FORWARD_ROW
}

/* d (n) <- d * act'(z), where a (n) = act(z): the body of fm_act_backward(_rows).
 * relu: a > 0 exactly when z > 0; leaky_relu with slope >= 0 likewise. */
static inline __attribute__((always_inline)) void FN(act_backward_run)(real *d, const real *a,
                                                                       size_t n, int act,
                                                                       real s) {
    switch (act) {
    case FM_SIGMOID:
        FM_ELEMENTWISE for (size_t i = 0; i < n; i++) d[i] *= a[i] * ((real)1 - a[i]);
        break;
    case FM_TANH:
        FM_ELEMENTWISE for (size_t i = 0; i < n; i++) d[i] *= (real)1 - a[i] * a[i];
        break;
    case FM_RELU:
        FM_ELEMENTWISE for (size_t i = 0; i < n; i++) d[i] = a[i] > 0 ? d[i] : (real)0;
        break;
    case FM_LEAKY_RELU:
        FM_ELEMENTWISE for (size_t i = 0; i < n; i++) d[i] = a[i] > 0 ? d[i] : s * d[i];
        break;
    default: /* FM_IDENTITY */
        break;
    }
}

FM_ISA_CLONES
void FN(fm_act_backward)(real *d, const real *a, size_t n, int act, double slope) {
    FN(act_backward_run)(d, a, n, act, (real)slope);
}

/* Each of `rows` rows: d's ldd apart, a's lda apart (as fm_act_forward_rows) */
FM_ISA_CLONES
void FN(fm_act_backward_rows)(real *d, size_t ldd, const real *a, size_t lda, int rows, size_t n,
                              int act, double slope) {
#define BACKWARD_ROW(N) \
    FN(act_backward_run)(d + (size_t)r * ldd, a + (size_t)r * lda, N, act, (real)slope)
    FM_TILE_ROWS(BACKWARD_ROW);
#undef BACKWARD_ROW
}
