/* Template: included by penalty.c through instantiate.h. */

#ifndef FM_PENALTY_LANES
#define FM_PENALTY_LANES 8 /* partial sums of the penalty's value, in fixed lanes */
#define FM_PENALTY_GROUP 64 /* panels whose lanes penalize_panels keeps at once */
#endif

/* Penalty terms of p (n) in one pass, accumulated into the lanes sq and ab: lane t sums
 * p[i]^2 (sq) and |p[i]| (ab) of the elements i = t (mod FM_PENALTY_LANES) in order (the
 * last n mod FM_PENALTY_LANES elements into lanes 0, 1, ...), in double; and adds the
 * gradient l2 p[i] (+ gl1 sign(p[i])) to g (if not NULL; gl1: the subgradient's L1
 * weight, 0 for the proximal L1 step). Lanes vectorize, where one chain of dependent
 * additions was most of a small fit's penalty pass. Each element's gradient and each lane's
 * partial sum see the same operations in the same order as in two passes (gradient, then
 * value); inlined into per-ISA clones compiled with no contraction (penalty.c). */
static inline __attribute__((always_inline)) void FN(penalize_lanes)(
    real *restrict g, const real *restrict p, size_t n, real gl2, double l1, real gl1,
    double *restrict sq, double *restrict ab) {
    const size_t full = n - n % FM_PENALTY_LANES;
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
}

/* Penalty over p[lo, hi) (and its gradient into g[lo, hi), if g is not NULL): returns
 * l2/2 sum p^2 + l1 sum |p|, the lanes added in order */
FM_ISA_CLONES
static double FN(penalize_range)(real *restrict g, const real *restrict p, size_t lo, size_t hi,
                                 double l2, double l1, real gl1) {
    double sq[FM_PENALTY_LANES] = {0}, ab[FM_PENALTY_LANES] = {0};
    FN(penalize_lanes)(g ? g + lo : NULL, p + lo, hi - lo, (real)l2, l1, gl1, sq, ab);
    double s = 0, a = 0;
    for (int t = 0; t < FM_PENALTY_LANES; t++) {
        s += sq[t];
        a += ab[t];
    }
    return 0.5 * l2 * s + l1 * a;
}

/* The penalty of a weight block W (I, O) whose width is a multiple of the panel width nr
 * (fm_layer_in_panels), in one order whether W is in panel layout (in_panels) or
 * row-major: each panel of nr columns has its own lanes, which take the panel's rows in
 * order (nr is a multiple of FM_PENALTY_LANES, so a column keeps its lane in both
 * layouts), and the panels' lanes are added panel after panel. The value then does not
 * depend on whether a training call took the layout (which depends on its length). */
FM_ISA_CLONES
static double FN(penalize_panels)(real *restrict g, const real *restrict p, int I, int O,
                                  int nr, int in_panels, double l2, double l1, real gl1) {
    const int P = O / nr;
    double s = 0, a = 0;
    for (int p0 = 0; p0 < P; p0 += FM_PENALTY_GROUP) {
        const int pg = P - p0 < FM_PENALTY_GROUP ? P - p0 : FM_PENALTY_GROUP;
        double sq[FM_PENALTY_GROUP][FM_PENALTY_LANES] = {{0}};
        double ab[FM_PENALTY_GROUP][FM_PENALTY_LANES] = {{0}};
        if (in_panels) { /* panel after panel, each contiguous */
            for (int q = 0; q < pg; q++) {
                const size_t off = (size_t)(p0 + q) * I * nr;
                FN(penalize_lanes)(g ? g + off : NULL, p + off, (size_t)I * nr, (real)l2, l1,
                                   gl1, sq[q], ab[q]);
            }
        } else { /* row after row, each row's runs of nr into their panels' lanes */
            for (int k = 0; k < I; k++)
                for (int q = 0; q < pg; q++) {
                    const size_t off = (size_t)k * O + (size_t)(p0 + q) * nr;
                    FN(penalize_lanes)(g ? g + off : NULL, p + off, (size_t)nr, (real)l2, l1,
                                       gl1, sq[q], ab[q]);
                }
        }
        for (int q = 0; q < pg; q++)
            for (int t = 0; t < FM_PENALTY_LANES; t++) {
                s += sq[q][t];
                a += ab[q][t];
            }
    }
    return 0.5 * l2 * s + l1 * a;
}

double FN(fm_penalty)(real *grads, const real *params, const fm_net *net,
                      const fm_penalty *pen, int layout) {
    if (pen->l2 == 0 && pen->l1 == 0) return 0;
    const real gl1 = pen->l1_proximal ? 0 : (real)pen->l1;
    const int nr = fm_panel_width_of(sizeof(real));
    double total = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        if (net->tie[l]) {
            /* a tied layer's weights are its source's, penalized there */
        } else if (fm_layer_in_panels(net, l, sizeof(real))) {
            total += FN(penalize_panels)(grads ? grads + w : NULL, params + w, net->sizes[l],
                                         net->sizes[l + 1], nr, layout, pen->l2, pen->l1, gl1);
        } else {
            total += FN(penalize_range)(grads, params, w, b, pen->l2, pen->l1, gl1);
        }
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
