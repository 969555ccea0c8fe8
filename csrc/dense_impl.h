/* Template: included by dense.c through instantiate.h. */

#ifndef FM_DENSE_CONSTANTS
#define FM_DENSE_CONSTANTS
#define FM_MR 4  /* rows of a tile */
#define FM_NB 64 /* columns of a tile */
#define FM_DOT 16 /* partial sums per dot product */
enum { FM_EPI_NONE, FM_EPI_ACT, FM_EPI_ACT_GRAD };
/* packed_product's operands kept in panel layout (layout.c) */
enum { FM_ROW_MAJOR = 0, FM_C_PANELS = 1, FM_M_PANELS = 2 };
#define FM_BLOCK_AHEAD 2 /* blocks of a transposed panel fetched ahead of their use */
/* Outputs from which packed_product fetches each tile's output rows ahead: smaller ones
 * stay in L2 between steps (a small fit spent 2-3% of its time on those prefetches).
 * Smaller outputs computed by one thread also take their activation in one pass after the
 * product instead of one call per tile row (as many calls as multiply-adds per row when
 * the product is short: the backward pass of a 10-unit output layer). */
#define FM_FETCH_MIN_BYTES ((size_t)256 << 10)
/* The widest weight gradient computed transposed (narrow_backward_params) */
#define FM_NARROW_MAX 16
#endif

/* C (rb, N) = init (N) + sum_k a(r, k) * Bm (K, N), with a(r, k) = A[r*sr + k*sk].
 * init NULL means zero. rb <= FM_MR. Column blocks of FM_NB keep the tile in L1. */
FM_ISA_CLONES
static void FN(tile_gemm)(real *C, int ldc, const real *A, size_t sr, size_t sk, const real *Bm,
                          int ldb, int rb, int K, int N, const real *init) {
    for (int j0 = 0; j0 < N; j0 += FM_NB) {
        const int nb = N - j0 < FM_NB ? N - j0 : FM_NB;
        real acc[FM_MR][FM_NB];
        for (int r = 0; r < rb; r++)
            for (int j = 0; j < nb; j++) acc[r][j] = init ? init[j0 + j] : (real)0;
        for (int k = 0; k < K; k++) {
            const real *b = Bm + (size_t)k * ldb + j0;
            for (int r = 0; r < rb; r++) {
                const real a = A[r * sr + k * sk];
                for (int j = 0; j < nb; j++) acc[r][j] += a * b[j];
            }
        }
        for (int r = 0; r < rb; r++)
            for (int j = 0; j < nb; j++) C[(size_t)r * ldc + j0 + j] = acc[r][j];
    }
}

/* Y (rb, I) = D (rb, O) @ W (I, O)^T: each element a dot product of two rows,
 * summed in FM_DOT fixed partial sums. */
FM_ISA_CLONES
static void FN(tile_dots)(real *Y, const real *D, const real *W, int rb, int I, int O) {
    const int Ofull = O - O % FM_DOT;
    for (int k = 0; k < I; k++) {
        const real *w = W + (size_t)k * O;
        real acc[FM_MR][FM_DOT];
        for (int r = 0; r < rb; r++)
            for (int t = 0; t < FM_DOT; t++) acc[r][t] = 0;
        for (int j = 0; j < Ofull; j += FM_DOT)
            for (int r = 0; r < rb; r++)
                for (int t = 0; t < FM_DOT; t++) acc[r][t] += D[(size_t)r * O + j + t] * w[j + t];
        for (int r = 0; r < rb; r++) {
            for (int j = Ofull; j < O; j++) acc[r][j - Ofull] += D[(size_t)r * O + j] * w[j];
            real s = 0;
            for (int t = 0; t < FM_DOT; t++) s += acc[r][t];
            Y[(size_t)r * I + k] = s;
        }
    }
}

/* The tile kernels of this dtype in the selected ISA set (tile NULL: the portable C
 * tiles, FM_MR x FM_NB); returns the set, for its other kernels. */
static const fm_kernel_set *FN(kernels)(int *mr, int *nr, FN(fm_tile_fn) *tile,
                                        FN(fm_pack_t_fn) *pack_t) {
    const fm_kernel_set *k = fm_kernels();
    const FN(fm_tiles) *t = FN(fm_tiles_of)(k);
    *mr = t->tile ? t->mr : FM_MR;
    *nr = t->tile ? t->nr : FM_NB;
    *tile = t->tile;
    *pack_t = t->pack_t;
    return k;
}

