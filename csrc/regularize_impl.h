/* Template: included by regularize.c through instantiate.h. */

void FN(fm_dropout_mask)(real *mask, int B, int n, double p, int classic, uint64_t base) {
    const real keep = classic ? (real)1 : (real)(1.0 / (1.0 - p));
    const size_t count = (size_t)B * n;
    for (size_t i = 0; i < count; i++) mask[i] = fm_unit(fm_hash_at(base, i)) >= p ? keep : 0;
}

void FN(fm_mul)(real *y, const real *x, const real *m, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] * m[i];
}

void FN(fm_scale)(real *x, size_t n, double s) {
    const real f = (real)s;
    for (size_t i = 0; i < n; i++) x[i] *= f;
}

void FN(fm_bn_forward_train)(real *y, real *xhat, real *mean, real *var, const real *x,
                             const real *gamma, const real *beta, int B, int n, double eps) {
    for (int j = 0; j < n; j++) mean[j] = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < n; j++) mean[j] += x[(size_t)i * n + j];
    for (int j = 0; j < n; j++) {
        mean[j] /= B;
        var[j] = 0;
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < n; j++) {
            const real d = x[(size_t)i * n + j] - mean[j];
            var[j] += d * d;
        }
    for (int j = 0; j < n; j++) var[j] /= B;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < n; j++) {
            const size_t k = (size_t)i * n + j;
            xhat[k] = (x[k] - mean[j]) / (real)sqrt((double)var[j] + eps);
            y[k] = gamma[j] * xhat[k] + beta[j];
        }
}

void FN(fm_bn_forward_infer)(real *y, real *xhat, const real *x, const real *gamma,
                             const real *beta, const real *rmean, const real *rvar, int B, int n,
                             double eps) {
    for (int i = 0; i < B; i++)
        for (int j = 0; j < n; j++) {
            const size_t k = (size_t)i * n + j;
            const real xh = (x[k] - rmean[j]) / (real)sqrt((double)rvar[j] + eps);
            if (xhat) xhat[k] = xh;
            y[k] = gamma[j] * xh + beta[j];
        }
}

void FN(fm_bn_backward)(real *dx, real *dgamma, real *dbeta, const real *dy, const real *xhat,
                        const real *var, const real *gamma, int B, int n, double eps,
                        int training) {
    for (int j = 0; j < n; j++) dgamma[j] = dbeta[j] = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < n; j++) {
            const size_t k = (size_t)i * n + j;
            dgamma[j] += dy[k] * xhat[k];
            dbeta[j] += dy[k];
        }
    /* training: dx = gamma/(B sigma) (B dy - sum dy - xhat sum(dy xhat)); else gamma/sigma dy */
    for (int i = 0; i < B; i++)
        for (int j = 0; j < n; j++) {
            const size_t k = (size_t)i * n + j;
            const real scale = gamma[j] / (real)sqrt((double)var[j] + eps);
            dx[k] = training ? scale * (dy[k] - (dbeta[j] + xhat[k] * dgamma[j]) / (real)B)
                             : scale * dy[k];
        }
}

void FN(fm_bn_update_running)(real *running, const real *mean, const real *var, int B, int n,
                              double momentum) {
    const real m = (real)momentum, keep = (real)(1 - momentum);
    const real unbias = (real)((double)B / (B - 1));
    for (int j = 0; j < n; j++) {
        running[j] = keep * running[j] + m * mean[j];
        running[n + j] = keep * running[n + j] + m * (var[j] * unbias);
    }
}

/* x (H, W, C) <- x mapped by the 2x2 matrix A about the image centre: out(p) = in(c +
 * A^-1 (p - c)) with p = (column, row), bilinear, 0 outside; inv = A^-1 row-major; tmp (n) */
static void FN(affine_image)(real *x, real *tmp, int H, int W, int C, const double inv[4]) {
    const double cy = 0.5 * (H - 1), cx = 0.5 * (W - 1);
    memcpy(tmp, x, (size_t)H * W * C * sizeof(real));
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            const double dx = c - cx, dy = r - cy;
            const double sx = inv[0] * dx + inv[1] * dy + cx, sy = inv[2] * dx + inv[3] * dy + cy;
            const double fx0 = floor(sx), fy0 = floor(sy);
            const double fx = sx - fx0, fy = sy - fy0;
            const double w[4] = {(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx};
            for (int ch = 0; ch < C; ch++) {
                double v = 0;
                for (int k = 0; k < 4; k++) {
                    const double yy = fy0 + (k >> 1), xx = fx0 + (k & 1);
                    if (yy >= 0 && yy < H && xx >= 0 && xx < W)
                        v += w[k] * (double)tmp[((size_t)yy * W + (size_t)xx) * C + ch];
                }
                x[((size_t)r * W + c) * C + ch] = (real)v;
            }
        }
}

void FN(fm_augment)(real *X, real *tmp, int B, int n, const fm_augment *aug,
                    const fm_input *transform, uint64_t key, uint64_t counter, int64_t row0) {
    if (aug->rotate > 0 || aug->scale > 0 || aug->shear > 0) {
        const uint64_t base =  /* three draws a row, from the row's place in the batch */
            fm_stream_skip(fm_stream_base(key, counter, FM_STREAM_AFFINE), 3 * (uint64_t)row0);
        for (int i = 0; i < B; i++) {
            double inv[4];
            fm_affine_inverse(inv, aug, base, i);
            FN(affine_image)(X + (size_t)i * n, tmp, aug->height, aug->width, aug->channels, inv);
        }
    }
    if (aug->shift > 0) {
        const uint64_t base =
            fm_stream_skip(fm_stream_base(key, counter, FM_STREAM_SHIFT), 2 * (uint64_t)row0);
        const int H = aug->height, W = aug->width, C = aug->channels, k = aug->shift;
        for (int i = 0; i < B; i++) {
            /* content moves by (dy, dx): out[r][c] = in[r - dy][c - dx], zero outside */
            const int dy = (int)(fm_unit(fm_hash_at(base, 2 * (uint64_t)i)) * (2 * k + 1)) - k;
            const int dx = (int)(fm_unit(fm_hash_at(base, 2 * (uint64_t)i + 1)) * (2 * k + 1)) - k;
            real *x = X + (size_t)i * n;
            memcpy(tmp, x, (size_t)n * sizeof(real));
            for (int r = 0; r < H; r++)
                for (int c = 0; c < W; c++) {
                    const int sr = r - dy, sc = c - dx;
                    const int inside = sr >= 0 && sr < H && sc >= 0 && sc < W;
                    for (int ch = 0; ch < C; ch++)
                        x[((size_t)r * W + c) * C + ch] =
                            inside ? tmp[((size_t)sr * W + sc) * C + ch] : (real)0;
                }
        }
    }
    if (transform) FN(fm_input_transform)(X, transform, B, n);
    if (aug->noise_std > 0) {
        const uint64_t base = fm_stream_skip(fm_stream_base(key, counter, FM_STREAM_NOISE),
                                             2 * (uint64_t)row0 * (uint64_t)n);
        const size_t count = (size_t)B * n;
        for (size_t i = 0; i < count; i++) {
            /* Box-Muller from two draws per element */
            const double u1 = fm_unit(fm_hash_at(base, 2 * i));
            const double u2 = fm_unit(fm_hash_at(base, 2 * i + 1));
            const double z = sqrt(-2.0 * log1p(-u1)) * cos(6.283185307179586 * u2);
            X[i] += (real)(aug->noise_std * z);
        }
    }
}
