/* Template: included by losses.c through instantiate.h. */
#include "shares_impl.h"

static int FN(argmax)(const real *z, int K) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best]) best = k;
    return best;
}

/* e[0..kb) = exp(z[k0 + k] - m) for the block of up to FM_CE_KEEP logits from k0 (one
 * vector exp, vmath.h); returns kb */
static int FN(exp_shifted)(double *e, const real *z, int k0, int K, double m) {
    const int kb = K - k0 < FM_CE_KEEP ? K - k0 : FM_CE_KEEP;
    for (int k = 0; k < kb; k++) e[k] = (double)z[k0 + k] - m;
    fm_vmath()->exp_f64(e, e, (size_t)kb);
    return kb;
}

/* log(sum_k exp(z_k)) of z (K), computed from the largest logit */
static double FN(log_sum_exp)(const real *z, int K) {
    const double m = z[FN(argmax)(z, K)];
    double e[FM_CE_KEEP], s = 0;
    for (int k0 = 0; k0 < K; k0 += FM_CE_KEEP) {
        const int kb = FN(exp_shifted)(e, z, k0, K, m);
        for (int k = 0; k < kb; k++) s += e[k];
    }
    return m + log(s);
}

/* pre (rows, K) = exp(z - max of its row) for `rows` rows of Z (rows * K <= FM_CE_BLOCK),
 * top (rows) = each row's argmax, sum (rows) = the sum of each row's exponentials (in
 * order), lse (rows) = each row's log-sum-exp, max + log(sum): a block of the batch's
 * softmax exponentials in one vector call (a row of ~10 logits alone is too short to fill
 * the vector exp's pipeline), then the sums and the logs in loops of their own, where the
 * rows' dependent chains (ten additions, a log) overlap instead of following one another.
 * Each element is the value exp_shifted gives it (vmath.h: an element's result depends on
 * its value only), each sum and log the value cross_entropy computes from them. Compiled
 * per ISA (no contraction: losses.c), so the conversions and subtractions run in vectors
 * of 4 doubles. */
FM_ISA_CLONES
static void FN(exp_rows)(double *pre, int *top, double *sum, double *lse, const real *Z, int rows,
                         int K) {
    for (int i = 0; i < rows; i++) {
        const real *z = Z + (size_t)i * K;
        top[i] = FN(argmax)(z, K);
        const double m = z[top[i]];
        for (int k = 0; k < K; k++) pre[(size_t)i * K + k] = (double)z[k] - m;
    }
    fm_vmath()->exp_f64(pre, pre, (size_t)rows * K);
    for (int i = 0; i < rows; i++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += pre[(size_t)i * K + k];
        sum[i] = s;
    }
    for (int i = 0; i < rows; i++) lse[i] = (double)Z[(size_t)i * K + top[i]] + log(sum[i]);
}

/* d (K) = (e / s * tsum - target) * scale, target_k = (1 - eps) t_k + eps / K (t NULL: the
 * one-hot row of y): the softmax delta from the kept exponentials e (K), in loops the
 * compiler vectorizes (one division at a time was most of the loss's time). A label's row
 * is every class's entry with the target (1 - eps) 0 + eps / K = eps / K (0 <= eps <= 1:
 * the same double), then class y's with (1 - eps) 1 + eps / K: a comparison with y inside
 * the loop kept gcc from vectorizing it. */
FM_ISA_CLONES
static void FN(softmax_delta)(real *d, const double *e, double s, double tsum, const real *t,
                              int y, int K, double eps, double scale) {
    const double uniform = eps / K;
    if (t) {
        for (int k = 0; k < K; k++)
            d[k] = (real)((e[k] / s * tsum - ((1 - eps) * (double)t[k] + uniform)) * scale);
        return;
    }
    for (int k = 0; k < K; k++) d[k] = (real)((e[k] / s * tsum - uniform) * scale);
    if (y >= 0 && y < K) d[y] = (real)((e[y] / s * tsum - ((1 - eps) + uniform)) * scale);
}

