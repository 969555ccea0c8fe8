/* Template: included by engine.c through instantiate.h, after engine_impl.h, whose forward
 * pass, workspace and loss it reuses.
 *
 * Curvature products over a whole data set X (n, n_0), in blocks of at most batch_cap rows:
 *   fm_hvp:  Hv (P) = H v, the Hessian of the objective of fm_loss_grad (mean loss over all
 *            n rows, weighted by targets.weights when given, + penalties) times v (P);
 *   fm_gnvp: Gv (P) = J^T H_L J v, the Gauss-Newton(-Bartlett) matrix (Schraudolph 2002),
 *            H_L the Hessian of the loss with respect to the logits, plus the penalties'
 *            Hessian;
 *   fm_jvp:  JV (n, K) = J_theta v + J_x vx, forward mode through the logits.
 * Pearlmutter's R-operator: the forward pass carries R{q} = d/dr q(theta + r v) next to
 * each activation q (R-forward), the loss turns R{logits} into R{delta} = H_L R{logits},
 * and the backward pass is differentiated along v too (R-backward); its R-gradient is H v.
 * The Gauss-Newton product is the same computation with the gradient part (delta) zero.
 * Penalties: l2 adds l2 v (on the penalized parameters), l1 nothing (zero second
 * derivative), activity_l2 adds its Hessian activity_l2/n J_a^T J_a v, activity_l1 nothing.
 * Inference mode only, without batch norm (the Python layer computes those cases with
 * fastmlp.reference.curvature): dropout is the identity, or the (1-p) scaling of classic
 * dropout. The block products are summed in block order; each block's kernels give results
 * that do not depend on the thread count, so neither do the sums. */

#ifndef FM_CURVATURE_COMMON
#define FM_CURVATURE_COMMON
/* Byte offsets of the curvature regions that follow the engine workspace, for blocks of
 * `batch` rows:
 *   rz, ra, rout (batch, n_{l+1}) per hidden layer: R{pre-activation}, R{activation} and
 *       R{what the layer feeds forward}
 *   rin (batch, n_0): R{input of layer 0} (fm_jvp's input direction)
 *   rlogits (batch, n_L); rdelta[0..1] (batch, widest): ping-pong R{delta};
 *   tmp (batch, widest): a second product before it is added; zero (widest): zero bias
 *   gw (max over layers of n_l n_{l+1} + n_{l+1}): one layer's block gradient */
typedef struct {
    size_t rz[FM_MAX_LAYERS], ra[FM_MAX_LAYERS], rout[FM_MAX_LAYERS];
    size_t rin, rlogits, rdelta[2], tmp, zero, gw;
    size_t total;
} fm_curv_offsets;

static int curv_widest(const fm_net *net) {
    int widest = 0;
    for (int l = 0; l <= net->n_layers; l++)
        if (net->sizes[l] > widest) widest = net->sizes[l];
    return widest;
}

/* The regions after the engine's workspace; base: the aligned workspace when carving it
 * (red zones in ASan builds, engine.c's take()), NULL when only sizing it. */
static void curv_offsets(const fm_net *net, int batch, size_t rs, fm_curv_offsets *o,
                         char *base) {
    fm_ws_offsets e;
    ws_offsets(net, batch, rs, &e, base);
    size_t off = e.total, gw = 0;
    const int widest = curv_widest(net);
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = (size_t)net->sizes[l] * net->sizes[l + 1] + net->sizes[l + 1];
        if (w > gw) gw = w;
    }
#define TAKE(field, count) (o->field = off, off = take(base, off, (size_t)(count) * rs))
    for (int l = 0; l < net->n_layers - 1; l++) {
        TAKE(rz[l], (size_t)batch * net->sizes[l + 1]);
        TAKE(ra[l], (size_t)batch * net->sizes[l + 1]);
        TAKE(rout[l], (size_t)batch * net->sizes[l + 1]);
    }
    TAKE(rin, (size_t)batch * net->sizes[0]);
    TAKE(rlogits, (size_t)batch * net->sizes[net->n_layers]);
    TAKE(rdelta[0], (size_t)batch * widest);
    TAKE(rdelta[1], (size_t)batch * widest);
    TAKE(tmp, (size_t)batch * widest);
    TAKE(zero, widest);
    TAKE(gw, gw);
