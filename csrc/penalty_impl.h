/* Template: included by penalty.c through instantiate.h. */

#ifndef FM_PENALTY_LANES
#define FM_PENALTY_LANES 8 /* partial sums of the penalty's value, in fixed lanes */
#endif

/* sum of p[i]^2 (l1 = 0) or of l2/2 p[i]^2 + l1 |p[i]| over [lo, hi), in double: lane t
 * sums the elements i = lo + t (mod FM_PENALTY_LANES), then the lanes are added in order
 * (vectorizes; one chain of dependent additions was most of a small fit's penalty pass). */
FM_ISA_CLONES
static double FN(penalty_value)(const real *p, size_t lo, size_t hi, double l2, double l1) {
    double sq[FM_PENALTY_LANES] = {0}, ab[FM_PENALTY_LANES] = {0};
    const size_t n = hi - lo, full = n - n % FM_PENALTY_LANES;
    p += lo;
    if (l1 == 0) {
        for (size_t i = 0; i < full; i += FM_PENALTY_LANES)
            for (int t = 0; t < FM_PENALTY_LANES; t++) sq[t] += (double)p[i + t] * p[i + t];
    } else {
        for (size_t i = 0; i < full; i += FM_PENALTY_LANES)
            for (int t = 0; t < FM_PENALTY_LANES; t++) {
                sq[t] += (double)p[i + t] * p[i + t];
                ab[t] += fabs((double)p[i + t]);
            }
    }
    for (size_t i = full; i < n; i++) {
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

/* Penalty over p[lo, hi): value, and gradient into g (if not NULL); compiled per ISA
 * (the gradient loop ran in baseline SSE2; no contraction, so the same bits). */
FM_ISA_CLONES
static double FN(penalize_range)(real *g, const real *p, size_t lo, size_t hi,
                                 const fm_penalty *pen) {
    const real l2 = (real)pen->l2, l1 = pen->l1_proximal ? 0 : (real)pen->l1;
    if (g && l1 == 0)
        for (size_t i = lo; i < hi; i++) g[i] += l2 * p[i];
    else if (g)
        for (size_t i = lo; i < hi; i++) g[i] += l2 * p[i] + l1 * (real)((p[i] > 0) - (p[i] < 0));
    return FN(penalty_value)(p, lo, hi, pen->l2, pen->l1);
}

double FN(fm_penalty)(real *grads, const real *params, const fm_net *net,
                      const fm_penalty *pen) {
    if (pen->l2 == 0 && pen->l1 == 0) return 0;
    double total = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        if (!net->tie[l]) /* a tied layer's weights are its source's, penalized there */
            total += FN(penalize_range)(grads, params, w, b, pen);
        if (pen->biases) {
            const size_t end = l + 1 < net->n_layers ? fm_weight_offset(net, l + 1)
                                                     : fm_param_count(net);
            total += FN(penalize_range)(grads, params, b, end, pen);
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
