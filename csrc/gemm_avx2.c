/* gemm_avx2.c — AVX2+FMA tile kernels (compiled with -mavx2 -mfma; called only when the
 * CPU has both). float32: 6x16 register tile, float64: 6x8 (4 doubles per register); both
 * keep 12 ymm accumulators, with 2 panel loads and 6 broadcasts per k. A tile of full
 * width loads and stores with plain vector moves; only a narrower one (a panel's tail)
 * uses masked moves, which cost several times more on AMD cores (a tile of a short
 * product, K ~ 10, spent most of its time in 12 masked stores). A panel's last columns
 * that fit one vector (nb <= 8 floats, 4 doubles: a 100-wide layer's last 4, a 10-wide
 * one's last 2 doubles) run a one-vector tile: half the multiply-adds. Every variant
 * computes each element with the same FMA chain, so results do not depend on which ran.
 * init == C continues a product over a later k-block (gemm.h): the chain goes on from C.
 * The full-width tile is also compiled for the two calls the products make most, a packed
 * panel (ldb == nr) with A read along its rows (sk == 1) or down its columns (sr == 1):
 * with those strides constant, the six rows' broadcasts share one index register instead
 * of six pointers each advanced every k (23 instructions per k instead of 31; in L1, 6x16
 * tiles over a 196-deep panel went from 97.7 to 99.2 GFLOP/s on a Zen 3 core, and with
 * sr == 1 from 67 to 74). */
#include <immintrin.h>

#include "gemm.h"

#define MR 6
#define INLINE static inline __attribute__((always_inline))

static __m256i tail_mask(int n) { /* lanes [0, n) set, n in [0, 8] */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

static __m256i tail_mask_f64(int n) { /* 64-bit lanes [0, n) set, n in [0, 4] */
    const __m256i idx = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), idx);
}

/* The tile body of one dtype. V: vector type; L: lanes per vector; LOAD(p, m), STORE(p, m, v):
 * masked or plain moves (full: mask unused); BCAST(p); FMA(a, b, c) = a * b + c; ZERO(). */
#define TILE_BODY(T, V, L, LOAD, STORE, BCAST, FMA, ZERO, MASK)                                \
    const __m256i m0 = MASK(nb >= L ? L : nb), m1 = MASK(nb <= L ? 0 : nb >= 2 * L ? L : nb - L); \
    (void)m0; /* unused by plain moves */                                                      \
    (void)m1;                                                                                   \
    const T *a[MR], *s[MR]; /* s: where each row's start values come from */                \
    const int acc = init == C; /* a later k-block: every row starts from its C row */          \
    for (int r = 0; r < MR; r++) {                                                              \
        a[r] = A + (size_t)(r < rb ? r : rb - 1) * sr;                                          \
        s[r] = acc ? C + (size_t)(r < rb ? r : rb - 1) * ldc : init;                            \
    }                                                                                           \
    const int any = init != NULL;                                                               \
    V c00 = any ? LOAD(s[0], m0) : ZERO(), c01 = any ? LOAD(s[0] + L, m1) : ZERO();            \
    V c10 = any ? LOAD(s[1], m0) : ZERO(), c11 = any ? LOAD(s[1] + L, m1) : ZERO();            \
    V c20 = any ? LOAD(s[2], m0) : ZERO(), c21 = any ? LOAD(s[2] + L, m1) : ZERO();            \
    V c30 = any ? LOAD(s[3], m0) : ZERO(), c31 = any ? LOAD(s[3] + L, m1) : ZERO();            \
    V c40 = any ? LOAD(s[4], m0) : ZERO(), c41 = any ? LOAD(s[4] + L, m1) : ZERO();            \
    V c50 = any ? LOAD(s[5], m0) : ZERO(), c51 = any ? LOAD(s[5] + L, m1) : ZERO();            \
    for (int k = 0; k < K; k++) {                                                               \
        const T *b = Bm + (size_t)k * ldb;                                                      \
        const size_t o = (size_t)k * sk;                                                        \
        const V b0 = LOAD(b, m0), b1 = LOAD(b + L, m1);                                         \
        V x;                                                                                    \
        x = BCAST(a[0] + o); c00 = FMA(x, b0, c00); c01 = FMA(x, b1, c01);                      \
        x = BCAST(a[1] + o); c10 = FMA(x, b0, c10); c11 = FMA(x, b1, c11);                      \
        x = BCAST(a[2] + o); c20 = FMA(x, b0, c20); c21 = FMA(x, b1, c21);                      \
        x = BCAST(a[3] + o); c30 = FMA(x, b0, c30); c31 = FMA(x, b1, c31);                      \
        x = BCAST(a[4] + o); c40 = FMA(x, b0, c40); c41 = FMA(x, b1, c41);                      \
        x = BCAST(a[5] + o); c50 = FMA(x, b0, c50); c51 = FMA(x, b1, c51);                      \
    }                                                                                           \
    const V out[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}}; \
    for (int r = 0; r < rb; r++) {                                                              \
        STORE(C + (size_t)r * ldc, m0, out[r][0]);                                              \
        STORE(C + (size_t)r * ldc + L, m1, out[r][1]);                                          \
    }

