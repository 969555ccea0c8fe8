/* Template: included by engine.c through instantiate.h. */

typedef struct {
    real *x0, *xmask, *xin, *xgrad;
    real *z[FM_MAX_LAYERS], *a[FM_MAX_LAYERS], *o[FM_MAX_LAYERS], *h[FM_MAX_LAYERS];
    real *mask[FM_MAX_LAYERS], *mean[FM_MAX_LAYERS], *var[FM_MAX_LAYERS];
    const real *out[FM_MAX_LAYERS]; /* what hidden layer l feeds forward */
    const real *in0;                /* what dense layer 0 reads */
    real *logits, *delta[3], *pack, *xt;
    double *loss, *correct;
    double activity; /* activity penalty sum of the last forward (before dividing by B) */
    /* CSR input (NULL: dense): layer 0 reads batch row i from row csr_rows[i] of csr
       (csr_r0 + i when csr_rows is NULL) instead of a dense input */
    const fm_csr *csr;
    const int64_t *csr_rows;
    int64_t csr_r0;
} FN(fm_ws);

/* One forward/backward: the model and the mode. */
typedef struct {
    const fm_net *net;
    const real *params;
    const real *running;
    int training;
    uint64_t key, counter;   /* training randomness of this step */
    const fm_penalty *pen;   /* NULL: no penalties (evaluation) */
    const real *panels;      /* weights in panel layout (fm_pack_weights_*), or NULL */
    int layout;              /* 1: params holds the weights of the layers fm_layer_in_panels
                                names in panel layout (layout.c; training) */
    const fm_pruned_csr *pruned; /* predict: the layers' weights in CSR (fm_buffers.pruned),
                                    or NULL */
    int64_t row0;            /* the rows are rows row0.. of the step's batch (their draws) */
} FN(fm_pass);

/* The draws of `stream` for this pass's rows, `per_row` draws a row. */
static uint64_t FN(draw_base)(const FN(fm_pass) * ps, uint64_t stream, int per_row) {
    return fm_stream_skip(fm_stream_base(ps->key, ps->counter, stream),
                          (uint64_t)ps->row0 * (uint64_t)per_row);
}

/* 1 when dense layer l's weights (and gradient) are in panel layout in params (grads) */
static int FN(in_panels)(const FN(fm_pass) * ps, int l) {
    return ps->layout && fm_layer_in_panels(ps->net, l, sizeof(real));
}

/* Dense layer l's weight panels, if the pass has them. */
static const real *FN(layer_panels)(const FN(fm_pass) * ps, int l) {
    if (FN(in_panels)(ps, l)) return ps->params + fm_weight_offset(ps->net, l);
    return ps->panels ? ps->panels + fm_panels_offset(ps->net, l, sizeof(real)) : NULL;
}

static void FN(ws_carve)(FN(fm_ws) * ws, const fm_net *net, void *work, int batch) {
    fm_ws_offsets o;
    char *base = ws_base(work);
    ws_offsets(net, batch, sizeof(real), &o, base);
#define AT(off) ((real *)(base + (off)))
    ws->x0 = AT(o.x0);
    ws->xmask = AT(o.xmask);
    ws->xin = AT(o.xin);
    ws->xgrad = AT(o.xgrad);
    for (int l = 0; l < net->n_layers - 1; l++) {
        ws->z[l] = AT(o.z[l]);
        ws->a[l] = AT(o.a[l]);
        ws->o[l] = AT(o.o[l]);
        ws->h[l] = AT(o.h[l]);
        ws->mask[l] = AT(o.mask[l]);
        ws->mean[l] = AT(o.mean[l]);
        ws->var[l] = AT(o.var[l]);
    }
    ws->logits = AT(o.logits);
    for (int i = 0; i < 3; i++) ws->delta[i] = AT(o.delta[i]);
    ws->pack = AT(o.pack);
    ws->xt = AT(o.xt);
#undef AT
    ws->loss = (double *)(base + o.loss);
    ws->correct = (double *)(base + o.correct);
    ws->csr = NULL;
    ws->csr_rows = NULL;
    ws->csr_r0 = 0;
}

/* Y (B, n_{l+1}) = act(in (B, n_l) W_l + b_l). Layer 0 multiplies the CSR input rows of
 * ws->csr instead when they are set (sparse X; in is then NULL); a layer with CSR weights in
 * the pass (pruned, predict) uses them (ws->delta[0] and [1], unused in inference, hold the
 * transposes). */
static void FN(layer_forward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, int l, real *Y,
                              const real *in, int B, int act, double slope) {
    const fm_net *net = ps->net;
    const int I = net->sizes[l], O = net->sizes[l + 1], nt = fm_usable_threads(net->n_threads);
    const real *b = ps->params + fm_bias_offset(net, l);
    if (l == 0 && ws->csr)
        FN(fm_csr_forward)(Y, ws->csr, ws->csr_rows, ws->csr_r0,
                           ps->params + fm_weight_offset(net, 0), b, B, I, O, act, slope, nt,
                           FN(in_panels)(ps, 0) ? fm_panel_width_of(sizeof(real)) : 0);
    else if (ps->pruned && ps->pruned[l].rowptr)
        FN(fm_pruned_forward)(Y, in, &ps->pruned[l], b, B, I, O, act, slope, nt, ws->delta[0],
                           ws->delta[1]);
    else
        FN(fm_dense_forward)(Y, in, ps->params + fm_weight_offset(net, l), b, B, I, O, act,
                             slope, nt, ws->pack, FN(layer_panels)(ps, l));
}