/* C tile through the selected kernel (or the portable one) */
static void FN(run_tile)(FN(fm_tile_fn) tile, real *C, int ldc, const real *A, size_t sr,
                         size_t sk, const real *Bm, int ldb, int rb, int K, int nb,
                         const real *init) {
    if (tile) {
        tile(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);
        return;
    }
    FN(tile_gemm)(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);
}

typedef real FN(vec) __attribute__((vector_size(32))); /* one 32-byte vector */
#define FM_VEC_LANES ((int)(sizeof(FN(vec)) / sizeof(real)))

/* buf (rows, nr) = columns [c0, c0 + n * FM_VEC_LANES) of M (rows, ld), n (1 or 2) vectors
 * a row, and sums (that many) = their column sums, rows in order: each vector's sum one
 * chain of additions in a register (two vectors: two independent chains, so the adds'
 * latency overlaps; gcc kept an array of sums in memory) */
static inline __attribute__((always_inline)) void FN(pack_sum_vectors)(
    real *buf, int nr, const real *M, int ld, int rows, int c0, int n, real *sums) {
    FN(vec) acc[2] = {{0}, {0}};
    for (int k = 0; k < rows; k++) {
        const real *src = M + (size_t)k * ld + c0;
        real *dst = buf + (size_t)k * nr;
        for (int v = 0; v < n; v++) { /* a constant size: one vector move each */
            FN(vec) x;
            memcpy(&x, src + v * FM_VEC_LANES, sizeof x);
            memcpy(dst + v * FM_VEC_LANES, &x, sizeof x);
            acc[v] += x;
        }
    }
    memcpy(sums, acc, (size_t)n * sizeof(FN(vec)));
}

/* buf (rows, nr) = columns [j0, j0 + nb) of M (rows, ld): a contiguous panel, free of the
 * cache-set conflicts that a large power-of-two row stride causes. With `sums`, also
 * sums (nb) = the panel's column sums, rows in order (accumulated in registers: a second
 * pass over the panel cost more than the copy): pairs of vectors of columns, then one,
 * then the last columns that fill no vector one by one (the same additions in the same
 * order as in a vector's lane; as vectors of variable width they were copied byte by
 * byte). */
FM_ISA_CLONES
static void FN(pack_panel)(real *buf, int nr, const real *M, int ld, int rows, int j0, int nb,
                           real *sums) {
    if (sums) {
        int c0 = 0;
        for (; c0 + 2 * FM_VEC_LANES <= nb; c0 += 2 * FM_VEC_LANES)
            FN(pack_sum_vectors)(buf + c0, nr, M, ld, rows, j0 + c0, 2, sums + c0);
        for (; c0 + FM_VEC_LANES <= nb; c0 += FM_VEC_LANES)
            FN(pack_sum_vectors)(buf + c0, nr, M, ld, rows, j0 + c0, 1, sums + c0);
        const int w = nb - c0; /* < FM_VEC_LANES */
        real acc[FM_VEC_LANES] = {0};
        for (int k = 0; k < rows && w > 0; k++) {
            const real *src = M + (size_t)k * ld + j0 + c0;
            real *dst = buf + (size_t)k * nr + c0;
            for (int j = 0; j < w; j++) {
                dst[j] = src[j];
                acc[j] += src[j];
            }
        }
        for (int j = 0; j < w; j++) sums[c0 + j] = acc[j];
        return;
    }
    for (int k = 0; k < rows; k++) {
        const real *src = M + (size_t)k * ld + j0;
        real *dst = buf + (size_t)k * nr;
        for (int j = 0; j < nb; j++) dst[j] = src[j];
    }
}

/* Whether the caller runs inside an active OpenMP parallel region (an orphaned `omp for`
 * would split its loop over that region's team) */