/* The tile of a panel's last nb <= L columns: one vector per row, half the multiply-adds
 * of the two-vector tile (whose second vector would be all padding), and the same FMA
 * chain for every element. LOAD, STORE: masked or plain (nb == L) moves. */
#define HALF_BODY(T, V, L, LOAD, STORE, BCAST, FMA, ZERO, MASK)                               \
    const __m256i m0 = MASK(nb);                                                                \
    (void)m0;                                                                                   \
    const T *a[MR], *s[MR]; /* s: where each row's start values come from (as TILE_BODY) */ \
    const int acc = init == C;                                                                  \
    for (int r = 0; r < MR; r++) {                                                              \
        a[r] = A + (size_t)(r < rb ? r : rb - 1) * sr;                                          \
        s[r] = acc ? C + (size_t)(r < rb ? r : rb - 1) * ldc : init;                            \
    }                                                                                           \
    const int any = init != NULL;                                                               \
    V c0 = any ? LOAD(s[0], m0) : ZERO(), c1 = any ? LOAD(s[1], m0) : ZERO();                  \
    V c2 = any ? LOAD(s[2], m0) : ZERO(), c3 = any ? LOAD(s[3], m0) : ZERO();                  \
    V c4 = any ? LOAD(s[4], m0) : ZERO(), c5 = any ? LOAD(s[5], m0) : ZERO();                  \
    for (int k = 0; k < K; k++) {                                                               \
        const V b0 = LOAD(Bm + (size_t)k * ldb, m0);                                            \
        const size_t o = (size_t)k * sk;                                                        \
        c0 = FMA(BCAST(a[0] + o), b0, c0);                                                      \
        c1 = FMA(BCAST(a[1] + o), b0, c1);                                                      \
        c2 = FMA(BCAST(a[2] + o), b0, c2);                                                      \
        c3 = FMA(BCAST(a[3] + o), b0, c3);                                                      \
        c4 = FMA(BCAST(a[4] + o), b0, c4);                                                      \
        c5 = FMA(BCAST(a[5] + o), b0, c5);                                                      \
    }                                                                                           \
    const V out[MR] = {c0, c1, c2, c3, c4, c5};                                                 \
    for (int r = 0; r < rb; r++) STORE(C + (size_t)r * ldc, m0, out[r]);

#define LOAD_ps(p, m) _mm256_loadu_ps(p)
#define STORE_ps(p, m, v) _mm256_storeu_ps(p, v)
#define MLOAD_ps(p, m) _mm256_maskload_ps(p, m)
#define MSTORE_ps(p, m, v) _mm256_maskstore_ps(p, m, v)
#define LOAD_pd(p, m) _mm256_loadu_pd(p)
#define STORE_pd(p, m, v) _mm256_storeu_pd(p, v)
#define MLOAD_pd(p, m) _mm256_maskload_pd(p, m)
#define MSTORE_pd(p, m, v) _mm256_maskstore_pd(p, m, v)
#define NO_MASK(n) _mm256_setzero_si256()