/* Hidden layer l on `in` (B, n_l); returns what it feeds forward (B, n_{l+1}). */
static const real *FN(hidden_forward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, int l,
                                      const real *in, int B) {
    const fm_net *net = ps->net;
    const int O = net->sizes[l + 1], bn = net->bn[l];
    const size_t count = (size_t)B * O;
    const real *gamma = ps->params + fm_bn_offset(net, l), *beta = gamma + O;
    const real *rmean = bn ? ps->running + fm_running_offset(net, l) : NULL;
    const real *rvar = bn ? rmean + O : NULL;
    if (bn == FM_BN_BEFORE) {
        FN(layer_forward)(ps, ws, l, ws->z[l], in, B, FM_IDENTITY, 0);
        if (ps->training)
            FN(fm_bn_forward_train)(ws->a[l], ws->z[l], ws->mean[l], ws->var[l], ws->z[l], gamma,
                                    beta, B, O, net->bn_eps);
        else
            FN(fm_bn_forward_infer)(ws->a[l], ws->z[l], ws->z[l], gamma, beta, rmean, rvar, B, O,
                                    net->bn_eps);
        FN(fm_act_forward)(ws->a[l], count, net->act[l], net->leaky_slope);
    } else {
        FN(layer_forward)(ps, ws, l, ws->a[l], in, B, net->act[l], net->leaky_slope);
    }
    const real *out = ws->a[l];
    if (bn == FM_BN_AFTER) {
        if (ps->training)
            FN(fm_bn_forward_train)(ws->o[l], ws->z[l], ws->mean[l], ws->var[l], ws->a[l], gamma,
                                    beta, B, O, net->bn_eps);
        else
            FN(fm_bn_forward_infer)(ws->o[l], ws->z[l], ws->a[l], gamma, beta, rmean, rvar, B, O,
                                    net->bn_eps);
        out = ws->o[l];
    }
    if (ps->pen && (ps->pen->act_l1 > 0 || ps->pen->act_l2 > 0)) {
        double s1 = 0, s2 = 0;
        for (size_t i = 0; i < count; i++) {
            s1 += fabs((double)ws->a[l][i]);
            s2 += (double)ws->a[l][i] * ws->a[l][i];
        }
        ws->activity += ps->pen->act_l1 * s1 + 0.5 * ps->pen->act_l2 * s2;
    }
    const double p = net->dropout[l + 1];
    if (p > 0 && ps->training) {
        FN(fm_dropout_mask)(ws->mask[l], B, O, p, net->dropout_classic,
                            FN(draw_base)(ps, FM_STREAM_DROPOUT + l + 1, O));
        FN(fm_mul)(ws->h[l], out, ws->mask[l], count);
        out = ws->h[l];
    } else if (p > 0 && net->dropout_classic) {
        for (size_t i = 0; i < count; i++) ws->h[l][i] = out[i] * (real)(1 - p);
        out = ws->h[l];
    }
    ws->out[l] = out;
    return out;
}

/* Logits of X (B, n_0) (NULL: the CSR rows of ws->csr) into ws->logits. */
static void FN(forward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, const real *X, int B) {
    const fm_net *net = ps->net;
    const int L = net->n_layers, n0 = net->sizes[0];
    const size_t count = (size_t)B * n0;
    const double p = net->dropout[0];
    const real *in = X;
    if (p > 0 && ps->training) {
        FN(fm_dropout_mask)(ws->xmask, B, n0, p, net->dropout_classic,
                            FN(draw_base)(ps, FM_STREAM_DROPOUT, n0));
        FN(fm_mul)(ws->xin, X, ws->xmask, count);
        in = ws->xin;
    } else if (p > 0 && net->dropout_classic) {
        for (size_t i = 0; i < count; i++) ws->xin[i] = X[i] * (real)(1 - p);
        in = ws->xin;
    }
    ws->in0 = in;
    ws->activity = 0;
    for (int l = 0; l < L - 1; l++) in = FN(hidden_forward)(ps, ws, l, in, B);
    FN(layer_forward)(ps, ws, L - 1, ws->logits, in, B, FM_IDENTITY, 0);
}

/* d[idx] holds dLoss/d(output of hidden layer l); turn it into dLoss/d(its z), using
 * d[scratch] when batch norm needs a second buffer. Returns the index holding it. */
static int FN(hidden_backward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, real *grads, int l,
                               int B, int idx, int scratch) {
    const fm_net *net = ps->net;
    const int O = net->sizes[l + 1], bn = net->bn[l];
    const size_t count = (size_t)B * O;
    const real *gamma = ps->params + fm_bn_offset(net, l);
    real *dgamma = grads + fm_bn_offset(net, l), *dbeta = dgamma + O;
    const real *var = bn ? (ps->training ? ws->var[l]
                                         : ps->running + fm_running_offset(net, l) + O)
                         : NULL;
    const double p = net->dropout[l + 1];
    real *d = ws->delta[idx];
    if (p > 0 && ps->training) FN(fm_mul)(d, d, ws->mask[l], count);
    else if (p > 0 && net->dropout_classic) FN(fm_scale)(d, count, 1 - p);
    if (bn == FM_BN_AFTER) {
        FN(fm_bn_backward)(ws->delta[scratch], dgamma, dbeta, d, ws->z[l], var, gamma, B, O,
                           net->bn_eps, ps->training);
        const int t = idx;
        idx = scratch;
        scratch = t;
        d = ws->delta[idx];
    }
    if (ps->pen && (ps->pen->act_l1 > 0 || ps->pen->act_l2 > 0)) {
        const real c1 = (real)(ps->pen->act_l1 / B), c2 = (real)(ps->pen->act_l2 / B);
        const real *a = ws->a[l];
        for (size_t i = 0; i < count; i++)
            d[i] += c1 * (real)((a[i] > 0) - (a[i] < 0)) + c2 * a[i];
    }
    FN(fm_act_backward)(d, ws->a[l], count, net->act[l], net->leaky_slope);
    if (bn == FM_BN_BEFORE) {
        FN(fm_bn_backward)(ws->delta[scratch], dgamma, dbeta, d, ws->z[l], var, gamma, B, O,
                           net->bn_eps, ps->training);
        idx = scratch;
    }
    return idx;
}

static int FN(plain_hidden)(const FN(fm_pass) * ps, int l) {
    return !ps->net->bn[l] && ps->net->dropout[l + 1] == 0 &&
           !(ps->pen && (ps->pen->act_l1 > 0 || ps->pen->act_l2 > 0));
}

/* Dense layer l's weight and bias gradients (with upd: its weights updated too where the
 * product's path can; returns 1 when it did) */