static int FN(in_parallel)(void) {
#ifdef FASTMLP_HAVE_OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}


/* The k-block of a product over K through panels of nr columns: K itself when the panel
 * fits the derived block (cpuinfo.c), else K split into equal blocks no deeper than it
 * (a 5000-deep product on a 1 MiB L2, float32 nr 32: 3 blocks of 1667). A forced block is
 * used as it is. */
static int FN(k_block)(int K, int nr) {
    const int kc = fm_block_k(nr, sizeof(real));
    if (K <= kc || fm_blocking_forced()) return kc < K ? kc : K;
    const int blocks = (K + kc - 1) / kc;
    return (K + blocks - 1) / blocks;
}

typedef struct { /* one packed_product call: its operands and blocking */
    FN(fm_tile_fn) tile;
    FN(fm_pack_t_fn) pack_t;
    int mr, nr, ldc, ldm, transposed, R, K, N, each, act, layout, kc, mc, span, fetch;
    size_t sr, sk, stride;
    real *C, *pack, *colsum;
    const real *A, *Ms, *init, *Aact, *prepacked;
    double slope;
    const FN(fm_update) * upd; /* the optimizer update of C's elements (C in upd->grads) */
} FN(product);

/* The optimizer update of a finished block of n contiguous gradient elements at c (a
 * tile of a panel-layout gradient, rows nr apart and nr wide; a narrow layer's rows),
 * while it is in cache */
static void FN(update_tile)(const FN(fm_update) * u, const real *c, size_t n) {
    FN(fm_update_range)(u, (size_t)(c - u->grads), n);
}

/* packed_product's work items, split over the threads of the enclosing parallel region,
 * or all run by the caller outside any active one (a one-thread product opens no OpenMP
 * region: a GOMP call and an outlined function per product) */
static void FN(product_items)(const FN(product) *job) {
    FN(fm_tile_fn) tile = job->tile;
    FN(fm_pack_t_fn) pack_t = job->pack_t;
    const int mr = job->mr, nr = job->nr, ldc = job->ldc, ldm = job->ldm;
    const int R = job->R, K = job->K, N = job->N, kc = job->kc, mc = job->mc;
    const int fetch = job->fetch, layout = job->layout, each = job->each;
    const int panels = (N + nr - 1) / nr, groups = (R + mc - 1) / mc;
    const int span = job->span / mc < groups ? job->span / mc : groups; /* groups a span */
    const size_t sr = job->sr, sk = job->sk;
    real *C = job->C, *colsum = job->colsum;
    const real *A = job->A, *Ms = job->Ms, *init = job->init, *Aact = job->Aact;
    const real *prepacked = job->prepacked;
    real *buf = job->pack + (size_t)fm_thread_rank() * job->stride;
    const real *panel = buf;
    int packed = -1;
#pragma omp for schedule(static) nowait
    for (int item = 0; item < panels * groups; item++) { /* spans of rows, in each every
        panel, in each panel the span's row groups */
        const int first = item / (panels * span) * span, at = item % (panels * span);
        const int in_span = groups - first < span ? groups - first : span;
        const int p = at / in_span, g = first + at % in_span;
        const int j0 = p * nr, nb = N - j0 < nr ? N - j0 : nr;
        if (p != packed && prepacked) { /* panels made once, outside (predict) */
            panel = prepacked + (size_t)p * K * nr;
            packed = p;
        } else if (p != packed) {
            if (!job->transposed) {
                FN(pack_panel)(buf, nr, Ms, ldm, K, j0, nb,
                               colsum && g == 0 ? colsum + j0 : NULL);
            } else if (layout & FM_M_PANELS) { /* K is a multiple of nr */
                const size_t bsize = (size_t)nb * nr; /* a block: nb rows of nr */
                for (int P = 0; P < K / nr; P++) {
                    const real *blk = Ms + (size_t)P * N * nr + (size_t)j0 * nr;
                    real *dst = buf + (size_t)P * nr * nr;
                    if (P + FM_BLOCK_AHEAD < K / nr) /* blocks lie N * nr apart: one
                        stream each, too short for the hardware to fetch ahead */
                        for (size_t e = 0; e < bsize; e += 64 / sizeof(real))
                            __builtin_prefetch(blk + (size_t)FM_BLOCK_AHEAD * N * nr + e, 0);
                    if (pack_t) {
                        pack_t(dst, nr, blk, nr, nb, nr);
                    } else {
                        for (int q = 0; q < nb; q++)
                            for (int k = 0; k < nr; k++)
                                dst[(size_t)k * nr + q] = blk[(size_t)q * nr + k];
                    }
                }
            } else if (pack_t) {
                pack_t(buf, nr, Ms + (size_t)j0 * ldm, ldm, nb, K);
            } else {
                for (int q = 0; q < nb; q++) { /* column q of the panel: row j0+q of Ms */
                    const real *m = Ms + (size_t)(j0 + q) * ldm;
                    for (int k = 0; k < K; k++) buf[(size_t)k * nr + q] = m[k];
                }
            }
            packed = p;
        }
        const int r_end = (g + 1) * mc < R ? (g + 1) * mc : R;
        for (int k0 = 0; k0 < K; k0 += kc) { /* the group's tiles over one k-block of
            the panel (kc x nr, in L1), each continuing from its output (gemm.h) */
            const int kb = K - k0 < kc ? K - k0 : kc;
            for (int r0 = g * mc; r0 < r_end; r0 += mr) {
                const int rb = r_end - r0 < mr ? r_end - r0 : mr;
                const int ldt = layout & FM_C_PANELS ? nr : ldc; /* C tile's row stride */
                real *c = layout & FM_C_PANELS ? C + (size_t)p * R * nr + (size_t)r0 * nr
                                               : C + (size_t)r0 * ldc + j0;
                for (int r = 0; r < rb && fetch && k0 == 0; r++) { /* the tile's output
                    (and the epilogue's activations) may be out of L2 in large batches:
                    fetched while it runs */
                    for (int j = 0; j < nb; j += 64 / (int)sizeof(real)) {
                        __builtin_prefetch(c + (size_t)r * ldt + j, 1);
                        if (Aact)
                            __builtin_prefetch(Aact + (size_t)(r0 + r) * ldc + j0 + j, 0);
                    }
                }
                tile(c, ldt, A + r0 * sr + (size_t)k0 * sk, sr, sk, panel + (size_t)k0 * nr,
                     nr, rb, kb, nb, k0 > 0 ? c : init ? init + j0 : NULL);
                if (k0 + kb < K) continue; /* the epilogue after the last k-block */
                if (job->upd) FN(update_tile)(job->upd, c, (size_t)rb * nr); /* C in panels */
                if (each == FM_EPI_ACT)
                    FN(fm_act_forward_rows)(c, (size_t)ldt, rb, (size_t)nb, job->act,
                                            job->slope);
                else if (each != FM_EPI_NONE)
                    FN(fm_act_backward_rows)(c, (size_t)ldt, Aact + (size_t)r0 * ldc + j0,
                                             (size_t)ldc, rb, (size_t)nb, job->act, job->slope);
            }
        }
    }
}

/* C (R, N) = init + A (R, K) @ M (K, N) through register tiles, the right operand read
 * from per-thread packed panels of nr columns:
 *   transposed = 0: M[k][j] = Ms[k*ldm + j]  (a panel is a column block of Ms)
 *   transposed = 1: M[k][j] = Ms[j*ldm + k]  (a panel is a row block of Ms, transposed)
 * with a(r, k) = A[r*sr + k*sk]. Work items are (panel, group of mc rows of C), ordered by
 * spans of rows (fm_block_span: the span's rows of A, all of K, fill half of L2, or a
 * quarter of L3 where every span reads the panels from memory), in each span by panel, then group: A
 * is read from memory once per span, not once per panel, and a panel packed once per span
 * (with L3's spans, once per product up to 784-2048-2048-2048's batch 512). A thread
 * packs a panel once for its consecutive items (once per span), and runs an item's tiles
 * one k-block of kc panel rows at a time (mc, kc from the caches: cpuinfo.c). Each tile
 * continues its own FMA chains from block to block, so results do not depend on mc, kc,
 * the spans or the threads.
 * After each tile's last k-block the epilogue applies the activation (FM_EPI_ACT) or
 * multiplies by act'(Aact) (FM_EPI_ACT_GRAD, Aact laid out like C), while the tile is still in cache (a small contiguous C on one thread:
 * after the product, in one pass). With `prepacked` (not transposed) the
 * panels are read from there, laid out as a thread would pack them, instead. With `colsum`
 * (not transposed) the thread that packs a panel for its first row group also sums its
 * columns: colsum (N) = the column sums of M (the bias gradient, M being the deltas).
 * `layout` flags operands kept as panels of nr columns (layout.c): FM_C_PANELS, C (R, N)
 * (ldc unused); FM_M_PANELS (transposed), the matrix Ms (N, K) whose row block it reads, so
 * that a panel of M is K / nr transposes of contiguous (nb, nr) blocks. */
static void FN(packed_product)(FN(fm_tile_fn) tile, FN(fm_pack_t_fn) pack_t, int mr, int nr,
                               real *C, int ldc, const real *A, size_t sr, size_t sk,
                               const real *Ms, int ldm, int transposed, int R, int K, int N,
                               const real *init, int epilogue, const real *Aact, int act,
                               double slope, int nt, int par, real *pack,
                               const real *prepacked, real *colsum, int layout,
                               const FN(fm_update) * upd) {
    const int kc = FN(k_block)(K, nr), mc = fm_block_rows(mr, kc, sizeof(real));
    const int span = fm_block_span(mc, K, N, sizeof(real), prepacked != NULL);
    const int panels = (N + nr - 1) / nr, groups = (R + mc - 1) / mc;
    const int fetch = (size_t)R * N * sizeof(real) >= FM_FETCH_MIN_BYTES;
    const int team = par && panels * groups > 1;
    if (act == FM_IDENTITY) epilogue = FM_EPI_NONE; /* nothing to apply */
    const int after = epilogue != FM_EPI_NONE && !team && !fetch && ldc == N &&
                      !(layout & FM_C_PANELS); /* the epilogue in one pass, after */
    const FN(product) job = {
        .tile = tile, .pack_t = pack_t, .mr = mr, .nr = nr, .ldc = ldc, .ldm = ldm,
        .transposed = transposed, .R = R, .K = K, .N = N,
        .each = after ? FM_EPI_NONE : epilogue, /* the epilogue after each tile */
        .act = act, .layout = layout, .kc = kc, .mc = mc, .span = span, .fetch = fetch,
        .sr = sr, .sk = sk,
        .stride = (size_t)FM_PACK_ROWS(K, R) * FM_PACK_NR, .C = C, .pack = pack,
        .colsum = colsum, .A = A, .Ms = Ms, .init = init, .Aact = Aact,
        .prepacked = prepacked, .slope = slope, .upd = upd};
    if (team || FN(in_parallel)()) { /* inside another region: a team of its own */
        const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(team ? nt : 1)
        FM_FP_TEAM(ft, FN(product_items)(&job));
    } else {
        FN(product_items)(&job);
    }
    if (after && epilogue == FM_EPI_ACT) FN(fm_act_forward)(C, (size_t)R * N, act, slope);
    else if (after) FN(fm_act_backward)(C, Aact, (size_t)R * N, act, slope);
}

void FN(fm_dense_forward)(real *Y, const real *X, const real *W, const real *b, int B, int I,
                          int O, int act, double slope, int nt, real *pack,
                          const real *wpanels) {
    if (fm_kernel_active() == FM_KERNEL_BLAS && !wpanels) { /* the BLAS path: blas.c */
        FN(fm_blas_forward)(Y, X, W, b, B, I, O, act, slope, nt);
        return;
    }
    int mr, nr;
    FN(fm_tile_fn) tile;
    FN(fm_pack_t_fn) pack_t;
    const FN(fm_tiles) *ts = FN(fm_tiles_of)(FN(kernels)(&mr, &nr, &tile, &pack_t));
    /* small batches are bound by streaming W: count them as at least 8 rows of work */
    const int par = nt > 1 && (double)(B < 8 ? 8 : B) * I * O >= FM_PARALLEL_MIN_MACS;
    if (B == 1 && tile && ts->gemv && !wpanels) { /* one row: column blocks of the
                                                      vector-matrix product */
        int gnb = ts->gemv_nb; /* (threads: blocks of about O / nt columns, 16-multiples) */
        if (par && (O + nt - 1) / nt < gnb) gnb = ((O + nt - 1) / nt + 15) / 16 * 16;
        const int blocks = (O + gnb - 1) / gnb;
        const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par && blocks > 1)
        {
            const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
            for (int blk = 0; blk < blocks; blk++) {
                const int j0 = blk * gnb, nb = O - j0 < gnb ? O - j0 : gnb;
                ts->gemv(Y + j0, X, W + j0, O, I, nb, b + j0);
                FN(fm_act_forward)(Y + j0, (size_t)nb, act, slope);
            }
            fm_fp_part(ft, had);
        }
        return;
    }
    if (tile && (wpanels || B >= FM_PACK_GROUP || (B > mr && (size_t)I * O >= FM_PACK_LARGE))) {
        FN(packed_product)(tile, pack_t, mr, nr, Y, O, X, (size_t)I, 1, W, O, 0, B, I, O, b,
                           FM_EPI_ACT, NULL, act, slope, nt, par, pack, wpanels, NULL,
                           FM_ROW_MAJOR, NULL);
        return;
    }
    const int row_tiles = (B + mr - 1) / mr, panels = (O + nr - 1) / nr;
    const int tiles = row_tiles * panels;
    /* panel-major: a thread streams its weight panels once, over every row tile */
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par && tiles > 1)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (int t = 0; t < tiles; t++) {
            const int r0 = (t % row_tiles) * mr, j0 = (t / row_tiles) * nr;
            const int rb = B - r0 < mr ? B - r0 : mr, nb = O - j0 < nr ? O - j0 : nr;
            real *y = Y + (size_t)r0 * O + j0;
            FN(run_tile)(tile, y, O, X + (size_t)r0 * I, (size_t)I, 1, W + j0, O, rb, I, nb,
                         b + j0);
            for (int r = 0; r < rb; r++) /* epilogue, tile still in cache */
                FN(fm_act_forward)(y + (size_t)r * O, (size_t)nb, act, slope);
        }
        fm_fp_part(ft, had);
    }
}

