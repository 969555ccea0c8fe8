/* Template: included by activations.c through instantiate.h. */

#undef EXP
#undef TANH
#ifdef FM_REAL_IS_FLOAT
#define EXP expf
#define TANH tanhf
#else
#define EXP exp
#define TANH tanh
#endif

/* Logistic function without overflow for large |z|. */
static inline real FN(sigmoid)(real z) {
    if (z >= 0) return (real)1 / ((real)1 + EXP(-z));
    real e = EXP(z);
    return e / ((real)1 + e);
}

/* x (n) <- act(x) */
void FN(fm_act_forward)(real *x, size_t n, int act, double slope) {
    const real s = (real)slope;
    switch (act) {
    case FM_SIGMOID:
        for (size_t i = 0; i < n; i++) x[i] = FN(sigmoid)(x[i]);
        break;
    case FM_TANH:
        for (size_t i = 0; i < n; i++) x[i] = TANH(x[i]);
        break;
    case FM_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : (real)0;
        break;
    case FM_LEAKY_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : s * x[i];
        break;
    default: /* FM_IDENTITY */
        break;
    }
}

/* d (n) <- d * act'(z), where a (n) = act(z).
 * relu: a > 0 exactly when z > 0; leaky_relu with slope >= 0 likewise. */
void FN(fm_act_backward)(real *d, const real *a, size_t n, int act, double slope) {
    const real s = (real)slope;
    switch (act) {
    case FM_SIGMOID:
        for (size_t i = 0; i < n; i++) d[i] *= a[i] * ((real)1 - a[i]);
        break;
    case FM_TANH:
        for (size_t i = 0; i < n; i++) d[i] *= (real)1 - a[i] * a[i];
        break;
    case FM_RELU:
        for (size_t i = 0; i < n; i++) d[i] = a[i] > 0 ? d[i] : (real)0;
        break;
    case FM_LEAKY_RELU:
        for (size_t i = 0; i < n; i++) d[i] = a[i] > 0 ? d[i] : s * d[i];
        break;
    default: /* FM_IDENTITY */
        break;
    }
}