/* Cross-entropy of softmax(z) for one sample; t NULL means the label y. The target row
 * is mixed with the uniform distribution by eps (label smoothing). Up to FM_CE_KEEP
 * classes keep exp(z_k - max) for the delta: one exp per logit, not two. `pre`: those
 * exponentials already computed (exp_rows; K <= FM_CE_KEEP), with their sum pre_sum and
 * z's log-sum-exp pre_lse, or NULL. */
static double FN(cross_entropy)(real *d, double scale, const real *z, const real *t, int y, int K,
                                double eps, const double *pre, double pre_sum, double pre_lse) {
    double own[FM_CE_KEEP];
    const double *e = pre ? pre : own;
    const int keep = d && K <= FM_CE_KEEP;
    double s = pre_sum, lse = pre_lse;
    if (!pre) {
        const double m = z[FN(argmax)(z, K)];
        s = 0;
        for (int k0 = 0; k0 < K; k0 += FM_CE_KEEP) { /* keep: one block */
            const int kb = FN(exp_shifted)(own, z, k0, K, m);
            for (int k = 0; k < kb; k++) s += own[k];
        }
        lse = m + log(s);
    }
    const double uniform = eps / K;
    double loss, tsum = 1;
    if (t) {
        loss = 0;
        tsum = 0;
        for (int k = 0; k < K; k++) {
            const double tk = (1 - eps) * (double)t[k] + uniform;
            if (tk != 0) loss += tk * (lse - (double)z[k]);
            tsum += tk;
        }
    } else {
        double zsum = 0;
        if (eps != 0)
            for (int k = 0; k < K; k++) zsum += z[k];
        loss = lse - (1 - eps) * (double)z[y] - uniform * zsum;
    }
    if (keep) {
        FN(softmax_delta)(d, e, s, tsum, t, y, K, eps, scale);
        return loss;
    }
    for (int k0 = 0; d && k0 < K; k0 += FM_CE_KEEP) {
        const int kb = FN(exp_shifted)(own, z, k0, K, lse);
        for (int k = k0; k < k0 + kb; k++) {
            const double target = (1 - eps) * (t ? (double)t[k] : (double)(k == y)) + uniform;
            d[k] = (real)((own[k - k0] * tsum - target) * scale);
        }
    }
    return loss;
}

/* KL(t || softmax(z)) + KL(softmax(z) || t) for one sample (every t_k > 0): the first
 * term is cross-entropy minus the entropy of t; the second adds q_j (f_j - E_q f) to
 * delta_j, f = log q - log t. */
static double FN(symmetric_kl)(real *d, double scale, const real *z, const real *t, int K) {
    const double lse = FN(log_sum_exp)(z, K);
    double loss = FN(cross_entropy)(d, scale, z, t, -1, K, 0, NULL, 0, 0), qf = 0;
    for (int k = 0; k < K; k++) {
        const double logq = (double)z[k] - lse, tk = t[k];
        loss += xlogx(tk) + exp(logq) * (logq - log(tk));
        qf += exp(logq) * (logq - log(tk));
    }
    if (d)
        for (int k = 0; k < K; k++) {
            const double logq = (double)z[k] - lse;
            d[k] = (real)((double)d[k] + exp(logq) * (logq - log((double)t[k]) - qf) * scale);
        }
    return loss;
}

/* Bhattacharyya distance -log sum_k sqrt(t_k q_k), q = softmax(z), for one sample, summed
 * in the log domain: a_k = (log t_k + log q_k) / 2 over the k with t_k > 0.
 * delta_j = (q_j - exp(a_j - logsumexp(a))) / 2. */
static double FN(bhattacharyya)(real *d, double scale, const real *z, const real *t, int K) {
    const double lse = FN(log_sum_exp)(z, K);
    double m = -HUGE_VAL, s = 0;
    for (int k = 0; k < K; k++)
        if (t[k] > 0) m = fmax(m, 0.5 * (log((double)t[k]) + (double)z[k] - lse));
    for (int k = 0; k < K; k++)
        if (t[k] > 0) s += exp(0.5 * (log((double)t[k]) + (double)z[k] - lse) - m);
    const double log_bc = m + log(s);
    if (d)
        for (int k = 0; k < K; k++) {
            const double qk = exp((double)z[k] - lse);
            const double share =
                t[k] > 0 ? exp(0.5 * (log((double)t[k]) + (double)z[k] - lse) - log_bc) : 0.0;
            d[k] = (real)(0.5 * (qk - share) * scale);
        }
    return -log_bc;
}