/* db (O) = the column sums of D (B, O), rows in order (the additions pack_panel's sums
 * make, so the bias gradient is bitwise the same on every path) */
static void FN(column_sums)(real *db, const real *D, int B, int O) {
    for (int j = 0; j < O; j++) db[j] = 0;
    for (int i = 0; i < B; i++) {
        const real *d = D + (size_t)i * O;
        for (int j = 0; j < O; j++) db[j] += d[j];
    }
}

/* Vectors per k that a row of register tiles (two vectors of nr / 2 wide) spends on n
 * columns: two a panel, one a tail of up to nr / 2 columns (gemm_avx2.c), else two */
static int FN(row_vectors)(int n, int nr) {
    const int tail = n % nr;
    return n / nr * 2 + (tail == 0 ? 0 : tail <= nr / 2 ? 1 : 2);
}

/* Whether the weight gradient of a narrow layer (O <= FM_NARROW_MAX outputs) takes fewer
 * vector multiply-adds computed transposed, O rows of tiles across I columns, than in
 * the usual order, I rows across O columns (10 outputs of 100 inputs, float32: 26 row
 * vectors of tiles against 34, and no lanes of the 16-wide tile left empty) */
static int FN(narrow_pays)(int I, int O, int mr, int nr) {
    if (O > FM_NARROW_MAX) return 0;
    const int across = (O + mr - 1) / mr * FN(row_vectors)(I, nr);
    return across < (I + mr - 1) / mr * FN(row_vectors)(O, nr);
}

