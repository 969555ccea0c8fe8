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
 * Dropout is the identity or classic dropout's (1-p) scaling in inference mode, the masks of
 * training step rng in training mode. Batch norm is the affine map of its running statistics
 * in inference mode; in training mode its batch statistics depend on the parameters, and
 * the R-operator goes through them (R{mean}, R{var}: r_bn_forward, r_bn_backward). Training
 * mode takes all n rows in one block (the batch statistics and the masks span them); in
 * inference mode the block products are summed in block order. Each block's kernels give
 * results that do not depend on the thread count (the batch-norm ones run on one thread),
 * so neither do the sums. */

#ifndef FM_CURVATURE_COMMON
#define FM_CURVATURE_COMMON
/* Byte offsets of the curvature regions that follow the engine workspace, for blocks of
 * `batch` rows:
 *   rz, ra, rout (batch, n_{l+1}) per hidden layer: R{pre-activation} (after batch norm
 *       before the activation), R{activation} and R{what the layer feeds forward};
 *       with batch norm, rxhat (batch, n_{l+1}) and rsig (n_{l+1}): R{xhat} and R{sigma}
 *   rin (batch, n_0): R{input of layer 0} (fm_jvp's input direction)
 *   rlogits (batch, n_L); rdelta[0..1] (batch, widest): ping-pong R{delta};
 *   tmp (batch, widest): a second product before it is added; zero (widest): zero bias
 *   gw (max over layers of n_l n_{l+1} + n_{l+1}): one layer's block gradient
 *   stats (FM_CURV_STATS widest doubles): batch norm's per-feature sums */
#define FM_CURV_STATS 6
typedef struct {
    size_t rz[FM_MAX_LAYERS], ra[FM_MAX_LAYERS], rout[FM_MAX_LAYERS];
    size_t rxhat[FM_MAX_LAYERS], rsig[FM_MAX_LAYERS];
    size_t rin, rlogits, rdelta[2], tmp, zero, gw, stats;
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
        const size_t n = (size_t)net->sizes[l + 1], bn = net->bn[l] != 0;
        TAKE(rz[l], (size_t)batch * n);
        TAKE(ra[l], (size_t)batch * n);
        TAKE(rout[l], (size_t)batch * n);
        TAKE(rxhat[l], bn * batch * n);
        TAKE(rsig[l], bn * n);
    }
    TAKE(rin, (size_t)batch * net->sizes[0]);
    TAKE(rlogits, (size_t)batch * net->sizes[net->n_layers]);
    TAKE(rdelta[0], (size_t)batch * widest);
    TAKE(rdelta[1], (size_t)batch * widest);
    TAKE(tmp, (size_t)batch * widest);
    TAKE(zero, widest);
    TAKE(gw, gw);
#undef TAKE
    o->stats = off;
    off = take(base, off, (size_t)FM_CURV_STATS * widest * sizeof(double));
    o->total = off;
}

size_t fm_curvature_workspace_bytes(const fm_net *net, int batch, size_t real_size) {
    fm_curv_offsets o;
    curv_offsets(net, batch, real_size, &o, NULL);
    return o.total + FM_ALIGN;
}
#endif

typedef struct {
    real *rz[FM_MAX_LAYERS], *ra[FM_MAX_LAYERS], *rout[FM_MAX_LAYERS];
    real *rxhat[FM_MAX_LAYERS], *rsig[FM_MAX_LAYERS];
    real *rin, *rlogits, *rdelta[2], *tmp, *zero, *gw;
    double *stats;
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
        cw->rxhat[l] = AT(o.rxhat[l]);
        cw->rsig[l] = AT(o.rsig[l]);
    }
    cw->rin = AT(o.rin);
    cw->rlogits = AT(o.rlogits);
    cw->rdelta[0] = AT(o.rdelta[0]);
    cw->rdelta[1] = AT(o.rdelta[1]);
    cw->tmp = AT(o.tmp);
    cw->zero = AT(o.zero);
    cw->gw = AT(o.gw);
#undef AT
    cw->stats = (double *)(base + o.stats);
}