static int FN(layer_params)(const FN(fm_pass) * ps, real *grads, FN(fm_ws) * ws, int l, int B,
                            int cur, const FN(fm_update) * upd) {
    const fm_net *net = ps->net;
    const int nt = fm_usable_threads(net->n_threads);
    const int I = net->sizes[l], O = net->sizes[l + 1], panels = FN(in_panels)(ps, l);
    if (l == 0 && ws->csr) {
        FN(fm_csr_backward_params)(grads + fm_weight_offset(net, 0),
                                   grads + fm_bias_offset(net, 0), ws->csr, ws->csr_rows,
                                   ws->csr_r0, ws->delta[cur], B, I, O, nt,
                                   panels ? fm_panel_width_of(sizeof(real)) : 0);
        return 0;
    }
    return FN(fm_dense_backward_params)(grads + fm_weight_offset(net, l),
                                        grads + fm_bias_offset(net, l),
                                        l > 0 ? ws->out[l - 1] : ws->in0, ws->delta[cur], B, I,
                                        O, nt, ws->pack, ws->xt, panels, upd);
}

/* Gradients from delta[0] = dLoss/dlogits (B, n_L), after forward(); input_grad (B, n_0)
 * = dLoss/dX when not NULL. With upd (a training step's update, fused into the backward
 * pass: engine step below), each layer's gradient passed down is computed first, from its
 * weights as they were, and then its weight gradient, which updates the weights tile by
 * tile where it can: fused[l] says whether it did for layer l. */
static void FN(backward)(const FN(fm_pass) * ps, real *grads, FN(fm_ws) * ws, int B,
                         real *input_grad, const FN(fm_update) * upd, int *fused) {
    const fm_net *net = ps->net;
    const int nt = fm_usable_threads(net->n_threads);
    int cur = 0;
    for (int l = net->n_layers - 1; l >= 0; l--) {
        const real *W = ps->params + fm_weight_offset(net, l);
        const int I = net->sizes[l], O = net->sizes[l + 1];
        const int panels = FN(in_panels)(ps, l), at = cur;
        if (!upd) FN(layer_params)(ps, grads, ws, l, B, at, NULL);
        if (l > 0) {
            const int nxt = cur == 0 ? 1 : 0, scratch = 3 - cur - nxt;
            if (FN(plain_hidden)(ps, l - 1)) {
                FN(fm_dense_backward_input)(ws->delta[nxt], ws->delta[cur], W, ws->a[l - 1], B, I,
                                            O, net->act[l - 1], net->leaky_slope, nt, ws->pack,
                                            panels);
                cur = nxt;
            } else {
                FN(fm_dense_backward_input)(ws->delta[nxt], ws->delta[cur], W, NULL, B, I, O,
                                            FM_IDENTITY, 0, nt, ws->pack, panels);
                cur = FN(hidden_backward)(ps, ws, grads, l - 1, B, nxt, scratch);
            }
        } else if (input_grad) {
            FN(fm_dense_backward_input)(input_grad, ws->delta[cur], W, NULL, B, I, O, FM_IDENTITY,
                                        0, nt, ws->pack, panels);
            const double p = net->dropout[0];
            if (p > 0 && ps->training) FN(fm_mul)(input_grad, input_grad, ws->xmask, (size_t)B * I);
            else if (p > 0 && net->dropout_classic) FN(fm_scale)(input_grad, (size_t)B * I, 1 - p);
        }
        /* (delta[at] outlives the pass down: that writes the other two buffers) */
        if (upd) fused[l] = FN(layer_params)(ps, grads, ws, l, B, at, upd);
    }
}

/* Sums of loss[0..B) and correct[0..B) (per-sample values, e.g. ws->loss / ws->correct),
 * in order. */
static void FN(sum_samples)(const double *sample_loss, const double *sample_correct, int B,
                            double *loss, double *correct) {
    double l = 0, c = 0;
    for (int i = 0; i < B; i++) {
        l += sample_loss[i];
        c += sample_correct[i];
    }
    *loss = l;
    *correct = c;
}

static fm_targets FN(targets_from)(fm_targets t, int64_t row, int K) {
    fm_targets s = t;
    if (t.labels) s.labels = t.labels + row;
    if (t.dense) s.dense = (const real *)t.dense + (size_t)row * K;
    return s;
}

static FN(fm_pass) FN(inference)(const fm_net *net, const fm_buffers *buf) {
    FN(fm_pass) ps = {.net = net, .params = (const real *)buf->params,
                      .running = (const real *)buf->running};
    return ps;
}

/* 1 when the call's input (dense X, or csr when not NULL) fits the net: csr_input set
 * for CSR input only, which takes no input dropout. */
static int FN(input_ok)(const fm_net *net, const fm_csr *csr) {
    return csr ? net->csr_input && net->dropout[0] == 0 : !net->csr_input;
}

/* The input rows [r0, r0 + B) of a call: of dense X (returned: in place, or converted into
 * ws->x0), or of ws->csr (NULL). */
static const real *FN(rows_at)(FN(fm_ws) * ws, const fm_input *X, int64_t r0, int B, int I,
                               int nt) {
    ws->csr_rows = NULL;
    ws->csr_r0 = r0;
    return ws->csr ? NULL : FN(fm_input_block)(ws->x0, X, r0, B, I, nt);
}

/* Blocks of up to `cap` rows of a predict call (block j: rows [j cap, (j + 1) cap)) through
 * every layer on the workspace `work` (carved for `cap` rows of `net`), outputs into out.
 * Inside a parallel region the team shares the blocks, each thread taking the next free
 * one when it is done (so one that starts late, or runs on a core another process holds,
 * takes fewer); outside one, the caller runs them all. */