/* Panel p of narrow_backward_params: rows [p*nr, p*nr + nb) of dW (I, O) = columns of
 * dW^T (O, I) = D^T @ X, from X's rows in place or copied into the thread's panel (copy),
 * k-blocks of kc (each tile continues from its output) */
static void FN(narrow_panel)(FN(fm_tile_fn) tile, int mr, int nr, real *dW, const real *X,
                             const real *D, int B, int I, int O, real *pack, int kc, int copy,
                             int p, const FN(fm_update) * upd) {
    const int j0 = p * nr, nb = I - j0 < nr ? I - j0 : nr;
    real t[FM_NARROW_MAX * FM_PACK_NR]; /* dW^T's (O, nb) block, rows nr apart */
    real *buf = pack + (size_t)fm_thread_rank() * B * FM_PACK_NR;
    if (copy) FN(pack_panel)(buf, nr, X, I, B, j0, nb, NULL);
    const real *panel = copy ? buf : X + j0;
    const int ldp = copy ? nr : I;
    for (int k0 = 0; k0 < B; k0 += kc) {
        const int kb = B - k0 < kc ? B - k0 : kc;
        for (int r0 = 0; r0 < O; r0 += mr) {
            real *c = t + (size_t)r0 * nr;
            tile(c, nr, D + (size_t)k0 * O + r0, 1, (size_t)O, panel + (size_t)k0 * ldp, ldp,
                 O - r0 < mr ? O - r0 : mr, kb, nb, k0 > 0 ? c : NULL);
        }
    }
    for (int q = 0; q < nb; q++)
        for (int r = 0; r < O; r++) dW[(size_t)(j0 + q) * O + r] = t[(size_t)r * nr + q];
    if (upd) FN(update_tile)(upd, dW + (size_t)j0 * O, (size_t)nb * O); /* its rows */
}

