/* Template: included by engine.c with `real` and FN() defined. */

typedef struct {
    real *act[FM_MAX_LAYERS + 1];
    real *delta[2];
    double *loss, *correct;
} FN(fm_ws);

static void FN(ws_carve)(FN(fm_ws) * ws, const fm_net *net, void *work, int batch) {
    fm_ws_offsets o;
    ws_offsets(net, batch, sizeof(real), &o);
    char *base = ws_base(work);
    for (int l = 0; l <= net->n_layers; l++) ws->act[l] = (real *)(base + o.act[l]);
    ws->delta[0] = (real *)(base + o.delta[0]);
    ws->delta[1] = (real *)(base + o.delta[1]);
    ws->loss = (double *)(base + o.loss);
    ws->correct = (double *)(base + o.correct);
}

/* act[1..L] for input X (B, n_0); act[L] are the logits. */
static void FN(forward)(const fm_net *net, const real *params, FN(fm_ws) * ws, const real *X,
                        int B) {
    const int L = net->n_layers;
    const real *in = X;
    for (int l = 0; l < L; l++) {
        const int act = l < L - 1 ? net->act[l] : FM_IDENTITY;
        FN(fm_dense_forward)(ws->act[l + 1], in, params + fm_weight_offset(net, l),
                             params + fm_bias_offset(net, l), B, net->sizes[l],
                             net->sizes[l + 1], act, net->leaky_slope, net->n_threads);
        in = ws->act[l + 1];
    }
}

/* Gradients from delta[0] = dLoss/dlogits (B, n_L), after forward() on X. */
static void FN(backward)(const fm_net *net, const real *params, real *grads, FN(fm_ws) * ws,
                         const real *X, int B, real *input_grad) {
    int cur = 0;
    for (int l = net->n_layers - 1; l >= 0; l--) {
        const real *in = l > 0 ? ws->act[l] : X;
        const real *W = params + fm_weight_offset(net, l);
        const int I = net->sizes[l], O = net->sizes[l + 1];
        FN(fm_dense_backward_params)(grads + fm_weight_offset(net, l),
                                     grads + fm_bias_offset(net, l), in, ws->delta[cur], B, I, O,
                                     net->n_threads);
        if (l > 0) {
            FN(fm_dense_backward_input)(ws->delta[1 - cur], ws->delta[cur], W, ws->act[l], B, I,
                                        O, net->act[l - 1], net->leaky_slope, net->n_threads);
            cur = 1 - cur;
        } else if (input_grad) {
            FN(fm_dense_backward_input)(input_grad, ws->delta[cur], W, NULL, B, I, O,
                                        FM_IDENTITY, 0, net->n_threads);
        }
    }
}

/* Sum of ws->loss / ws->correct over B samples, in a fixed order. */
static void FN(sum_samples)(const FN(fm_ws) * ws, int B, double *loss, double *correct) {
    double l = 0, c = 0;
    for (int i = 0; i < B; i++) {
        l += ws->loss[i];
        c += ws->correct[i];
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

int FN(fm_predict)(const fm_net *net, const real *params, void *work, int batch_cap,
                   const real *X, int64_t n, real *out) {
    if (!net_ok(net) || batch_cap < 1) return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, work, batch_cap);
    const int I = net->sizes[0], K = net->sizes[net->n_layers];
    for (int64_t r0 = 0; r0 < n; r0 += batch_cap) {
        const int B = (int)(n - r0 < batch_cap ? n - r0 : batch_cap);
        FN(forward)(net, params, &ws, X + (size_t)r0 * I, B);
        real *o = out + (size_t)r0 * K;
        memcpy(o, ws.act[net->n_layers], (size_t)B * K * sizeof(real));
        FN(fm_output_activation)(o, B, K, net->loss);
    }
    return FM_OK;
}

int FN(fm_loss_grad)(const fm_net *net, const real *params, real *grads, void *work,
                     const real *X, fm_targets targets, int n, double *loss, real *input_grad) {
    if (!net_ok(net) || n < 1) return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, work, n);
    const int L = net->n_layers;
    FN(forward)(net, params, &ws, X, n);
    FN(fm_loss)(ws.delta[0], ws.loss, ws.correct, ws.act[L], targets, NULL, n, net->sizes[L],
                net->loss);
    double correct;
    FN(sum_samples)(&ws, n, loss, &correct);
    *loss /= n;
    FN(backward)(net, params, grads, &ws, X, n, input_grad);
    return FM_OK;
}