static void FN(predict_blocks)(const fm_net *net, const fm_buffers *buf, void *work, int cap,
                               const fm_input *X, const fm_csr *csr, int64_t n, int logits,
                               real *out, int *nonfinite) {
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, work, cap);
    ws.csr = csr;
    FN(fm_pass) ps = FN(inference)(net, buf);
    ps.panels = (const real *)buf->panels;
    ps.pruned = buf->pruned;
    const int I = net->sizes[0], K = net->sizes[net->n_layers];
    const int nt = fm_usable_threads(net->n_threads);
    const int64_t blocks = (n + cap - 1) / cap;
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t j = 0; j < blocks; j++) {
        const int64_t r0 = j * cap;
        const int B = (int)(n - r0 < cap ? n - r0 : cap);
        const real *x = FN(rows_at)(&ws, X, r0, B, I, nt);
        FN(forward)(&ps, &ws, x, B);
        /* after the forward pass, which brought the rows into cache (its outputs are
           discarded when the rows are not finite) */
        if (x && X->check_finite && !FN(fm_all_finite)(x, (size_t)B * I, 1)) {
            __atomic_store_n(nonfinite, 1, __ATOMIC_RELAXED);
            continue;
        }
        real *o = out + (size_t)r0 * K;
        memcpy(o, ws.logits, (size_t)B * K * sizeof(real));
        if (!logits) FN(fm_output_activation)(o, B, K, net->loss);
    }
}

/* For inference on several threads with rows enough (FM_PREDICT_SPLIT_ROWS each) and the
 * hand tiles: the bytes of each thread's part of the workspace (carved for *sub = batch_cap
 * / nt rows of *one, the net on one thread); fm_workspace_bytes leaves room for nt of them (checked).
 * 0 where the team splits each layer's products instead (also with the BLAS kernels: no
 * BLAS call per thread at once). Every row's outputs are the same either way (each element
 * is one FMA chain in a fixed order, whatever the block or the thread). */
static size_t FN(row_split_part)(const fm_net *net, const fm_buffers *buf, int64_t n, int *sub,
                                 fm_net *one) {
    const int nt = fm_usable_threads(net->n_threads);
    *sub = buf->batch_cap / nt;
    *one = *net;
    one->n_threads = 1;
    if (nt < 2 || *sub < 1 || n < (int64_t)nt * FM_PREDICT_SPLIT_ROWS ||
        fm_kernel_active() == FM_KERNEL_BLAS)
        return 0;
    const size_t part = fm_workspace_bytes(one, *sub, sizeof(real));
    return part * nt <= fm_workspace_bytes(net, buf->batch_cap, sizeof(real)) ? part : 0;
}

/* Predict: split as row_split_part says, the threads sharing blocks of `sub` rows
 * (predict_blocks), or the team splitting each layer's products. */
static int FN(predict)(const fm_net *net, const fm_buffers *buf, const fm_input *X,
                       const fm_csr *csr, int64_t n, int logits, real *out) {
    if (!net_ok(net) || buf->batch_cap < 1 || !FN(input_ok)(net, csr)) return FM_ERR_BAD_ARGUMENT;
    int sub, nonfinite = 0;
    fm_net one;
    const size_t part = FN(row_split_part)(net, buf, n, &sub, &one);
    if (part) {
        count_split(&predict_splits);
        const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(fm_usable_threads(net->n_threads))
        FM_FP_TEAM(ft, FN(predict_blocks)(&one, buf,
                                          (char *)buf->work + (size_t)fm_thread_rank() * part,
                                          sub, X, csr, n, logits, out, &nonfinite));
    } else {
        FN(predict_blocks)(net, buf, buf->work, buf->batch_cap, X, csr, n, logits, out,
                           &nonfinite);
    }
    return nonfinite ? FM_ERR_NONFINITE_INPUT : FM_OK;
}

int FN(fm_predict)(const fm_net *net, const fm_buffers *buf, const fm_input *X, int64_t n,
                   int logits, real *out) {
    return FN(predict)(net, buf, X, NULL, n, logits, out);
}

int FN(fm_predict_csr)(const fm_net *net, const fm_buffers *buf, const fm_csr *X, int logits,
                       real *out) {
    return FN(predict)(net, buf, NULL, X, X->n_rows, logits, out);
}

static int FN(loss_grad)(const fm_net *net, const fm_buffers *buf, const real *X,
                         const fm_csr *csr, fm_targets targets, int n, int training,
                         const fm_penalty *pen, fm_random rng, double *loss, real *input_grad) {
    if (!net_ok(net) || n < 1 || n > buf->batch_cap || !FN(input_ok)(net, csr))
        return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    ws.csr = csr;
    real *grads = (real *)buf->grads;
    const FN(fm_pass) ps = {.net = net, .params = (const real *)buf->params,
                            .running = (const real *)buf->running, .training = training,
                            .key = rng.key, .counter = (uint64_t)rng.counter, .pen = pen};
    const int L = net->n_layers;
    ws.csr_rows = NULL;
    ws.csr_r0 = 0;
    FN(forward)(&ps, &ws, csr ? NULL : X, n);
    FN(fm_loss)(ws.delta[0], ws.loss, ws.correct, ws.logits, targets, NULL, n, net->sizes[L],
                net->loss);
    double correct;
    FN(sum_samples)(ws.loss, ws.correct, n, loss, &correct);
    FN(backward)(&ps, grads, &ws, n, input_grad, NULL, NULL);
    FN(fm_tie_fold)(net, grads);
    *loss = *loss / n + ws.activity / n + FN(fm_penalty)(grads, ps.params, net, pen, 0);
    return FM_OK;
}

int FN(fm_loss_grad)(const fm_net *net, const fm_buffers *buf, const real *X,
                     fm_targets targets, int n, int training, const fm_penalty *pen,
                     fm_random rng, double *loss, real *input_grad) {
    return FN(loss_grad)(net, buf, X, NULL, targets, n, training, pen, rng, loss, input_grad);
}

int FN(fm_loss_grad_csr)(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                         fm_targets targets, int training, const fm_penalty *pen,
                         fm_random rng, double *loss) {
    if (X->n_rows > INT32_MAX) return FM_ERR_BAD_ARGUMENT;
    return FN(loss_grad)(net, buf, NULL, X, targets, (int)X->n_rows, training, pen, rng, loss,
                         NULL);
}

/* Evaluate's rows [r0, r0 + B) (B >= 1): forward, then each row's loss and accuracy into
 * ws->loss / ws->correct. */