#undef TAKE
    o->total = off;
}

size_t fm_curvature_workspace_bytes(const fm_net *net, int batch, size_t real_size) {
    fm_curv_offsets o;
    curv_offsets(net, batch, real_size, &o, NULL);
    return o.total + FM_ALIGN;
}

/* The engine computes curvature products for this net (else FM_ERR_UNSUPPORTED). */
static int curv_supported(const fm_net *net) {
    for (int l = 0; l < net->n_layers - 1; l++)
        if (net->bn[l]) return 0;
    return 1;
}
#endif

typedef struct {
    real *rz[FM_MAX_LAYERS], *ra[FM_MAX_LAYERS], *rout[FM_MAX_LAYERS];
    real *rin, *rlogits, *rdelta[2], *tmp, *zero, *gw;
} FN(fm_curv_ws);

static void FN(curv_carve)(FN(fm_curv_ws) * cw, const fm_net *net, void *work, int batch) {
    fm_curv_offsets o;
    char *base = ws_base(work);
    curv_offsets(net, batch, sizeof(real), &o, base);
#define AT(off) ((real *)(base + (off)))
    for (int l = 0; l < net->n_layers - 1; l++) {
        cw->rz[l] = AT(o.rz[l]);
        cw->ra[l] = AT(o.ra[l]);
        cw->rout[l] = AT(o.rout[l]);
    }
    cw->rin = AT(o.rin);
    cw->rlogits = AT(o.rlogits);
    cw->rdelta[0] = AT(o.rdelta[0]);
    cw->rdelta[1] = AT(o.rdelta[1]);
    cw->tmp = AT(o.tmp);
    cw->zero = AT(o.zero);
    cw->gw = AT(o.gw);
#undef AT
}