void FN(fm_loss)(real *delta, double *sample_loss, double *sample_correct, const real *Z,
                 fm_targets targets, const int64_t *idx, int B, int K, int loss) {
    if (targets.heads) { /* multitask heads: heads.c */
        FN(fm_loss_heads)(delta, sample_loss, sample_correct, Z, targets, idx, B, K);
        return;
    }
    const real *dense = (const real *)targets.dense;
    const real *weights = (const real *)targets.weights;
    const double weight_sum = FN(batch_weight_sum)(weights, idx, B);
    /* the softmax losses' exponentials, FM_CE_BLOCK at a time (exp_rows) */
    const int batched = (loss == FM_CROSS_ENTROPY || loss == FM_KL_DIV) && K <= FM_CE_KEEP;
    const int block_rows = FM_CE_BLOCK / K;
    double pre[FM_CE_BLOCK], sums[FM_CE_BLOCK], lses[FM_CE_BLOCK];
    int tops[FM_CE_BLOCK];
    for (int i = 0; i < B; i++) {
        if (batched && i % block_rows == 0)
            FN(exp_rows)(pre, tops, sums, lses, Z + (size_t)i * K,
                         B - i < block_rows ? B - i : block_rows, K);
        const double *ez = batched ? pre + (size_t)(i % block_rows) * K : NULL;
        const double ez_sum = batched ? sums[i % block_rows] : 0;
        const double ez_lse = batched ? lses[i % block_rows] : 0;
        const int top = batched ? tops[i % block_rows] : -1; /* argmax of the row's logits */
        const int64_t row = idx ? idx[i] : i;
        const double share = FN(sample_share)(weights, weight_sum, row, B);
        const double per_sample = share / B; /* d(batch loss)/d(sample loss) */
        const double per_element = share / ((double)B * K);
        const real *z = Z + (size_t)i * K;
        const real *t = dense ? dense + (size_t)row * K : NULL;
        const int y = targets.labels ? targets.labels[row] : -1;
        real *d = delta ? delta + (size_t)i * K : NULL;
        double l = 0, c = 0;
        switch (loss) {
        case FM_CROSS_ENTROPY:
            l = FN(cross_entropy)(d, per_sample, z, t, y, K, targets.label_smoothing, ez,
                                  ez_sum, ez_lse);
            c = (top >= 0 ? top : FN(argmax)(z, K)) == (t ? FN(argmax)(t, K) : y);
            break;
        case FM_KL_DIV:
            l = FN(cross_entropy)(d, per_sample, z, t, -1, K, 0, ez, ez_sum, ez_lse);
            for (int k = 0; k < K; k++) l += xlogx(t[k]);
            c = FN(argmax)(z, K) == FN(argmax)(t, K);
            break;
        case FM_SYMMETRIC_KL:
            l = FN(symmetric_kl)(d, per_sample, z, t, K);
            c = FN(argmax)(z, K) == FN(argmax)(t, K);
            break;
        case FM_BHATTACHARYYA:
            l = FN(bhattacharyya)(d, per_sample, z, t, K);
            c = FN(argmax)(z, K) == FN(argmax)(t, K);
            break;
        case FM_BINARY_CROSS_ENTROPY:
            for (int k = 0; k < K; k++) {
                const double zk = z[k], tk = t[k];
                l += softplus(zk) - zk * tk;
                c += (zk > 0) == (tk > 0.5);
                if (d) d[k] = (real)((sigmoid(zk) - tk) * per_element);
            }
            l /= K;
            c /= K;
            break;
        case FM_MSE:
            for (int k = 0; k < K; k++) {
                const double e = (double)z[k] - (double)t[k];
                l += e * e;
                if (d) d[k] = (real)(2 * e * per_element);
            }
            l /= K;
            /* class-coded targets (one-hot or +-1 rows; one +-1 output): the largest output
               or, for one output, its sign */
            c = K > 1 ? FN(argmax)(z, K) == FN(argmax)(t, K) : (z[0] > 0) == (t[0] > 0);
            break;
        case FM_HINGE:
            for (int k = 0; k < K; k++) {
                const double tk = t[k], margin = 1 - tk * (double)z[k];
                l += margin > 0 ? margin : 0;
                c += (z[k] > 0) == (tk > 0);
                if (d) d[k] = (real)(margin > 0 ? -tk * per_element : 0);
            }
            l /= K;
            c /= K;
            break;
        case FM_POISSON:
            for (int k = 0; k < K; k++) {
                const double zk = z[k], tk = t[k], mu = exp(zk);
                l += mu - tk * zk + xlogx(tk) - tk;
                if (d) d[k] = (real)((mu - tk) * per_element);
            }
            l /= K;
            break;
        case FM_MULTI_HINGE: {
            int active = 0;
            for (int k = 0; k < K; k++) {
                const double margin = k == y ? 0 : 1 - (double)z[y] + (double)z[k];
                if (margin > 0) {
                    l += margin;
                    active++;
                }
                if (d) d[k] = (real)(margin > 0 ? per_element : 0);
            }
            if (d) d[y] = (real)(-active * per_element);
            l /= K;
            c = FN(argmax)(z, K) == y;
            break;
        }
        default:
            break;
        }
        sample_loss[i] = l * share;
        sample_correct[i] = c * share;
    }
}

