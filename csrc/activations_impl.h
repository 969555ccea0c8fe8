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

/* x (n) <- act(x) */
FM_ISA_CLONES
void FN(fm_act_forward)(real *x, size_t n, int act, double slope) {
    const real s = (real)slope;
    switch (act) {
    case FM_SIGMOID:
        fm_vmath()->SIGMOID(x, x, n);
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
FM_ISA_CLONES
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