/* dW (I, O) = X (B, I)^T @ D (B, O), db (O) = the column sums of D, for a narrow layer
 * (narrow_pays), computed transposed: dW^T (O, I) = D^T @ X through tiles of mr of the O
 * rows (a(r, k) = D[k*O + r]) over panels of nr of the I columns, read from X's rows (in
 * place, or copied into the thread's panel when X's row stride is a multiple of 256 bytes
 * and would map the panel onto a few cache sets), each panel's (O, nb) result written into
 * dW transposed. Every element is the same chain of multiply-adds over k as in the usual
 * order (and the same column sums), so the result is bitwise the same. Threads split the
 * panels (disjoint rows of dW); one thread opens no OpenMP region. */
static void FN(narrow_backward_params)(FN(fm_tile_fn) tile, int mr, int nr, real *dW, real *db,
                                       const real *X, const real *D, int B, int I, int O,
                                       int nt, int par, real *pack,
                                       const FN(fm_update) * upd) {
    FN(column_sums)(db, D, B, O);
    const int kc = FN(k_block)(B, nr), panels = (I + nr - 1) / nr;
    const int copy = (size_t)I * sizeof(real) % 256 == 0;
    if (par && panels > 1) {
        const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt)
        {
            const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
            for (int p = 0; p < panels; p++)
                FN(narrow_panel)(tile, mr, nr, dW, X, D, B, I, O, pack, kc, copy, p, upd);
            fm_fp_part(ft, had);
        }
        return;
    }
    for (int p = 0; p < panels; p++)
        FN(narrow_panel)(tile, mr, nr, dW, X, D, B, I, O, pack, kc, copy, p, upd);
}