int FN(fm_evaluate)(const fm_net *net, const real *params, void *work, int batch_cap,
                    const real *X, fm_targets targets, int64_t n, double *loss_sum,
                    double *correct_sum) {
    if (!net_ok(net) || batch_cap < 1) return FM_ERR_BAD_ARGUMENT;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, work, batch_cap);
    const int L = net->n_layers, I = net->sizes[0], K = net->sizes[L];
    double ls = 0, cs = 0;
    for (int64_t r0 = 0; r0 < n; r0 += batch_cap) {
        const int B = (int)(n - r0 < batch_cap ? n - r0 : batch_cap);
        FN(forward)(net, params, &ws, X + (size_t)r0 * I, B);
        FN(fm_loss)(NULL, ws.loss, ws.correct, ws.act[L], FN(targets_from)(targets, r0, K), NULL,
                    B, K, net->loss);
        double l, c;
        FN(sum_samples)(&ws, B, &l, &c);
        ls += l;
        cs += c;
    }
    *loss_sum = ls;
    *correct_sum = cs;
    return FM_OK;
}

/* Xb (B, I) = rows idx[0..B) of X (n, I) */
static void FN(gather)(real *Xb, const real *X, const int64_t *idx, int B, int I, int nt) {
    const int par = nt > 1 && (size_t)B * I >= (size_t)FM_PARALLEL_MIN_WORK;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
    for (int i = 0; i < B; i++)
        memcpy(Xb + (size_t)i * I, X + (size_t)idx[i] * I, (size_t)I * sizeof(real));
}

int FN(fm_train)(const fm_net *net, real *params, real *grads, void *work, int batch_size,
                 const real *X, fm_targets targets, int64_t n, const int64_t *order,
                 int64_t start, int n_steps, const double *lr, fm_optimizer *opt,
                 const fm_clip *clip, double *step_loss, double *step_correct,
                 int *steps_done) {
    *steps_done = 0;
    if (!net_ok(net) || batch_size < 1 || start < 0 || opt->kind < FM_OPT_SGD ||
        opt->kind > FM_OPT_DELTA_BAR_DELTA)
        return FM_ERR_BAD_ARGUMENT;
    const int clipping = clip->max_norm > 0 || clip->max_value > 0;
    FN(fm_ws) ws;
    FN(ws_carve)(&ws, net, work, batch_size);
    const int L = net->n_layers, I = net->sizes[0], K = net->sizes[L];
    const size_t n_params = fm_param_count(net);
    for (int s = 0; s < n_steps; s++) {
        const int64_t p0 = start + (int64_t)s * batch_size;
        if (p0 >= n) return FM_ERR_BAD_ARGUMENT;
        const int B = (int)(n - p0 < batch_size ? n - p0 : batch_size);
        const int64_t *idx = order + p0;
        FN(gather)(ws.act[0], X, idx, B, I, net->n_threads);
        FN(forward)(net, params, &ws, ws.act[0], B);
        FN(fm_loss)(ws.delta[0], ws.loss, ws.correct, ws.act[L], targets, idx, B, K, net->loss);
        double l, c;
        FN(sum_samples)(&ws, B, &l, &c);
        step_loss[s] = l / B;
        step_correct[s] = c / B;
        if (!isfinite(l)) return FM_ERR_NONFINITE_LOSS;
        FN(backward)(net, params, grads, &ws, ws.act[0], B, NULL);
        if (clipping && !isfinite(FN(fm_clip_grads)(grads, n_params, clip, net->n_threads)) &&
            clip->error_if_nonfinite)
            return FM_ERR_NONFINITE_GRAD;
        FN(fm_optimizer_step)(opt, params, grads, n_params, lr[s], net->n_threads);
        *steps_done = s + 1;
    }
    return FM_OK;
}
