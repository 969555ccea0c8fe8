/* Template: included by sparse.c through instantiate.h. */

#ifndef FM_SPARSE_CONSTANTS
#define FM_SPARSE_CONSTANTS
#define FM_CSR_UNIT 16 /* columns of dW a thread's block is a multiple of (row-major) */
#define FM_CSR_ROW_CHUNK 8 /* rows of Y a thread takes at a time */
#endif

/* Entries of the batch's rows (the work of a pass is about that many times O). */
static int64_t FN(batch_entries)(const fm_csr *X, const int64_t *rows, int64_t r0, int B) {
    int64_t nnz = 0;
    for (int i = 0; i < B; i++) {
        const int64_t r = rows ? rows[i] : r0 + i;
        nnz += X->indptr[r + 1] - X->indptr[r];
    }
    return nnz;
}

/* y (O) = b (O) + sum over the row's nnz entries (cols[e], vals[e]) of vals[e] * W[cols[e], :],
 * in stored order; W row-major (nr == 0) or in panels of nr columns. */
FM_ISA_CLONES
static void FN(csr_row_forward)(real *y, const real *vals, const int32_t *cols, int64_t nnz,
                                const real *W, const real *b, int I, int O, int nr) {
    for (int j = 0; j < O; j++) y[j] = b[j];
    for (int64_t e = 0; e < nnz; e++) {
        const real x = vals[e];
        if (!nr) {
            const real *w = W + (size_t)cols[e] * O;
            for (int j = 0; j < O; j++) y[j] += x * w[j];
            continue;
        }
        for (int p = 0; p < O / nr; p++) {
            const real *w = W + (size_t)p * I * nr + (size_t)cols[e] * nr;
            real *yp = y + (size_t)p * nr;
            for (int j = 0; j < nr; j++) yp[j] += x * w[j];
        }
    }
}

void FN(fm_csr_forward)(real *Y, const fm_csr *X, const int64_t *rows, int64_t r0, const real *W,
                        const real *b, int B, int I, int O, int act, double slope, int nt,
                        int nr) {
    const real *data = (const real *)X->data;
    const int par = nt > 1 && B > 1 &&
                    (double)(FN(batch_entries)(X, rows, r0, B) + B) * O >= FM_PARALLEL_MIN_MACS;
    /* any row-to-thread assignment gives the same bits: rows are balanced dynamically */
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(dynamic, FM_CSR_ROW_CHUNK) nowait
        for (int i = 0; i < B; i++) {
            const int64_t r = rows ? rows[i] : r0 + i;
            const int64_t s = X->indptr[r], e = X->indptr[r + 1];
            real *y = Y + (size_t)i * O;
            FN(csr_row_forward)(y, data + s, X->indices + s, e - s, W, b, I, O, nr);
            FN(fm_act_forward)(y, (size_t)O, act, slope);
        }
        fm_fp_part(ft, had);
    }
}

/* Columns [c0, c1) of dW (zeroed first) += X[rows]^T D and of db = column sums of D, over
 * the batch rows in order; with panels (nr > 0) c0 and c1 are multiples of nr. */
FM_ISA_CLONES
static void FN(csr_scatter)(real *dW, real *db, const fm_csr *X, const int64_t *rows,
                            int64_t r0, const real *D, int B, int I, int O, int nr, int c0,
                            int c1) {
    const real *data = (const real *)X->data;
    const int w = c1 - c0;
    for (int k = 0; k < I; k++) {
        if (!nr) {
            memset(dW + (size_t)k * O + c0, 0, (size_t)w * sizeof(real));
            continue;
        }
        for (int p = c0 / nr; p < c1 / nr; p++)
            memset(dW + (size_t)p * I * nr + (size_t)k * nr, 0, (size_t)nr * sizeof(real));
    }
    for (int j = c0; j < c1; j++) db[j] = 0;
    for (int i = 0; i < B; i++) {
        const int64_t r = rows ? rows[i] : r0 + i;
        const real *d = D + (size_t)i * O;
        for (int j = c0; j < c1; j++) db[j] += d[j];
        for (int64_t e = X->indptr[r]; e < X->indptr[r + 1]; e++) {
            const real x = data[e];
            const size_t k = (size_t)X->indices[e];
            if (!nr) {
                real *g = dW + k * O;
                for (int j = c0; j < c1; j++) g[j] += x * d[j];
                continue;
            }
            for (int p = c0 / nr; p < c1 / nr; p++) {
                real *g = dW + (size_t)p * I * nr + k * nr;
                const real *dp = d + (size_t)p * nr;
                for (int j = 0; j < nr; j++) g[j] += x * dp[j];
            }
        }
    }
}

void FN(fm_csr_backward_params)(real *dW, real *db, const fm_csr *X, const int64_t *rows,
                                int64_t r0, const real *D, int B, int I, int O, int nt, int nr) {
    const int unit = nr ? nr : FM_CSR_UNIT, units = (O + unit - 1) / unit;
    const double work = (double)FN(batch_entries)(X, rows, r0, B) * O + (double)I * O;
    const int teams = nt > 1 && units > 1 && work >= FM_PARALLEL_MIN_MACS
                          ? (nt < units ? nt : units)
                          : 1;
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(teams) if (teams > 1)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (int t = 0; t < teams; t++) {
            const int c0 = (int)((int64_t)units * t / teams) * unit;
            const int c1u = (int)((int64_t)units * (t + 1) / teams) * unit;
            FN(csr_scatter)(dW, db, X, rows, r0, D, B, I, O, nr, c0, c1u < O ? c1u : O);
        }
        fm_fp_part(ft, had);
    }
}