/* y (n) += x (n) */
static void FN(add)(real *y, const real *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* x (count) *= the multiplier of dense layer l's input: its dropout mask (training), classic
 * dropout's 1-p (inference), or nothing. */
static void FN(drop)(const FN(fm_pass) * ps, const FN(fm_ws) * ws, int l, real *x, size_t count) {
    const double p = ps->net->dropout[l];
    if (p > 0 && ps->training) FN(fm_mul)(x, x, l > 0 ? ws->mask[l - 1] : ws->xmask, count);
    else if (p > 0 && ps->net->dropout_classic) FN(fm_scale)(x, count, 1 - p);
}

/* The variance (n_{l+1}) hidden layer l's batch norm divides by: the batch's (training) or
 * the running one. */
static const real *FN(bn_var)(const FN(fm_pass) * ps, const FN(fm_ws) * ws, int l) {
    const fm_net *net = ps->net;
    return ps->training ? ws->var[l] : ps->running + fm_running_offset(net, l) + net->sizes[l + 1];
}

/* sig (O) = sqrt(var + eps) of hidden layer l's batch norm. */
static void FN(bn_sigma)(double *sig, const FN(fm_pass) * ps, const FN(fm_ws) * ws, int l) {
    const real *var = FN(bn_var)(ps, ws, l);
    for (int j = 0; j < ps->net->sizes[l + 1]; j++) sig[j] = sqrt((double)var[j] + ps->net->bn_eps);
}

/* Hidden layer l's batch norm y = gamma xhat + beta along v: R{y} (B, O) from R{x} (B, O)
 * at its input (ry may be rx), keeping R{xhat} and R{sigma} for r_bn_backward; xhat is
 * ws->z[l] (forward()). Training, batch statistics: R{sigma} = mean(xhat (R{x} - R{mean})),
 * R{xhat} = (R{x} - R{mean} - xhat R{sigma}) / sigma, R{mean} = mean R{x}; inference,
 * running statistics: R{sigma} = 0, R{xhat} = R{x} / sigma. Then
 * R{y} = R{gamma} xhat + gamma R{xhat} + R{beta}. */
static void FN(r_bn_forward)(const FN(fm_pass) * ps, const FN(fm_ws) * ws, FN(fm_curv_ws) * cw,
                             int l, const real *v, real *ry, const real *rx, int B) {
    const fm_net *net = ps->net;
    const int O = net->sizes[l + 1];
    const size_t g = fm_bn_offset(net, l);
    const real *gamma = ps->params + g, *rgamma = v + g, *rbeta = v + g + O, *xhat = ws->z[l];
    real *rxhat = cw->rxhat[l], *rsig = cw->rsig[l];
    double *rmean = cw->stats, *rs = rmean + O, *sig = rs + O;
    FN(bn_sigma)(sig, ps, ws, l);
    for (int j = 0; j < O; j++) rmean[j] = rs[j] = 0;
    if (ps->training) {
        for (int i = 0; i < B; i++)
            for (int j = 0; j < O; j++) rmean[j] += rx[(size_t)i * O + j];
        for (int j = 0; j < O; j++) rmean[j] /= B;
        for (int i = 0; i < B; i++)
            for (int j = 0; j < O; j++) {
                const size_t k = (size_t)i * O + j;
                rs[j] += (double)xhat[k] * ((double)rx[k] - rmean[j]);
            }
        for (int j = 0; j < O; j++) rs[j] /= B;
    }
    for (int j = 0; j < O; j++) rsig[j] = (real)rs[j];
    for (int i = 0; i < B; i++)
        for (int j = 0; j < O; j++) {
            const size_t k = (size_t)i * O + j;
            const double rxh = ((double)rx[k] - rmean[j] - (double)xhat[k] * rs[j]) / sig[j];
            rxhat[k] = (real)rxh;
            ry[k] = (real)((double)rgamma[j] * xhat[k] + (double)gamma[j] * rxh + rbeta[j]);
        }
}

/* Hidden layer l's batch norm backwards along v, in place: (d, R{d}) (B, O) at its output
 * become those at its input (d NULL: the Gauss-Newton product, R{d} only), and
 * R{dgamma} = sum(R{d} xhat + d R{xhat}), R{dbeta} = sum R{d} are added to out (P). With
 * k = gamma / sigma, R{k} = R{gamma} / sigma - gamma R{sigma} / sigma^2:
 *   training  d <- k (d - mean d - xhat mean(d xhat)),
 *             R{d} <- R{k} (...) + k (R{d} - mean R{d} - R{xhat} mean(d xhat)
 *                                     - xhat mean(R{d} xhat + d R{xhat}));
 *   inference d <- k d,  R{d} <- R{k} d + k R{d}. */
static void FN(r_bn_backward)(const FN(fm_pass) * ps, const FN(fm_ws) * ws,
                              const FN(fm_curv_ws) * cw, int l, const real *v, real *d, real *rd,
                              real *out, int B) {
    const fm_net *net = ps->net;
    const int O = net->sizes[l + 1], training = ps->training;
    const size_t g = fm_bn_offset(net, l);
    const real *gamma = ps->params + g, *rgamma = v + g, *xhat = ws->z[l];
    const real *rxhat = cw->rxhat[l], *rsig = cw->rsig[l];
    double *sd = cw->stats, *sdx = sd + O, *srd = sdx + O, *srdx = srd + O, *sig = srdx + O;
    FN(bn_sigma)(sig, ps, ws, l);
    for (int j = 0; j < O; j++) sd[j] = sdx[j] = srd[j] = srdx[j] = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < O; j++) {
            const size_t k = (size_t)i * O + j;
            const double dk = d ? d[k] : 0;
            sd[j] += dk;
            sdx[j] += dk * xhat[k];
            srd[j] += rd[k];
            srdx[j] += (double)rd[k] * xhat[k] + dk * rxhat[k];
        }
    for (int j = 0; j < O; j++) {
        out[g + j] += (real)srdx[j];
        out[g + O + j] += (real)srd[j];
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < O; j++) {
            const size_t k = (size_t)i * O + j;
            const double s = sig[j], kk = gamma[j] / s;
            const double rk = rgamma[j] / s - gamma[j] * (double)rsig[j] / (s * s);
            double inner = d ? d[k] : 0, rinner = rd[k];
            if (training) {
                inner -= (sd[j] + xhat[k] * sdx[j]) / B;
                rinner -= (srd[j] + rxhat[k] * sdx[j] + xhat[k] * srdx[j]) / B;
            }
            rd[k] = (real)(rk * inner + kk * rinner);
            if (d) d[k] = (real)(kk * inner);
        }
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
 * v (P) and the input direction rin (B, n_0, already multiplied like the input; NULL: zero). */
static void FN(r_forward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, FN(fm_curv_ws) * cw,
                          const real *v, const real *rin, real *rlogits, int B) {
    const fm_net *net = ps->net;
    const int L = net->n_layers, nt = fm_usable_threads(net->n_threads);
    const real *in = ws->in0;
    for (int l = 0; l < L; l++) {
        const int I = net->sizes[l], O = net->sizes[l + 1], bn = l < L - 1 ? net->bn[l] : 0;
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        real *rz = l < L - 1 ? cw->rz[l] : rlogits;
        /* R{z} = x V + v_b + R{x} W */
        FN(rop_dense)(rz, in, v + w, v + b, rin, ps->params + w, B, I, O, ws, cw->tmp, cw->zero,
                      nt);
        if (l == L - 1) return;
        const size_t count = (size_t)B * O;
        if (bn == FM_BN_BEFORE) FN(r_bn_forward)(ps, ws, cw, l, v, rz, rz, B);
        memcpy(cw->ra[l], rz, count * sizeof(real));
        FN(fm_act_backward)(cw->ra[l], ws->a[l], count, net->act[l], net->leaky_slope);
        if (bn == FM_BN_AFTER)
            FN(r_bn_forward)(ps, ws, cw, l, v, cw->rout[l], cw->ra[l], B);
        else
            memcpy(cw->rout[l], cw->ra[l], count * sizeof(real));
        FN(drop)(ps, ws, l + 1, cw->rout[l], count);
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
 * out (P, batch norm's gamma and beta included). d = ws->delta[0] (B, n_L) holds the block's
 * delta, or gauss_newton: it is zero and not used; rdelta[0] holds R{delta}. n: rows of the
 * whole data set (activity penalties). */
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
        FN(fm_dense_backward_params)(gw, gb, x, rd, B, I, O, nt, ws->pack, ws->xt, 0, NULL);
        FN(add)(out + w, gw, (size_t)I * O);
        FN(add)(out + b, gb, (size_t)O);
        if (d && rx) {
            FN(fm_dense_backward_params)(gw, gb, rx, d, B, I, O, nt, ws->pack, ws->xt, 0, NULL);
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
        FN(drop)(ps, ws, l, rdn, count);
        if (d) FN(drop)(ps, ws, l, dn, count);
        if (net->bn[k] == FM_BN_AFTER)
            FN(r_bn_backward)(ps, ws, cw, k, v, d ? dn : NULL, rdn, out, B);
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
        if (net->bn[k] == FM_BN_BEFORE)
            FN(r_bn_backward)(ps, ws, cw, k, v, d ? dn : NULL, rdn, out, B);
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

/* The pass of a curvature product: inference mode, or training step rng, whose n rows must
 * fit one block (NULL when they do not). */
static const FN(fm_pass) * FN(curv_pass)(FN(fm_pass) * ps, const fm_net *net,
                                         const fm_buffers *buf, int64_t n, int training,
                                         fm_random rng, const fm_penalty *pen) {
    if (!net_ok(net) || buf->batch_cap < 1 || (training && n > buf->batch_cap)) return NULL;
    const FN(fm_pass) p = {.net = net, .params = (const real *)buf->params,
                           .running = (const real *)buf->running, .training = training,
                           .key = rng.key, .counter = (uint64_t)rng.counter, .pen = pen};
    *ps = p;
    return ps;
}

/* The shared body of fm_hvp and fm_gnvp. */
static int FN(curvature_product)(real *out, const fm_net *net, const fm_buffers *buf,
                                 const real *v, const real *X, fm_targets targets, int64_t n,
                                 const fm_penalty *pen, int training, fm_random rng,
                                 int gauss_newton) {
    FN(fm_pass) pass;
    const FN(fm_pass) *ps = FN(curv_pass)(&pass, net, buf, n, training, rng, pen);
    if (!ps || n < 1) return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(fm_curv_ws) cw;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    FN(curv_carve)(&cw, net, buf->work, buf->batch_cap);
    const int L = net->n_layers, I = net->sizes[0], K = net->sizes[L];
    const size_t P = fm_param_count(net);
    const double total = FN(weight_total)(targets, n);
    memset(out, 0, P * sizeof(real));
    memset(cw.zero, 0, sizeof(real) * (size_t)curv_widest(net));
    for (int64_t r0 = 0; r0 < n; r0 += buf->batch_cap) {
        const int B = (int)(n - r0 < buf->batch_cap ? n - r0 : buf->batch_cap);
        const fm_targets t = FN(block_targets)(targets, r0, K);
        FN(forward)(ps, &ws, X + (size_t)r0 * I, B);
        FN(r_forward)(ps, &ws, &cw, v, NULL, cw.rlogits, B);
        if (!gauss_newton) { /* the block's delta as a share of the whole objective */
            FN(fm_loss)(ws.delta[0], ws.loss, ws.correct, ws.logits, t, NULL, B, K, net->loss);
            double share = (double)B / n;
            if (t.weights) share = total > 0 ? FN(weight_total)(t, B) / total : 0;
            FN(fm_scale)(ws.delta[0], (size_t)B * K, share);
        }
        FN(loss_hessian_product)(cw.rdelta[0], ws.logits, cw.rlogits, t, B, K, net->loss,
                                 (double)n, total);
        FN(r_backward)(ps, &ws, &cw, v, gauss_newton, out, B, n);
    }
    if (pen->l2 > 0) { /* + l2 v on the penalized parameters */
        fm_penalty l2_only = *pen;
        l2_only.l1 = 0;
        FN(fm_penalty)(out, v, net, &l2_only, 0);
    }
    return FM_OK;
}

int FN(fm_hvp)(real *Hv, const fm_net *net, const fm_buffers *buf, const real *v, const real *X,
               fm_targets targets, int64_t n, const fm_penalty *pen, int training,
               fm_random rng) {
    return FN(curvature_product)(Hv, net, buf, v, X, targets, n, pen, training, rng, 0);
}

int FN(fm_gnvp)(real *Gv, const fm_net *net, const fm_buffers *buf, const real *v, const real *X,
                fm_targets targets, int64_t n, const fm_penalty *pen, int training,
                fm_random rng) {
    return FN(curvature_product)(Gv, net, buf, v, X, targets, n, pen, training, rng, 1);
}

int FN(fm_jvp)(real *JV, const fm_net *net, const fm_buffers *buf, const real *v,
               const real *vx, const real *X, int64_t n, int training, fm_random rng) {
    FN(fm_pass) pass;
    const FN(fm_pass) *ps = FN(curv_pass)(&pass, net, buf, n, training, rng, NULL);
    if (!ps) return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(fm_curv_ws) cw;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    FN(curv_carve)(&cw, net, buf->work, buf->batch_cap);
    const int I = net->sizes[0], K = net->sizes[net->n_layers];
    memset(cw.zero, 0, sizeof(real) * (size_t)curv_widest(net));
    for (int64_t r0 = 0; r0 < n; r0 += buf->batch_cap) {
        const int B = (int)(n - r0 < buf->batch_cap ? n - r0 : buf->batch_cap);
        FN(forward)(ps, &ws, X + (size_t)r0 * I, B);
        const real *rin = NULL;
        if (vx) {
            memcpy(cw.rin, vx + (size_t)r0 * I, (size_t)B * I * sizeof(real));
            FN(drop)(ps, &ws, 0, cw.rin, (size_t)B * I);
            rin = cw.rin;
        }
        FN(r_forward)(ps, &ws, &cw, v, rin, JV + (size_t)r0 * K, B);
    }
    return FM_OK;
}
