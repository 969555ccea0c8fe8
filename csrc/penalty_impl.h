/* Template: included by penalty.c through instantiate.h. */

#ifndef FM_PENALTY_LANES
#define FM_PENALTY_LANES 8 /* partial sums of the penalty's value, in fixed lanes */
#endif

/* Penalty over p[lo, hi) in one pass: returns its value, the sum of l2/2 p[i]^2 + l1 |p[i]|
 * in double (lane t sums the elements i = lo + t (mod FM_PENALTY_LANES), then the lanes
 * are added in order: vectorizes, where one chain of dependent additions was most of a
 * small fit's penalty pass), and adds its gradient l2 p[i] (+ gl1 sign(p[i])) to g (if not
 * NULL; gl1: the subgradient's L1 weight, 0 for the proximal L1 step). Each element's
 * gradient and each lane's partial sum see the same operations in the same order as in
 * two passes (gradient, then value), so the bits are those of two passes; compiled per ISA
 * with no contraction (penalty.c). */
FM_ISA_CLONES
static double FN(penalize_range)(real *restrict g, const real *restrict p, size_t lo, size_t hi,
                                 double l2, double l1, real gl1) {
    double sq[FM_PENALTY_LANES] = {0}, ab[FM_PENALTY_LANES] = {0};
    const real gl2 = (real)l2;
    const size_t n = hi - lo, full = n - n % FM_PENALTY_LANES;
    p += lo;
    g = g ? g + lo : NULL;
#define FM_PENALTY_BLOCK(GRAD, ABS)                                                           \
    for (size_t i = 0; i < full; i += FM_PENALTY_LANES)                                       \
        for (int t = 0; t < FM_PENALTY_LANES; t++) {                                          \
            const real v = p[i + t];                                                          \
            GRAD;                                                                             \
            sq[t] += (double)v * v;                                                           \
            ABS;                                                                              \
        }
#define FM_PENALTY_L2 g[i + t] += gl2 * v
#define FM_PENALTY_L1 g[i + t] += gl2 * v + gl1 * (real)((v > 0) - (v < 0))
#define FM_PENALTY_ABS ab[t] += fabs((double)v)
    if (!g && l1 == 0)
        FM_PENALTY_BLOCK((void)0, (void)0)
    else if (!g)
        FM_PENALTY_BLOCK((void)0, FM_PENALTY_ABS)
    else if (l1 == 0)
        FM_PENALTY_BLOCK(FM_PENALTY_L2, (void)0)
    else if (gl1 == 0) /* proximal L1: the value's term only */
        FM_PENALTY_BLOCK(FM_PENALTY_L2, FM_PENALTY_ABS)
    else
        FM_PENALTY_BLOCK(FM_PENALTY_L1, FM_PENALTY_ABS)
#undef FM_PENALTY_BLOCK
#undef FM_PENALTY_L2
#undef FM_PENALTY_L1
#undef FM_PENALTY_ABS
    for (size_t i = full; i < n; i++) {
        if (g && gl1 == 0) g[i] += gl2 * p[i];
        else if (g) g[i] += gl2 * p[i] + gl1 * (real)((p[i] > 0) - (p[i] < 0));
        sq[i - full] += (double)p[i] * p[i];
        ab[i - full] += fabs((double)p[i]);
    }
    double s = 0, a = 0;
    for (int t = 0; t < FM_PENALTY_LANES; t++) {
        s += sq[t];
        a += ab[t];
    }
    return 0.5 * l2 * s + l1 * a;
}

double FN(fm_penalty)(real *grads, const real *params, const fm_net *net,
                      const fm_penalty *pen) {
    if (pen->l2 == 0 && pen->l1 == 0) return 0;
    const real gl1 = pen->l1_proximal ? 0 : (real)pen->l1;
    double total = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        if (!net->tie[l]) /* a tied layer's weights are its source's, penalized there */
            total += FN(penalize_range)(grads, params, w, b, pen->l2, pen->l1, gl1);
        if (pen->biases) {
            const size_t end = l + 1 < net->n_layers ? fm_weight_offset(net, l + 1)
                                                     : fm_param_count(net);
            total += FN(penalize_range)(grads, params, b, end, pen->l2, pen->l1, gl1);
        }
    }
    return total;
}

static void FN(shrink)(real *p, size_t lo, size_t hi, real t) {
    for (size_t i = lo; i < hi; i++) {
        const real a = (real)fabs((double)p[i]) - t;
        p[i] = a > 0 ? (p[i] > 0 ? a : -a) : (real)0;
    }
}

void FN(fm_prox_l1)(real *params, const fm_net *net, double t, int biases) {
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        FN(shrink)(params, w, b, (real)t);
        if (biases) {
            const size_t end = l + 1 < net->n_layers ? fm_weight_offset(net, l + 1)
                                                     : fm_param_count(net);
            FN(shrink)(params, b, end, (real)t);
        }
    }
}
