/* Template: included by losses.c through instantiate.h. */

static int FN(argmax)(const real *z, int K) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best]) best = k;
    return best;
}

/* Cross-entropy of softmax(z) for one sample; t NULL means the label y. Up to
 * FM_CE_KEEP classes keep exp(z_k - max) for the delta: one exp per logit, not two. */
static double FN(cross_entropy)(real *d, double scale, const real *z, const real *t, int y, int K) {
    const int am = FN(argmax)(z, K);
    const double m = z[am];
    double e[FM_CE_KEEP];
    const int keep = d && K <= FM_CE_KEEP;
    double s = 0;
    for (int k = 0; k < K; k++) {
        const double ek = exp((double)z[k] - m);
        if (keep) e[k] = ek;
        s += ek;
    }
    const double lse = m + log(s);
    double loss, tsum = 1;
    if (t) {
        loss = 0;
        tsum = 0;
        for (int k = 0; k < K; k++) {
            if (t[k] != 0) loss += (double)t[k] * (lse - (double)z[k]);
            tsum += t[k];
        }
    } else {
        loss = lse - (double)z[y];
    }
    if (d)
        for (int k = 0; k < K; k++) {
            const double target = t ? (double)t[k] : (double)(k == y);
            const double pk = keep ? e[k] / s : exp((double)z[k] - lse);
            d[k] = (real)((pk * tsum - target) * scale);
        }
    return loss;
}

void FN(fm_loss)(real *delta, double *sample_loss, double *sample_correct, const real *Z,
                 fm_targets targets, const int64_t *idx, int B, int K, int loss) {
    const real *dense = (const real *)targets.dense;
    const real *weights = (const real *)targets.weights;
    double weight_sum = 0;
    if (weights)
        for (int i = 0; i < B; i++) weight_sum += weights[idx ? idx[i] : i];
    for (int i = 0; i < B; i++) {
        const int64_t row = idx ? idx[i] : i;
        /* this sample's share of the batch: 1 unweighted, w_i * B / sum(w) weighted */
        const double share =
            !weights ? 1.0 : weight_sum > 0 ? (double)weights[row] * B / weight_sum : 0.0;
        const double per_sample = share / B; /* d(batch loss)/d(sample loss) */
        const double per_element = share / ((double)B * K);
        const real *z = Z + (size_t)i * K;
        const real *t = dense ? dense + (size_t)row * K : NULL;
        const int y = targets.labels ? targets.labels[row] : -1;
        real *d = delta ? delta + (size_t)i * K : NULL;
        double l = 0, c = 0;
        switch (loss) {
        case FM_CROSS_ENTROPY:
            l = FN(cross_entropy)(d, per_sample, z, t, y, K);
            c = FN(argmax)(z, K) == (t ? FN(argmax)(t, K) : y);
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

void FN(fm_output_activation)(real *Y, int B, int K, int loss) {
    if (loss == FM_CROSS_ENTROPY) {
        for (int i = 0; i < B; i++) {
            real *y = Y + (size_t)i * K;
            const double m = y[FN(argmax)(y, K)];
            double s = 0;
            for (int k = 0; k < K; k++) s += exp((double)y[k] - m);
            const double lse = m + log(s);
            for (int k = 0; k < K; k++) y[k] = (real)exp((double)y[k] - lse);
        }
    } else if (loss == FM_BINARY_CROSS_ENTROPY) {
        for (size_t i = 0; i < (size_t)B * K; i++) Y[i] = (real)sigmoid(Y[i]);
    } else if (loss == FM_POISSON) {
        for (size_t i = 0; i < (size_t)B * K; i++) Y[i] = (real)exp((double)Y[i]);
    }
}