/* Y (rows, K) <- softmax of each row, exp(z - log-sum-exp), for rows * K <= FM_CE_BLOCK:
 * the rows' exponentials in two vector calls (exp_rows, then the shifted logits), not two
 * per row (a row of 10 logits alone left the vector exp's pipeline empty: 1.5 % of a
 * one-thread predict of 784-512-256-10). Every element is the value the per-row loop of
 * fm_output_activation gives it: the same sums in the same order, and the vector exp's
 * result depends on an element's value only (vmath.h). */
static void FN(softmax_rows)(real *Y, int rows, int K) {
    double pre[FM_CE_BLOCK], sums[FM_CE_BLOCK], lses[FM_CE_BLOCK];
    int tops[FM_CE_BLOCK];
    FN(exp_rows)(pre, tops, sums, lses, Y, rows, K);
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < K; k++)
            pre[(size_t)i * K + k] = (double)Y[(size_t)i * K + k] - lses[i];
    fm_vmath()->exp_f64(pre, pre, (size_t)rows * K);
    for (size_t j = 0; j < (size_t)rows * K; j++) Y[j] = (real)pre[j];
}

void FN(fm_output_activation)(real *Y, int B, int K, int loss) {
    if (softmax_output(loss) && K <= FM_CE_BLOCK) {
        const int block_rows = FM_CE_BLOCK / K;
        for (int i = 0; i < B; i += block_rows)
            FN(softmax_rows)(Y + (size_t)i * K, B - i < block_rows ? B - i : block_rows, K);
    } else if (softmax_output(loss)) { /* wider rows: one at a time */
        for (int i = 0; i < B; i++) {
            real *y = Y + (size_t)i * K;
            const double lse = FN(log_sum_exp)(y, K);
            double e[FM_CE_KEEP];
            for (int k0 = 0; k0 < K; k0 += FM_CE_KEEP) {
                const int kb = FN(exp_shifted)(e, y, k0, K, lse);
                for (int k = 0; k < kb; k++) y[k0 + k] = (real)e[k];
            }
        }
    } else if (loss == FM_BINARY_CROSS_ENTROPY) {
        for (size_t i = 0; i < (size_t)B * K; i++) Y[i] = (real)sigmoid(Y[i]);
    } else if (loss == FM_POISSON) {
        for (size_t i = 0; i < (size_t)B * K; i++) Y[i] = (real)exp((double)Y[i]);
    }
}