int FN(fm_dense_backward_params)(real *dW, real *db, const real *X, const real *D, int B, int I,
                                 int O, int nt, real *pack, real *xt, int in_panels,
                                 const FN(fm_update) * upd) {
    if (fm_kernel_active() == FM_KERNEL_BLAS && !in_panels) {
        FN(fm_blas_backward_params)(dW, db, X, D, B, I, O, nt);
        return 0;
    }
    int mr, nr;
    FN(fm_tile_fn) tile;
    FN(fm_pack_t_fn) pack_t;
    FN(kernels)(&mr, &nr, &tile, &pack_t);
    const int par = nt > 1 && (double)B * I * O >= FM_PARALLEL_MIN_MACS;
    if (tile && !in_panels && FN(narrow_pays)(I, O, mr, nr)) {
        FN(narrow_backward_params)(tile, mr, nr, dW, db, X, D, B, I, O, nt, par, pack, upd);
        return upd != NULL;
    }
    if (!in_panels) upd = NULL; /* a row-major tile's rows lie a weight row apart: updated
        per tile, the parameters and state stream from L3 line by line (a batch-128 epoch
        of 784-512-256-10 took 1.13-1.4x as long); the separate pass streams them */
    if (tile && I >= FM_PACK_GROUP && xt && pack_t && B >= FM_XT_MIN_BATCH) {
        /* rows of dW are rows of X^T, made once: read as columns of X, their stride of I
           elements maps a tile's k steps onto a few cache sets when I is a power of two */
        const int blocks = (I + FM_PACK_NR - 1) / FM_PACK_NR, ldx = fm_xt_stride(B, sizeof(real));
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
        for (int blk = 0; blk < blocks; blk++) { /* (a copy: no arithmetic, no fpenv.h) */
            const int i0 = blk * FM_PACK_NR, ib = I - i0 < FM_PACK_NR ? I - i0 : FM_PACK_NR;
            pack_t(xt + (size_t)i0 * ldx, ldx, X + i0, I, B, ib);
        }
        FN(packed_product)(tile, pack_t, mr, nr, dW, O, xt, (size_t)ldx, 1, D, O, 0, I, B, O,
                           NULL, FM_EPI_NONE, NULL, 0, 0, nt, par, pack, NULL, db,
                           in_panels ? FM_C_PANELS : FM_ROW_MAJOR, upd);
        return upd != NULL;
    }
    if (tile && I >= FM_PACK_GROUP) { /* rows of dW are columns of X: a(r, i) = X[i*I + r] */
        FN(packed_product)(tile, pack_t, mr, nr, dW, O, X, 1, (size_t)I, D, O, 0, I, B, O,
                           NULL, FM_EPI_NONE, NULL, 0, 0, nt, par, pack, NULL, db,
                           in_panels ? FM_C_PANELS : FM_ROW_MAJOR, upd);
        return upd != NULL;
    }
    FN(column_sums)(db, D, B, O);
    const int row_tiles = (I + mr - 1) / mr, panels = (O + nr - 1) / nr;
    const int tiles = row_tiles * panels;
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par && tiles > 1)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (int t = 0; t < tiles; t++) {
            const int k0 = (t % row_tiles) * mr, j0 = (t / row_tiles) * nr;
            const int kb = I - k0 < mr ? I - k0 : mr, nb = O - j0 < nr ? O - j0 : nr;
            /* rows of dW are columns of X: a(r, i) = X[i*I + k0 + r] */
            real *c = in_panels ? dW + (size_t)(j0 / nr) * I * nr + (size_t)k0 * nr
                                : dW + (size_t)k0 * O + j0;
            FN(run_tile)(tile, c, in_panels ? nr : O, X + k0, 1, (size_t)I, D + j0, O, kb, B,
                         nb, NULL);
            if (upd) FN(update_tile)(upd, c, (size_t)kb * nr); /* (in panels: nb == nr) */
        }
        fm_fp_part(ft, had);
    }
    return upd != NULL;
}

