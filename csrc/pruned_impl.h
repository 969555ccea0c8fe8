/* Template: included by pruned.c through instantiate.h. */

/* yt rows [o0, o1) of yt (O, R) = W^T xt + b, W^T in CSR, xt (I, R): each output row in
 * strips of FM_CSR_STRIP rows held in registers over its non-zeros, in CSR order */
FM_ISA_CLONES
static void FN(csr_rows)(real *restrict yt, const real *restrict xt, const int32_t *rowptr,
                         const int32_t *cols, const real *vals, const real *b, int R, int o0,
                         int o1) {
    for (int o = o0; o < o1; o++) {
        const int32_t k0 = rowptr[o], k1 = rowptr[o + 1];
        real *restrict y = yt + (size_t)o * R;
        int r0 = 0;
        for (; r0 + FM_CSR_STRIP <= R; r0 += FM_CSR_STRIP) {
            real acc[FM_CSR_STRIP];
            for (int r = 0; r < FM_CSR_STRIP; r++) acc[r] = b[o];
            for (int32_t k = k0; k < k1; k++) {
                const real w = vals[k], *restrict x = xt + (size_t)cols[k] * R + r0;
                for (int r = 0; r < FM_CSR_STRIP; r++) acc[r] += w * x[r];
            }
            for (int r = 0; r < FM_CSR_STRIP; r++) y[r0 + r] = acc[r];
        }
        for (int r = r0; r < R; r++) { /* the last rows of a short block */
            real acc = b[o];
            for (int32_t k = k0; k < k1; k++) acc += vals[k] * xt[(size_t)cols[k] * R + r];
            y[r] = acc;
        }
    }
}

/* dst (cols, rows) = src (rows, cols)^T, in tiles that stay in cache */
static void FN(transpose)(real *dst, const real *src, int rows, int cols) {
    enum { T = 32 };
    for (int r0 = 0; r0 < rows; r0 += T)
        for (int c0 = 0; c0 < cols; c0 += T) {
            const int r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
        }
}

void FN(fm_pruned_forward)(real *Y, const real *X, const fm_pruned_csr *w, const real *b, int B, int I,
                        int O, int act, double slope, int nt, real *xt, real *yt) {
    const size_t work = (size_t)B * (size_t)w->rowptr[O];
    const int par = nt > 1 && O > 1 && work >= (size_t)FM_PARALLEL_MIN_MACS;
    const int chunks = par ? nt : 1;
    /* blocks of FM_CSR_ROWS rows, so that the transposed block stays in L2 */
    for (int r0 = 0; r0 < B; r0 += FM_CSR_ROWS) {
        const int R = B - r0 < FM_CSR_ROWS ? B - r0 : FM_CSR_ROWS;
        FN(transpose)(xt, X + (size_t)r0 * I, R, I);
        const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par)
        {
            const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
            for (int c = 0; c < chunks; c++)
                FN(csr_rows)(yt, xt, w->rowptr, w->cols, (const real *)w->vals, b, R,
                             (int)((int64_t)O * c / chunks),
                             (int)((int64_t)O * (c + 1) / chunks));
            fm_fp_part(ft, had);
        }
        FN(transpose)(Y + (size_t)r0 * O, yt, O, R);
    }
    FN(fm_act_forward)(Y, (size_t)B * O, act, slope);
}