/* NAME: the tile of one dtype, a full-width variant and a masked one (tails) */
#define TILE_KERNEL(NAME, T, V, L, PS, BCAST, MASK)                                           \
    INLINE void NAME##_full(T *C, int ldc, const T *A, size_t sr, size_t sk, const T *Bm,     \
                            int ldb, int rb, int K, int nb, const T *init) {                 \
        TILE_BODY(T, V, L, LOAD_##PS, STORE_##PS, BCAST, _mm256_fmadd_##PS,                  \
                  _mm256_setzero_##PS, NO_MASK)                                               \
    }                                                                                         \
    INLINE void NAME##_tail(T *C, int ldc, const T *A, size_t sr, size_t sk, const T *Bm,     \
                            int ldb, int rb, int K, int nb, const T *init) {                 \
        TILE_BODY(T, V, L, MLOAD_##PS, MSTORE_##PS, BCAST, _mm256_fmadd_##PS,                \
                  _mm256_setzero_##PS, MASK)                                                  \
    }                                                                                         \
    INLINE void NAME##_one(T *C, int ldc, const T *A, size_t sr, size_t sk, const T *Bm,      \
                           int ldb, int rb, int K, int nb, const T *init) {                  \
        HALF_BODY(T, V, L, LOAD_##PS, STORE_##PS, BCAST, _mm256_fmadd_##PS,                  \
                  _mm256_setzero_##PS, NO_MASK)                                               \
    }                                                                                         \
    INLINE void NAME##_part(T *C, int ldc, const T *A, size_t sr, size_t sk, const T *Bm,     \
                            int ldb, int rb, int K, int nb, const T *init) {                 \
        HALF_BODY(T, V, L, MLOAD_##PS, MSTORE_##PS, BCAST, _mm256_fmadd_##PS,                \
                  _mm256_setzero_##PS, MASK)                                                  \
    }                                                                                         \
    void NAME(T *C, int ldc, const T *A, size_t sr, size_t sk, const T *Bm, int ldb, int rb,  \
              int K, int nb, const T *init) {                                                 \
        if (nb == 2 * L && ldb == 2 * L && sk == 1)                                           \
            NAME##_full(C, ldc, A, sr, 1, Bm, 2 * L, rb, K, nb, init);                        \
        else if (nb == 2 * L && ldb == 2 * L && sr == 1)                                      \
            NAME##_full(C, ldc, A, 1, sk, Bm, 2 * L, rb, K, nb, init);                        \
        else if (nb == 2 * L) NAME##_full(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);       \
        else if (nb == L) NAME##_one(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);            \
        else if (nb < L) NAME##_part(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);            \
        else NAME##_tail(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);                        \
    }

TILE_KERNEL(fm_tile_avx2, float, __m256, 8, ps, _mm256_broadcast_ss, tail_mask)
TILE_KERNEL(fm_tile_avx2_f64, double, __m256d, 4, pd, _mm256_broadcast_sd, tail_mask_f64)

/* gemv (batch 1): y = init + x W over nb columns, in y itself: W is read as it lies, GK
 * rows at a time across all nb columns (contiguous runs the prefetchers follow; y stays in
 * L1), each vector of y loaded once per GK rows and given their GK multiply-adds in row
 * order. Each element is then the tiles' FMA chain (init, then k in order), so a row's
 * result does not depend on the path. The last nb % L columns use masked moves. */
#define GK 8
#define GEMV_KERNEL(NAME, T, V, L, PS, BCAST, MASK)                                            \
    void NAME(T *y, const T *x, const T *W, int ldw, int K, int nb, const T *init) {          \
        const int nv = nb / L, rem = nb % L;                                                    \
        const __m256i ml = MASK(rem);                                                           \
        for (int v = 0; v < nv; v++)                                                            \
            STORE_##PS(y + L * v, ml, init ? LOAD_##PS(init + L * v, ml) : _mm256_setzero_##PS()); \
        if (rem)                                                                                \
            MSTORE_##PS(y + L * nv, ml, init ? MLOAD_##PS(init + L * nv, ml)                   \
                                             : _mm256_setzero_##PS());                          \
        int k = 0;                                                                              \
        for (; k + GK <= K; k += GK) {                                                          \
            const T *w = W + (size_t)k * ldw;                                                   \
            V xs[GK];                                                                           \
            for (int i = 0; i < GK; i++) xs[i] = BCAST(x + k + i);                              \
            for (int v = 0; v < nv; v++) {                                                      \
                V c = LOAD_##PS(y + L * v, ml);                                                 \
                for (int i = 0; i < GK; i++)                                                    \
                    c = _mm256_fmadd_##PS(xs[i], LOAD_##PS(w + (size_t)i * ldw + L * v, ml), c); \
                STORE_##PS(y + L * v, ml, c);                                                   \
            }                                                                                   \
            if (rem) {                                                                          \
                V c = MLOAD_##PS(y + L * nv, ml);                                               \
                for (int i = 0; i < GK; i++)                                                    \
                    c = _mm256_fmadd_##PS(xs[i], MLOAD_##PS(w + (size_t)i * ldw + L * nv, ml), c); \
                MSTORE_##PS(y + L * nv, ml, c);                                                 \
            }                                                                                   \
        }                                                                                       \
        for (; k < K; k++) { /* the last K % GK rows, one at a time */                         \
            const T *w = W + (size_t)k * ldw;                                                   \
            const V xk = BCAST(x + k);                                                          \
            for (int v = 0; v < nv; v++)                                                        \
                STORE_##PS(y + L * v, ml,                                                       \
                           _mm256_fmadd_##PS(xk, LOAD_##PS(w + L * v, ml), LOAD_##PS(y + L * v, ml))); \
            if (rem)                                                                            \
                MSTORE_##PS(y + L * nv, ml,                                                     \
                            _mm256_fmadd_##PS(xk, MLOAD_##PS(w + L * nv, ml),                  \
                                              MLOAD_##PS(y + L * nv, ml)));                     \
        }                                                                                       \
    }

GEMV_KERNEL(fm_gemv_avx2, float, __m256, 8, ps, _mm256_broadcast_ss, tail_mask)
GEMV_KERNEL(fm_gemv_avx2_f64, double, __m256d, 4, pd, _mm256_broadcast_sd, tail_mask_f64)
