/* Template: included by penalty.c through instantiate.h. */

/* Penalty over p[lo, hi): value, and gradient into g (if not NULL). */
static double FN(penalize_range)(real *g, const real *p, size_t lo, size_t hi,
                                 const fm_penalty *pen) {
    const real l2 = (real)pen->l2, l1 = pen->l1_proximal ? 0 : (real)pen->l1;
    double sq = 0, ab = 0;
    for (size_t i = lo; i < hi; i++) {
        sq += (double)p[i] * p[i];
        ab += fabs((double)p[i]);
        if (g) g[i] += l2 * p[i] + l1 * (real)((p[i] > 0) - (p[i] < 0));
    }
    return 0.5 * pen->l2 * sq + pen->l1 * ab;
}

double FN(fm_penalty)(real *grads, const real *params, const fm_net *net,
                      const fm_penalty *pen) {
    if (pen->l2 == 0 && pen->l1 == 0) return 0;
    double total = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
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