static void FN(evaluate_rows)(const FN(fm_pass) * ps, FN(fm_ws) * ws, const fm_input *X,
                              fm_targets targets, int64_t r0, int B, int nt) {
    const fm_net *net = ps->net;
    const int I = net->sizes[0], K = net->sizes[net->n_layers];
    FN(forward)(ps, ws, FN(rows_at)(ws, X, r0, B, I, nt), B);
    FN(fm_loss)(NULL, ws->loss, ws->correct, ws->logits, FN(targets_from)(targets, r0, K), NULL,
                B, K, net->loss);
}

/* Evaluate split between the threads of the enclosing team (row_split_part: parts of
 * `part` bytes for `sub` rows of the one-thread net `one`), a window of whole blocks of
 * batch_cap rows (at most FM_EVAL_WINDOW rows) at a time: the threads share its chunks of
 * `sub` rows (each taking the next free one when done, as predict's blocks), each chunk
 * leaving its rows' losses and accuracies in `loss` / `correct` (FM_EVAL_WINDOW each, shared)
 * at their place in the window; then one thread adds them to the sums in evaluate's order
 * (each block's rows in order, then the blocks). *loss_sum and *correct_sum start at 0. */
static void FN(evaluate_split)(const fm_net *one, const fm_buffers *buf, size_t part, int sub,
                               const fm_input *X, const fm_csr *csr, fm_targets targets,
                               int64_t n, double *loss, double *correct, double *loss_sum,
                               double *correct_sum) {
    const int cap = buf->batch_cap, window = FM_EVAL_WINDOW / cap * cap;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, one, (char *)buf->work + (size_t)fm_thread_rank() * part, sub);
    ws.csr = csr;
    const FN(fm_pass) ps = FN(inference)(one, buf);
    for (int64_t w0 = 0; w0 < n; w0 += window) {
        const int W = (int)(n - w0 < window ? n - w0 : window), chunks = (W + sub - 1) / sub;
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < chunks; k++) {
            const int lo = k * sub, rows = W - lo < sub ? W - lo : sub;
            FN(evaluate_rows)(&ps, &ws, X, targets, w0 + lo, rows, 1);
            memcpy(loss + lo, ws.loss, (size_t)rows * sizeof(double));
            memcpy(correct + lo, ws.correct, (size_t)rows * sizeof(double));
        }
#pragma omp single
        for (int b0 = 0; b0 < W; b0 += cap) {
            double l, c;
            FN(sum_samples)(loss + b0, correct + b0, W - b0 < cap ? W - b0 : cap, &l, &c);
            *loss_sum += l;
            *correct_sum += c;
        }
    }
}

/* Sums of the per-sample losses and accuracies over blocks of batch_cap rows, each block's
 * rows added in order, then the blocks in order: on one thread, split between threads as
 * row_split_part says (evaluate_split; blocks of up to FM_EVAL_WINDOW rows), or with the
 * team splitting each layer's products: the same bits. */
static int FN(evaluate)(const fm_net *net, const fm_buffers *buf, const fm_input *X,
                        const fm_csr *csr, fm_targets targets, int64_t n, double *loss_sum,
                        double *correct_sum) {
    if (!net_ok(net) || buf->batch_cap < 1 || targets.weights || !FN(input_ok)(net, csr))
        return FM_ERR_BAD_ARGUMENT;
    int sub;
    fm_net one;
    const size_t part = FN(row_split_part)(net, buf, n, &sub, &one);
    if (part && buf->batch_cap <= FM_EVAL_WINDOW) {
        count_split(&evaluate_splits);
        double loss[FM_EVAL_WINDOW], correct[FM_EVAL_WINDOW], ls = 0, cs = 0;
        const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(fm_usable_threads(net->n_threads))
        FM_FP_TEAM(ft, FN(evaluate_split)(&one, buf, part, sub, X, csr, targets, n, loss,
                                          correct, &ls, &cs));
        *loss_sum = ls;
        *correct_sum = cs;
        return FM_OK;
    }
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    ws.csr = csr;
    const FN(fm_pass) ps = FN(inference)(net, buf);
    const int nt = fm_usable_threads(net->n_threads);
    double ls = 0, cs = 0;
    for (int64_t r0 = 0; r0 < n; r0 += buf->batch_cap) {
        const int B = (int)(n - r0 < buf->batch_cap ? n - r0 : buf->batch_cap);
        FN(evaluate_rows)(&ps, &ws, X, targets, r0, B, nt);
        double l, c;
        FN(sum_samples)(ws.loss, ws.correct, B, &l, &c);
        ls += l;
        cs += c;
    }
    *loss_sum = ls;
    *correct_sum = cs;
    return FM_OK;
}

int FN(fm_evaluate)(const fm_net *net, const fm_buffers *buf, const fm_input *X,
                    fm_targets targets, int64_t n, double *loss_sum, double *correct_sum) {
    return FN(evaluate)(net, buf, X, NULL, targets, n, loss_sum, correct_sum);
}

int FN(fm_evaluate_csr)(const fm_net *net, const fm_buffers *buf, const fm_csr *X,
                        fm_targets targets, double *loss_sum, double *correct_sum) {
    return FN(evaluate)(net, buf, NULL, X, targets, X->n_rows, loss_sum, correct_sum);
}

/* FGSM: rows [0, na) of ws->x0 move by eps * sign(dLoss/dx), the gradient taken
 * through the step's own network (same dropout masks; BN statistics of those rows). */
static void FN(adversarial)(const FN(fm_pass) * ps, FN(fm_ws) * ws, real *grads,
                            fm_targets targets, const int64_t *idx, int na, double eps) {
    const fm_net *net = ps->net;
    const int L = net->n_layers, n0 = net->sizes[0];
    FN(forward)(ps, ws, ws->x0, na);
    FN(fm_loss)(ws->delta[0], ws->loss, ws->correct, ws->logits, targets, idx, na, net->sizes[L],
                net->loss);
    FN(backward)(ps, grads, ws, na, ws->xgrad, NULL, NULL);
    const real e = (real)eps;
    for (size_t i = 0; i < (size_t)na * n0; i++)
        ws->x0[i] += e * (real)((ws->xgrad[i] > 0) - (ws->xgrad[i] < 0));
}

