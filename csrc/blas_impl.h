/* Template: included by blas.c through instantiate.h. */

#ifndef FM_BLAS_CONSTANTS
#define FM_BLAS_CONSTANTS
enum { FM_BLAS_EPI_NONE, FM_BLAS_EPI_BIAS_ACT, FM_BLAS_EPI_ACT_GRAD };
#endif

/* C (R, N), row-major with row stride ldc, = op(M1) op(M2) in blocks of FM_BLAS_ROWS x
 * FM_BLAS_COLS, each one BLAS call, written in the BLAS's column-major terms: the block
 * (r0, j0) of C^T (nb, rb) = op_a(A + j0 * a_step) (nb, K) op_b(Bm + r0 * b_step) (K, rb).
 * After each call the epilogue adds bias (N) and applies the activation
 * (FM_BLAS_EPI_BIAS_ACT) or multiplies by act'(Aact (R, N), row stride ldc)
 * (FM_BLAS_EPI_ACT_GRAD), while the block is in cache. Blocks are column-major, so that
 * a thread's consecutive blocks share their columns (its own weights). */
static void FN(blocked_gemm)(real *C, int ldc, char ta, const real *A, int lda, size_t a_step,
                             char tb, const real *Bm, int ldb, size_t b_step, int R, int N,
                             int K, int epilogue, const real *bias, const real *Aact, int act,
                             double slope, int nt) {
    const int row_blocks = (R + FM_BLAS_ROWS - 1) / FM_BLAS_ROWS;
    const int blocks = row_blocks * ((N + FM_BLAS_COLS - 1) / FM_BLAS_COLS);
    const int par = blas_team(nt, blocks, (double)R * N * K);
    hold_blas();
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (int blk = 0; blk < blocks; blk++) {
            const int r0 = (blk % row_blocks) * FM_BLAS_ROWS;
            const int j0 = (blk / row_blocks) * FM_BLAS_COLS;
            int rb = R - r0 < FM_BLAS_ROWS ? R - r0 : FM_BLAS_ROWS;
            int nb = N - j0 < FM_BLAS_COLS ? N - j0 : FM_BLAS_COLS;
            int k = K, la = lda, lb = ldb, lc = ldc;
            char opa = ta, opb = tb;
            real one = 1, zero = 0;
            real *c = C + (size_t)r0 * ldc + j0;
#ifdef FM_REAL_IS_FLOAT
            gemm_f32(&opa, &opb, &nb, &rb, &k, &one, (real *)A + (size_t)j0 * a_step, &la,
                     (real *)Bm + (size_t)r0 * b_step, &lb, &zero, c, &lc);
#else
            gemm_f64(&opa, &opb, &nb, &rb, &k, &one, (real *)A + (size_t)j0 * a_step, &la,
                     (real *)Bm + (size_t)r0 * b_step, &lb, &zero, c, &lc);
#endif
            for (int r = 0; r < rb && epilogue != FM_BLAS_EPI_NONE; r++) {
                real *row = c + (size_t)r * ldc;
                if (epilogue == FM_BLAS_EPI_BIAS_ACT) {
                    for (int j = 0; j < nb; j++) row[j] += bias[j0 + j];
                    FN(fm_act_forward)(row, (size_t)nb, act, slope);
                } else {
                    FN(fm_act_backward)(row, Aact + (size_t)(r0 + r) * ldc + j0, (size_t)nb,
                                        act, slope);
                }
            }
        }
        fm_fp_part(ft, had);
    }
    release_blas();
}

void FN(fm_blas_forward)(real *Y, const real *X, const real *W, const real *b, int B, int I,
                         int O, int act, double slope, int nt) {
    fm_kernels(); /* counts the call for the active (BLAS) set */
    /* Y^T block (nb, rb) = W[:, j0:]^T (nb, I) X[r0:]^T (I, rb): both as stored */
    FN(blocked_gemm)(Y, O, 'N', W, O, 1, 'N', X, I, (size_t)I, B, O, I, FM_BLAS_EPI_BIAS_ACT, b,
                     NULL, act, slope, nt);
}

void FN(fm_blas_backward_params)(real *dW, real *db, const real *X, const real *D, int B, int I,
                                 int O, int nt) {
    fm_kernels();
    /* dW^T block (nb, rb) = D[:, j0:]^T (nb, B) X[:, r0:] (B, rb) */
    FN(blocked_gemm)(dW, O, 'N', D, O, 1, 'T', X, I, 1, I, O, B, FM_BLAS_EPI_NONE, NULL, NULL,
                     0, 0, nt);
    for (int j = 0; j < O; j++) db[j] = 0;
    for (int i = 0; i < B; i++) { /* rows in order: any thread count, the same sums */
        const real *d = D + (size_t)i * O;
        for (int j = 0; j < O; j++) db[j] += d[j];
    }
}

void FN(fm_blas_backward_input)(real *dX, const real *D, const real *W, const real *A, int B,
                                int I, int O, int act, double slope, int nt) {
    fm_kernels();
    /* dX^T block (nb, rb) = W[j0:, :] (nb, O) D[r0:]^T (O, rb) */
    FN(blocked_gemm)(dX, I, 'T', W, O, (size_t)O, 'N', D, O, (size_t)O, B, I, O,
                     A ? FM_BLAS_EPI_ACT_GRAD : FM_BLAS_EPI_NONE, NULL, A, act, slope, nt);
}
