/* Template helpers of the losses (included by losses_impl.h and heads_impl.h): each
 * sample's share of a batch with per-sample weights. */

/* sum(w) over the batch rows idx[0..B) (idx NULL: rows 0..B); 0 when weights is NULL */
static double FN(batch_weight_sum)(const real *weights, const int64_t *idx, int B) {
    double sum = 0;
    if (weights)
        for (int i = 0; i < B; i++) sum += weights[idx ? idx[i] : i];
    return sum;
}

/* row's share of the batch: 1 unweighted, w_row * B / sum(w) weighted (0 when sum(w) is 0) */
static inline double FN(sample_share)(const real *weights, double weight_sum, int64_t row,
                                      int B) {
    return !weights ? 1.0 : weight_sum > 0 ? (double)weights[row] * B / weight_sum : 0.0;
}