/* dst (n) = src (n), in blocks over threads */
static void FN(copy)(void *dst, const real *src, size_t n, int nt) {
    const size_t block = (size_t)1 << 18, blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && blocks > 1)
    for (size_t b = 0; b < blocks; b++) {
        const size_t lo = b * block, m = n - lo < block ? n - lo : block;
        memcpy((real *)dst + lo, src + lo, m * sizeof(real));
    }
}

/* The first half of a training step on rows idx[0..B): gather, augment (and the adversarial
 * rows) -- or, with CSR input, point layer 0 at those rows --, forward and loss with the step's randomness; leaves the output delta in
 * ws->delta[0]. Returns the mean loss before weight penalties; *correct: mean accuracy. */
static double FN(step_forward)(const FN(fm_pass) * ps, FN(fm_ws) * ws, real *grads,
                               const fm_input *X, fm_targets targets, const int64_t *idx, int B,
                               const fm_augment *aug, double *correct) {
    const fm_net *net = ps->net;
    const int I = net->sizes[0], K = net->sizes[net->n_layers];
    if (ws->csr) { /* CSR rows are read in place, in this order (no augmentation) */
        ws->csr_rows = idx;
    } else {
        /* images move as raw pixels: a per-feature input transform (standardized pixels)
           comes after the moves, or pixels would take other pixels' scaling */
        const int moves = aug->shift > 0 || aug->rotate > 0 || aug->scale > 0 || aug->shear > 0;
        fm_input raw = *X;
        if (moves) raw.scale = raw.shift = NULL;
        FN(fm_input_rows)(ws->x0, &raw, idx, 0, B, I, fm_usable_threads(net->n_threads));
        if (moves || aug->noise_std > 0)
            FN(fm_augment)(ws->x0, ws->xgrad, B, I, aug, moves && X->scale ? X : NULL, ps->key,
                           ps->counter, ps->row0);
        if (aug->adv_eps > 0) {
            const int na = (int)llround(aug->adv_ratio * B);
            if (na > 0) FN(adversarial)(ps, ws, grads, targets, idx, na, aug->adv_eps);
        }
    }
    FN(forward)(ps, ws, ws->csr ? NULL : ws->x0, B);
    FN(fm_loss)(ws->delta[0], ws->loss, ws->correct, ws->logits, targets, idx, B, K, net->loss);
    double l, c;
    FN(sum_samples)(ws->loss, ws->correct, B, &l, &c);
    *correct = c / B;
    return l / B + ws->activity / B;
}

/* dst = src, parameter-shaped; src with the fm_layer_in_panels layers in panel layout
 * when `layout` (dst row-major). */
static void FN(copy_params)(const fm_net *net, void *dst, const real *src, int layout, int nt) {
    if (layout) {
        fm_copy_from_panels(net, dst, src, sizeof(real), nt);
        return;
    }
    FN(copy)(dst, src, fm_param_count(net), nt);
}

/* The parameters, the optimizer's state and, with `grads`, the gradients into panel layout
 * or back. */
static void FN(convert_layout)(const fm_net *net, const fm_buffers *buf, const fm_optimizer *opt,
                               int to_panels, int grads) {
    const size_t e = sizeof(real);
    fm_convert_layout(net, buf->params, buf->scratch, e, to_panels, net->n_threads);
    if (grads) fm_convert_layout(net, buf->grads, buf->scratch, e, to_panels, net->n_threads);
    for (int i = 0; i < FM_OPT_MAX_SLOTS; i++)
        if (opt->slot[i])
            fm_convert_layout(net, opt->slot[i], buf->scratch, e, to_panels, net->n_threads);
}

/* out[l] = L2 norm of dense layer l's weight gradient in grads, for every layer. One thread
 * and one summation order whatever the layout: each column's squares are summed over the
 * rows in order (a column block's partial sums on the stack), then the columns in order,
 * so the result does not depend on the thread count or on whether the layer's gradient is
 * in panel layout (a weight at row k, column j then lies in panel j / nr at row k). */
#define FM_NORM_COLUMNS 16
static void FN(layer_grad_norms)(const FN(fm_pass) * ps, const real *grads, double *out) {
    const fm_net *net = ps->net;
    for (int l = 0; l < net->n_layers; l++) {
        const int I = net->sizes[l], O = net->sizes[l + 1];
        const int panels = FN(in_panels)(ps, l), nr = panels ? fm_panel_width_of(sizeof(real)) : O;
        const real *g = grads + fm_weight_offset(net, l);
        double total = 0;
        for (int jb = 0; jb < O; jb += FM_NORM_COLUMNS) {
            const int m = O - jb < FM_NORM_COLUMNS ? O - jb : FM_NORM_COLUMNS;
            double acc[FM_NORM_COLUMNS] = {0};
            for (int k = 0; k < I; k++)
                for (int j = jb; j < jb + m;) { /* runs of columns within one panel */
                    const int p = j / nr, off = j % nr;
                    const int run = nr - off < jb + m - j ? nr - off : jb + m - j;
                    const real *src = g + ((size_t)p * I + k) * nr + off;
                    double *a = acc + (j - jb);
                    if (run == FM_NORM_COLUMNS) /* a whole block (float32 panels, nr 16 or 32) */
                        for (int t = 0; t < FM_NORM_COLUMNS; t++) acc[t] += (double)src[t] * src[t];
                    else
                        for (int t = 0; t < run; t++) a[t] += (double)src[t] * src[t];
                    j += run;
                }
            for (int r = 0; r < m; r++) total += acc[r];
        }
        out[l] = sqrt(total);
    }
}

/* The second half of a training step, from the gradient in buf->grads (row-major, or in the
 * layout params has): tied layers' gradients into their sources' (ties.c; row-major only),
 * weight penalties (their value added to *loss), pruning mask,
 * clipping, the per-layer gradient norms into `norms` when not NULL (ps: the step's pass,
 * for the layout), the optimizer's update with rate lr, the L1 proximal step, the mask
 * again, the tied layers' copies of their sources. */