/* y (n) += x (n) */
static void FN(add)(real *y, const real *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* Multiplier of the input of dense layer l in inference: classic dropout's 1-p, else 1. */
static double FN(keep_scale)(const fm_net *net, int l) {
    return net->dropout[l] > 0 && net->dropout_classic ? 1 - net->dropout[l] : 1;
}

/* Y (B, O) = X (B, I) @ W (I, O) + b (O), plus RX (B, I) @ RW (I, O) when RX is not NULL;
 * tmp (B, O) scratch. */
static void FN(rop_dense)(real *Y, const real *X, const real *W, const real *b, const real *RX,
                          const real *RW, int B, int I, int O, FN(fm_ws) * ws, real *tmp,
                          const real *zero, int nt) {
    FN(fm_dense_forward)(Y, X, W, b, B, I, O, FM_IDENTITY, 0, nt, ws->pack, NULL);
    if (!RX) return;
    FN(fm_dense_forward)(tmp, RX, RW, zero, B, I, O, FM_IDENTITY, 0, nt, ws->pack, NULL);
    FN(add)(Y, tmp, (size_t)B * O);
}

/* R-forward after forward(): R{logits} (B, n_L) into rlogits along the parameter direction
 * v (P) and the input direction rin (B, n_0, already scaled like the input; NULL: zero). */
static void FN(r_forward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, FN(fm_curv_ws) * cw,
                          const real *v, const real *rin, real *rlogits, int B) {
    const fm_net *net = ps->net;
    const int L = net->n_layers, nt = fm_usable_threads(net->n_threads);
    const real *in = ws->in0;
    for (int l = 0; l < L; l++) {
        const int I = net->sizes[l], O = net->sizes[l + 1];
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        real *rz = l < L - 1 ? cw->rz[l] : rlogits;
        /* R{z} = x V + v_b + R{x} W */
        FN(rop_dense)(rz, in, v + w, v + b, rin, ps->params + w, B, I, O, ws, cw->tmp, cw->zero,
                      nt);
        if (l == L - 1) return;
        const size_t count = (size_t)B * O;
        memcpy(cw->ra[l], rz, count * sizeof(real));
        FN(fm_act_backward)(cw->ra[l], ws->a[l], count, net->act[l], net->leaky_slope);
        const double keep = FN(keep_scale)(net, l + 1);
        memcpy(cw->rout[l], cw->ra[l], count * sizeof(real));
        if (keep != 1) FN(fm_scale)(cw->rout[l], count, keep);
        in = ws->out[l];
        rin = cw->rout[l];
    }
}

/* rd (B, K) = H_L RZ row by row: the Hessian of the objective's data loss with respect to
 * the logits Z (B, K) times RZ (B, K); row i of the block weighs coef[i]-fold: 1/n, or its
 * weight / the sum of all n weights. Zero for the piecewise linear hinge losses; the Python
 * boundary refuses symmetric_kl and bhattacharyya, which have no product here. */
static void FN(loss_hessian_product)(real *rd, const real *Z, const real *RZ, fm_targets t,
                                     int B, int K, int loss, double n, double weight_total) {
    const real *dense = (const real *)t.dense, *weights = (const real *)t.weights;
    for (int i = 0; i < B; i++) {
        const double c = weights ? (weight_total > 0 ? weights[i] / weight_total : 0) : 1 / n;
        const real *z = Z + (size_t)i * K, *u = RZ + (size_t)i * K;
        real *r = rd + (size_t)i * K;
        if (loss == FM_CROSS_ENTROPY || loss == FM_KL_DIV) { /* tsum (diag(p) - p p^T) u */
            double m = z[0], s = 0, pu = 0, tsum = 1;
            for (int k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
            for (int k = 0; k < K; k++) s += exp((double)z[k] - m);
            for (int k = 0; k < K; k++) pu += exp((double)z[k] - m) / s * u[k];
            if (dense) {
                tsum = 0;
                for (int k = 0; k < K; k++) tsum += dense[(size_t)i * K + k];
                tsum = (1 - t.label_smoothing) * tsum + t.label_smoothing;
            }
            for (int k = 0; k < K; k++)
                r[k] = (real)(c * tsum * exp((double)z[k] - m) / s * ((double)u[k] - pu));
        } else if (loss == FM_BINARY_CROSS_ENTROPY) { /* s (1 - s) u / K */
            for (int k = 0; k < K; k++) {
                const double sg = 1 / (1 + exp(-(double)z[k]));
                r[k] = (real)(c * sg * (1 - sg) * u[k] / K);
            }
        } else if (loss == FM_MSE) {
            for (int k = 0; k < K; k++) r[k] = (real)(c * 2 * u[k] / K);
        } else if (loss == FM_POISSON) { /* exp(z) u / K */
            for (int k = 0; k < K; k++) r[k] = (real)(c * exp((double)z[k]) * u[k] / K);
        } else {
            for (int k = 0; k < K; k++) r[k] = 0;
        }
    }
}

/* Through hidden layer l's activation, from R{d} and d (B, O) at its output a (d NULL: the
 * Gauss-Newton product): R{d} <- R{d} f'(z) + d f''(z) R{z};  d <- d f'(z). */
static void FN(r_activation)(real *rd, real *d, const real *a, const real *rz, size_t n, int act,
                             double slope) {
    if (d && (act == FM_SIGMOID || act == FM_TANH))
        for (size_t i = 0; i < n; i++) { /* f'' from a: sigmoid f'(1-2a), tanh -2a f' */
            const double fp = act == FM_SIGMOID ? a[i] * (1 - (double)a[i]) : 1 - (double)a[i] * a[i];
            const double f2 = act == FM_SIGMOID ? fp * (1 - 2 * (double)a[i]) : -2 * a[i] * fp;
            rd[i] = (real)(rd[i] * fp + d[i] * f2 * rz[i]);
        }
    else
        FN(fm_act_backward)(rd, a, n, act, slope);
    if (d) FN(fm_act_backward)(d, a, n, act, slope);
}

/* R-backward of one block after forward() and r_forward(): adds the block's R-gradient to
 * out (P). d = ws->delta[0] (B, n_L) holds the block's delta, or gauss_newton: it is zero and
 * not used; rdelta[0] holds R{delta}. n: rows of the whole data set (activity penalties). */
static void FN(r_backward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, FN(fm_curv_ws) * cw,
                           const real *v, int gauss_newton, real *out, int B, int64_t n) {
    const fm_net *net = ps->net;
    const int nt = fm_usable_threads(net->n_threads);
    int cur = 0;
    for (int l = net->n_layers - 1; l >= 0; l--) {
        const int I = net->sizes[l], O = net->sizes[l + 1];
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        const real *x = l > 0 ? ws->out[l - 1] : ws->in0, *rx = l > 0 ? cw->rout[l - 1] : NULL;
        real *d = gauss_newton ? NULL : ws->delta[cur], *rd = cw->rdelta[cur];
        real *gw = cw->gw, *gb = cw->gw + (size_t)I * O;
        /* R{gW} = x^T R{d} + R{x}^T d;  R{gb} = sum R{d} */
        FN(fm_dense_backward_params)(gw, gb, x, rd, B, I, O, nt, ws->pack, ws->xt, 0);
        FN(add)(out + w, gw, (size_t)I * O);
        FN(add)(out + b, gb, (size_t)O);
        if (d && rx) {
            FN(fm_dense_backward_params)(gw, gb, rx, d, B, I, O, nt, ws->pack, ws->xt, 0);
            FN(add)(out + w, gw, (size_t)I * O);
        }
        if (l == 0) return;
        const int nxt = 1 - cur, k = l - 1;
        const size_t count = (size_t)B * I;
        const real *W = ps->params + w;
        real *dn = ws->delta[nxt], *rdn = cw->rdelta[nxt];
        /* R{d W^T} = R{d} W^T + d V^T;  d W^T */
        FN(fm_dense_backward_input)(rdn, rd, W, NULL, B, I, O, FM_IDENTITY, 0, nt, ws->pack, 0);
        if (d) {
            FN(fm_dense_backward_input)(cw->tmp, d, v + w, NULL, B, I, O, FM_IDENTITY, 0, nt,
                                        ws->pack, 0);
            FN(add)(rdn, cw->tmp, count);
            FN(fm_dense_backward_input)(dn, d, W, NULL, B, I, O, FM_IDENTITY, 0, nt, ws->pack, 0);
        }
        const double keep = FN(keep_scale)(net, l);
        if (keep != 1) {
            FN(fm_scale)(rdn, count, keep);
            if (d) FN(fm_scale)(dn, count, keep);
        }
        if (ps->pen && (ps->pen->act_l1 > 0 || ps->pen->act_l2 > 0)) {
            const real c1 = (real)(ps->pen->act_l1 / n), c2 = (real)(ps->pen->act_l2 / n);
            const real *a = ws->a[k], *ra = cw->ra[k];
            for (size_t i = 0; i < count; i++) {
                rdn[i] += c2 * ra[i];
                if (d) dn[i] += c1 * (real)((a[i] > 0) - (a[i] < 0)) + c2 * a[i];
            }
        }
        FN(r_activation)(rdn, d ? dn : NULL, ws->a[k], cw->rz[k], count, net->act[k],
                         net->leaky_slope);
        cur = nxt;
    }
}

/* Sum of the n weights (0 when unweighted). */
static double FN(weight_total)(fm_targets t, int64_t n) {
    double s = 0;
    if (t.weights)
        for (int64_t i = 0; i < n; i++) s += ((const real *)t.weights)[i];
    return s;
}

static fm_targets FN(block_targets)(fm_targets t, int64_t r0, int K) {
    fm_targets s = FN(targets_from)(t, r0, K);
    if (t.weights) s.weights = (const real *)t.weights + r0;
    return s;
}

/* The shared body of fm_hvp and fm_gnvp. */
static int FN(curvature_product)(real *out, const fm_net *net, const fm_buffers *buf,
                                 const real *v, const real *X, fm_targets targets, int64_t n,
                                 const fm_penalty *pen, int gauss_newton) {
    if (!net_ok(net) || buf->batch_cap < 1 || n < 1) return FM_ERR_BAD_ARGUMENT;
    if (!curv_supported(net)) return FM_ERR_UNSUPPORTED;
    FN(fm_ws) ws;
    FN(fm_curv_ws) cw;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    FN(curv_carve)(&cw, net, buf->work, buf->batch_cap);
    const FN(fm_pass) ps = {net, (const real *)buf->params, (const real *)buf->running, 0, 0, 0,
                            pen, NULL, 0};
    const int L = net->n_layers, I = net->sizes[0], K = net->sizes[L];
    const size_t P = fm_param_count(net);
    const double total = FN(weight_total)(targets, n);
    memset(out, 0, P * sizeof(real));
    memset(cw.zero, 0, sizeof(real) * (size_t)curv_widest(net));
    for (int64_t r0 = 0; r0 < n; r0 += buf->batch_cap) {
        const int B = (int)(n - r0 < buf->batch_cap ? n - r0 : buf->batch_cap);
        const fm_targets t = FN(block_targets)(targets, r0, K);
        FN(forward)(&ps, &ws, X + (size_t)r0 * I, B);
        FN(r_forward)(&ps, &ws, &cw, v, NULL, cw.rlogits, B);
        if (!gauss_newton) { /* the block's delta as a share of the whole objective */
            FN(fm_loss)(ws.delta[0], ws.loss, ws.correct, ws.logits, t, NULL, B, K, net->loss);
            double share = (double)B / n;
            if (t.weights) share = total > 0 ? FN(weight_total)(t, B) / total : 0;
            FN(fm_scale)(ws.delta[0], (size_t)B * K, share);
        }
        FN(loss_hessian_product)(cw.rdelta[0], ws.logits, cw.rlogits, t, B, K, net->loss,
                                 (double)n, total);
        FN(r_backward)(&ps, &ws, &cw, v, gauss_newton, out, B, n);
    }
    if (pen->l2 > 0) { /* + l2 v on the penalized parameters */
        fm_penalty l2_only = *pen;
        l2_only.l1 = 0;
        FN(fm_penalty)(out, v, net, &l2_only);
    }
    return FM_OK;
}

int FN(fm_hvp)(real *Hv, const fm_net *net, const fm_buffers *buf, const real *v, const real *X,
               fm_targets targets, int64_t n, const fm_penalty *pen) {
    return FN(curvature_product)(Hv, net, buf, v, X, targets, n, pen, 0);
}

int FN(fm_gnvp)(real *Gv, const fm_net *net, const fm_buffers *buf, const real *v, const real *X,
                fm_targets targets, int64_t n, const fm_penalty *pen) {
    return FN(curvature_product)(Gv, net, buf, v, X, targets, n, pen, 1);
}

int FN(fm_jvp)(real *JV, const fm_net *net, const fm_buffers *buf, const real *v,
               const real *vx, const real *X, int64_t n) {
    if (!net_ok(net) || buf->batch_cap < 1) return FM_ERR_BAD_ARGUMENT;
    if (!curv_supported(net)) return FM_ERR_UNSUPPORTED;
    FN(fm_ws) ws;
    FN(fm_curv_ws) cw;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    FN(curv_carve)(&cw, net, buf->work, buf->batch_cap);
    const FN(fm_pass) ps = FN(inference)(net, buf);
    const int I = net->sizes[0], K = net->sizes[net->n_layers];
    const double keep = FN(keep_scale)(net, 0);
    memset(cw.zero, 0, sizeof(real) * (size_t)curv_widest(net));
    for (int64_t r0 = 0; r0 < n; r0 += buf->batch_cap) {
        const int B = (int)(n - r0 < buf->batch_cap ? n - r0 : buf->batch_cap);
        FN(forward)(&ps, &ws, X + (size_t)r0 * I, B);
        const real *rin = NULL;
        if (vx) {
            memcpy(cw.rin, vx + (size_t)r0 * I, (size_t)B * I * sizeof(real));
            if (keep != 1) FN(fm_scale)(cw.rin, (size_t)B * I, keep);
            rin = cw.rin;
        }
        FN(r_forward)(&ps, &ws, &cw, v, rin, JV + (size_t)r0 * K, B);
    }
    return FM_OK;
}
