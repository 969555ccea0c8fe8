/* Template: included by heads.c through instantiate.h. */
#include "shares_impl.h"

/* Z (B, K), delta (B, K) or NULL, sample_loss (B), sample_correct (B) */
void FN(fm_loss_heads)(real *delta, double *sample_loss, double *sample_correct, const real *Z,
                       fm_targets targets, const int64_t *idx, int B, int K) {
    const real *dense = (const real *)targets.dense;
    const real *weights = (const real *)targets.weights;
    const double weight_sum = FN(batch_weight_sum)(weights, idx, B);
    for (int i = 0; i < B; i++) {
        const int64_t row = idx ? idx[i] : i;
        const double share = FN(sample_share)(weights, weight_sum, row, B);
        const real *z = Z + (size_t)i * K, *t = dense + (size_t)row * K;
        real *d = delta ? delta + (size_t)i * K : NULL;
        double l = 0;
        for (int h = 0; h < targets.n_heads; h++) {
            const fm_head *hd = &targets.heads[h];
            real *dh = d ? d + hd->offset : NULL;
            if (hd->weight == 0) { /* no influence, even where its loss is not finite */
                if (dh)
                    for (int k = 0; k < hd->width; k++) dh[k] = 0;
                continue;
            }
            /* the head's targets as one sample of fm_loss: a label or its target values */
            const int32_t y = hd->labels ? (int32_t)t[hd->offset] : -1;
            const fm_targets one = {.labels = hd->labels ? &y : NULL,
                                    .dense = hd->labels ? NULL : t + hd->offset,
                                    .label_smoothing = hd->label_smoothing};
            double lh, ch;
            FN(fm_loss)(dh, &lh, &ch, z + hd->offset, one, NULL, 1, hd->width, hd->loss);
            l += hd->weight * lh;
            if (dh) { /* d(sample loss)/dz of one sample -> d(objective)/dz */
                const double scale = hd->weight * share / B;
                for (int k = 0; k < hd->width; k++) dh[k] = (real)((double)dh[k] * scale);
            }
        }
        sample_loss[i] = l * share;
        sample_correct[i] = 0;
    }
}