static int FN(update)(const fm_net *net, const fm_buffers *buf, double lr, fm_optimizer *opt,
                      const fm_clip *clip, const fm_penalty *pen, int nt, double *loss,
                      const FN(fm_pass) * ps, double *norms) {
    real *params = (real *)buf->params, *grads = (real *)buf->grads;
    const real *mask = (const real *)buf->prune_mask;
    const size_t n_params = fm_param_count(net);
    FN(fm_tie_fold)(net, grads);
    const int layout = ps && ps->layout;
    *loss += FN(fm_penalty)(grads, params, net, pen, layout);
    if (mask) FN(fm_mul)(grads, grads, mask, n_params);
    if ((clip->max_norm > 0 || clip->max_value > 0) &&
        !isfinite(FN(fm_clip_grads)(net, grads, layout, clip, nt)) && clip->error_if_nonfinite)
        return FM_ERR_NONFINITE_GRAD;
    if (norms) FN(layer_grad_norms)(ps, grads, norms);
    FN(fm_optimizer_step)(opt, params, grads, n_params, lr, nt);
    if (pen->l1_proximal && pen->l1 > 0) FN(fm_prox_l1)(params, net, lr * pen->l1, pen->biases);
    if (mask) FN(fm_mul)(params, params, mask, n_params);
    FN(fm_tie_refresh)(net, params);
    return FM_OK;
}

/* Whether fm_train's steps take the update fused into the backward pass: an elementwise
 * rule of the gradient as backward leaves it. Not with what the separate pass does to the
 * whole gradient first (ties, weight penalties, pruning mask, clipping) or records (the
 * layers' gradient norms). */
static int FN(fusable)(const fm_net *net, const fm_buffers *buf, const fm_clip *clip,
                       const fm_penalty *pen) {
    return fm_fused_update_enabled() && !buf->prune_mask && !buf->grad_norms &&
           !fm_has_ties(net) && clip->max_norm <= 0 && clip->max_value <= 0 && pen->l1 == 0 &&
           pen->l2 == 0;
}

/* A step's backward pass with its update u fused (fusable): then the parameters that
 * backward did not update, in runs of consecutive ones over nt threads. Bitwise the same
 * as backward followed by update (the update is elementwise, the gradient the same). */
static void FN(backward_update)(const FN(fm_pass) * ps, real *grads, FN(fm_ws) * ws, int B,
                                const FN(fm_update) * u, int nt) {
    const fm_net *net = ps->net;
    const int L = net->n_layers;
    int fused[FM_MAX_LAYERS];
    FN(backward)(ps, grads, ws, B, NULL, u, fused);
    size_t lo = 0, count = 0;
    for (int l = 0; l < L; l++) {
        if (!fused[l]) continue; /* its weights join the run */
        count++;
        const size_t w = fm_weight_offset(net, l);
        if (w > lo) FN(fm_update_span)(u, lo, w, nt);
        lo = fm_bias_offset(net, l);
    }
    FN(fm_update_span)(u, lo, fm_param_count(net), nt);
    fm_fused_update_count(count);
}

static int FN(train)(const fm_net *net, const fm_buffers *buf, int batch_size,
                     const fm_input *X,
                     const fm_csr *csr, fm_targets targets, int64_t n, const int64_t *order,
                     int64_t start, int n_steps, const double *lr, fm_optimizer *opt,
                     const fm_clip *clip, const fm_penalty *pen, const fm_augment *aug,
                     fm_random *rng, const fm_snapshot *snap, double *step_loss,
                     double *step_correct, int *steps_done) {
    *steps_done = 0;
    if (!net_ok(net) || batch_size < 1 || batch_size > buf->batch_cap || start < 0 ||
        opt->kind < FM_OPT_SGD || opt->kind > FM_OPT_DELTA_BAR_DELTA ||
        !FN(input_ok)(net, csr) ||
        (csr && (aug->noise_std > 0 || aug->shift > 0 || aug->rotate > 0 || aug->scale > 0 ||
                 aug->shear > 0 || aug->adv_eps > 0)))
        return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    ws.csr = csr;
    real *params = (real *)buf->params, *grads = (real *)buf->grads;
    real *running = (real *)buf->running;
    const real *mask = (const real *)buf->prune_mask;
    const int L = net->n_layers;
    /* panel layout where it pays (engine.c); a pruning mask is row-major, and so are
       the tied-weight transfers (ties.c), so they keep the weights row-major */
    const int layout = buf->scratch && !mask && !fm_has_ties(net) &&
                       (n_steps >= FM_LAYOUT_MIN_STEPS ||
                        (int64_t)n_steps * batch_size >= FM_LAYOUT_MIN_ROWS) &&
                       fm_layout_scratch_count(net, sizeof(real)) > 0;
    /* with the thread count of each step (adapt.c); the conversions take the first's */
    fm_net step_net = *net;
    step_net.n_threads = fm_adapt_threads(buf->adapt, net, batch_size);
    /* The gradient's values on entry are never read: a step's backward pass writes all of
       it before anything reads it. So it is not converted in, and converted back only once
       a backward pass has written it in panels (an adversarial pass can, inside
       step_forward: with those, both ways as the rest). Each conversion is two passes over
       the array; the eight of an Adam call took 6 % of a one-epoch fit of
       784-2048-2048-2048-10. */
    int grads_in_panels = aug->adv_eps > 0;
    if (layout) FN(convert_layout)(&step_net, buf, opt, 1, grads_in_panels);
    const int fuse = FN(fusable)(net, buf, clip, pen);
    int status = FM_OK;
    int64_t p0 = start; /* this step's first position in order */
    for (int s = 0; s < n_steps; s++) {
        const int64_t left = n - p0 % n; /* rows left in p0's epoch */
        const int B = (int)(left < batch_size ? left : batch_size);
        step_net.n_threads = fm_adapt_threads(buf->adapt, net, batch_size);
        const int nt = fm_usable_threads(step_net.n_threads);
        const double t0 = fm_seconds();
        const FN(fm_pass) ps = {&step_net, params, running, 1, rng->key, (uint64_t)rng->counter,
                                pen, NULL, layout};
        step_loss[s] = FN(step_forward)(&ps, &ws, grads, X, targets, order + p0, B, aug,
                                        &step_correct[s]);
        if (!isfinite(step_loss[s])) {
            status = FM_ERR_NONFINITE_LOSS;
            break;
        }
        if (s == 0 && snap) { /* weights that gave a finite loss, before their update */
            FN(copy_params)(net, snap->params, params, layout, nt);
            if (snap->running) FN(copy)(snap->running, running, fm_running_count(net), nt);
            for (int i = 0; i < FM_OPT_MAX_SLOTS; i++)
                if (snap->slot[i] && opt->slot[i])
                    FN(copy_params)(net, snap->slot[i], opt->slot[i], layout, nt);
        }
        grads_in_panels = 1;
        if (fuse) {
            const FN(fm_update) u = FN(fm_update_next)(opt, lr[s], params, grads);
            FN(backward_update)(&ps, grads, &ws, B, &u, nt);
        } else {
            FN(backward)(&ps, grads, &ws, B, NULL, NULL, NULL);
            status = FN(update)(net, buf, lr[s], opt, clip, pen, nt, &step_loss[s], &ps,
                                buf->grad_norms ? buf->grad_norms + (size_t)s * L : NULL);
            if (status != FM_OK) break;
        }
        for (int k = 0; k < L - 1; k++)
            if (net->bn[k] && B > 1)
                FN(fm_bn_update_running)(running + fm_running_offset(net, k), ws.mean[k],
                                         ws.var[k], B, net->sizes[k + 1], net->bn_momentum);
        rng->counter++;
        p0 += B;
        *steps_done = s + 1;
        /* a call's first step also copies the snapshot; a short batch is not comparable */
        fm_adapt_record(buf->adapt, step_net.n_threads, fm_seconds() - t0,
                        s > 0 && B == batch_size);
    }
    if (layout) FN(convert_layout)(&step_net, buf, opt, 0, grads_in_panels);
    return status;
}