void FN(fm_dense_backward_input)(real *dX, const real *D, const real *W, const real *A, int B,
                                 int I, int O, int act, double slope, int nt, real *pack,
                                 int in_panels) {
    if (fm_kernel_active() == FM_KERNEL_BLAS && !in_panels) {
        FN(fm_blas_backward_input)(dX, D, W, A, B, I, O, act, slope, nt);
        return;
    }
    int mr, nr;
    FN(fm_tile_fn) tile;
    FN(fm_pack_t_fn) pack_t;
    FN(kernels)(&mr, &nr, &tile, &pack_t);
    if (tile) { /* dX = D W^T: panels of W^T are transposed row blocks of W */
        const int par = nt > 1 && (double)B * I * O >= FM_PARALLEL_MIN_MACS;
        FN(packed_product)(tile, pack_t, mr, nr, dX, I, D, (size_t)O, 1, W, O, 1, B, O, I,
                           NULL, A ? FM_EPI_ACT_GRAD : FM_EPI_NONE, A, act, slope, nt, par, pack,
                           NULL, NULL, in_panels ? FM_M_PANELS : FM_ROW_MAJOR, NULL);
        return;
    }
    const int blocks = (B + FM_MR - 1) / FM_MR;
    const int par = nt > 1 && blocks > 1 && (double)B * I * O >= FM_PARALLEL_MIN_MACS;
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (int blk = 0; blk < blocks; blk++) {
            const int r0 = blk * FM_MR;
            const int rb = B - r0 < FM_MR ? B - r0 : FM_MR;
            real *dx = dX + (size_t)r0 * I;
            FN(tile_dots)(dx, D + (size_t)r0 * O, W, rb, I, O);
            if (A) FN(fm_act_backward)(dx, A + (size_t)r0 * I, (size_t)rb * I, act, slope);
        }
        fm_fp_part(ft, had);
    }
}