int FN(fm_train)(const fm_net *net, const fm_buffers *buf, int batch_size, const fm_input *X,
                 fm_targets targets, int64_t n, const int64_t *order, int64_t start, int n_steps,
                 const double *lr, fm_optimizer *opt, const fm_clip *clip, const fm_penalty *pen,
                 const fm_augment *aug, fm_random *rng, const fm_snapshot *snap,
                 double *step_loss, double *step_correct, int *steps_done) {
    return FN(train)(net, buf, batch_size, X, NULL, targets, n, order, start, n_steps, lr, opt,
                     clip, pen, aug, rng, snap, step_loss, step_correct, steps_done);
}

int FN(fm_train_csr)(const fm_net *net, const fm_buffers *buf, int batch_size, const fm_csr *X,
                     fm_targets targets, const int64_t *order, int64_t start, int n_steps,
                     const double *lr, fm_optimizer *opt, const fm_clip *clip,
                     const fm_penalty *pen, const fm_augment *aug, fm_random *rng,
                     const fm_snapshot *snap, double *step_loss, double *step_correct,
                     int *steps_done) {
    return FN(train)(net, buf, batch_size, NULL, X, targets, X->n_rows, order, start, n_steps,
                     lr, opt, clip, pen, aug, rng, snap, step_loss, step_correct, steps_done);
}

/* ---- Data-parallel training (fastmlp.distributed): fm_train's step in two halves, with
 * the sum of the ranks' gradients between them. ---- */

int FN(fm_block_grad)(real *out, const fm_net *net, const fm_buffers *buf, const fm_input *X,
                      fm_targets targets, const int64_t *idx, int B, int block, int64_t row0,
                      double grad_scale, double stat_scale, const fm_augment *aug,
                      fm_random rng, double *loss, double *correct, int *threads) {
    if (!net_ok(net) || B < 1 || B > buf->batch_cap || B > block || row0 < 0 ||
        aug->adv_eps > 0)
        return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, buf->work, buf->batch_cap);
    fm_net block_net = *net; /* with the adaptive thread count, as fm_train's steps */
    block_net.n_threads = fm_adapt_threads(buf->adapt, net, block);
    *threads = block_net.n_threads;
    const double t0 = fm_seconds();
    const FN(fm_pass) ps = {.net = &block_net, .params = (const real *)buf->params,
                            .running = (const real *)buf->running, .training = 1,
                            .key = rng.key, .counter = (uint64_t)rng.counter, .row0 = row0};
    const int L = net->n_layers;
    *loss = grad_scale * FN(step_forward)(&ps, &ws, out, X, targets, idx, B, aug, correct);
    *correct *= grad_scale;
    FN(fm_scale)(ws.delta[0], (size_t)B * net->sizes[L], grad_scale);
    FN(backward)(&ps, out, &ws, B, NULL, NULL, NULL);
    fm_adapt_record(buf->adapt, block_net.n_threads, fm_seconds() - t0, B == block);
    const double unbias = B > 1 ? (double)B / (B - 1) : 1.0;
    for (int l = 0; l < L - 1; l++) {
        if (!net->bn[l]) continue;
        const int O = net->sizes[l + 1];
        real *stats = out + fm_param_count(net) + fm_running_offset(net, l);
        for (int j = 0; j < O; j++) {
            stats[j] = (real)(stat_scale * ws.mean[l][j]);
            stats[O + j] = (real)(stat_scale * unbias * ws.var[l][j]);
        }
    }
    return FM_OK;
}

int FN(fm_apply_grad)(const fm_net *net, const fm_buffers *buf, const real *stats, double lr,
                      fm_optimizer *opt, const fm_clip *clip, const fm_penalty *pen,
                      int threads, double *loss) {
    if (!net_ok(net) || threads < 1 || opt->kind < FM_OPT_SGD ||
        opt->kind > FM_OPT_DELTA_BAR_DELTA)
        return FM_ERR_BAD_ARGUMENT;
    const int status =
        FN(update)(net, buf, lr, opt, clip, pen, fm_usable_threads(threads), loss, NULL, NULL);
    if (status != FM_OK) return status;
    real *running = (real *)buf->running;
    const real m = (real)net->bn_momentum, keep = (real)(1 - net->bn_momentum);
    for (int l = 0; l < net->n_layers - 1; l++) {
        if (!net->bn[l]) continue;
        const size_t r0 = fm_running_offset(net, l);
        for (int j = 0; j < 2 * net->sizes[l + 1]; j++)
            running[r0 + j] = keep * running[r0 + j] + m * stats[r0 + j];
    }
    return FM_OK;
}
