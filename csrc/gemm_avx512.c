/* gemm_avx512.c — AVX-512 kernels, float32 and float64 (compiled with -mavx512f -mfma;
 * called only when the CPU has AVX-512F, see dispatch.c). 8-row register tiles of two
 * zmm vectors a row, 8x32 floats or 8x16 doubles: 16 zmm accumulators, 2 panel loads and
 * 8 broadcasts per k. As in gemm_avx2.c, a tile of full width loads and stores with plain
 * moves and is also compiled for the two strides the products use most (a packed panel
 * read along A's rows, sk == 1, or down its columns, sr == 1); a panel's last columns use
 * masked moves, and those that fit one vector (nb <= 16 floats, 8 doubles) run a
 * one-vector tile. A single row (rb == 1) runs one row's multiply-adds, not eight.
 * Every variant computes each element with the same FMA chain (init, then k in order),
 * so results do not depend on which ran. init == C continues a product over a later
 * k-block (gemm.h): the chain goes on from C. */
#include <immintrin.h>

#include "gemm.h"

#define MR 8
#define INLINE static inline __attribute__((always_inline))
/* The tiles' k loops unrolled 4 times: once per k the loop advances 8 row pointers (or an
 * index) beside 16 multiply-adds, and on cores with two 512-bit FMA ports (Intel Xeon)
 * those integer adds and the loop branch take issue slots the FMAs need: a 8x32 tile in
 * L1 went from 188 to 213 GFLOP/s at K = 784 (peak 245). The chains are unchanged. */
#define UNROLL_K _Pragma("GCC unroll 4")

/* T: element; V: vector; L: lanes; MT: mask type; LOAD(p, m), STORE(p, m, v): plain moves
 * (full: the mask is all ones and unused) or masked ones; BCAST(p); FMA(a, b, c) =
 * a * b + c; ZERO(). m0, m1: the masks of a row's two vectors. */
#define ROWS_START(T)                                                                              \
    const T *a[MR], *s[MR]; /* s: where each row's start values come from */                       \
    const int acc = init == C; /* a later k-block: every row starts from its C row */              \
    for (int r = 0; r < MR; r++) {                                                                 \
        a[r] = A + (size_t)(r < rb ? r : rb - 1) * sr;                                             \
        s[r] = acc ? C + (size_t)(r < rb ? r : rb - 1) * ldc : init;                               \
    }                                                                                              \
    const int any = init != NULL;

#define TILE_BODY(T, V, L, LOAD, STORE, BCAST, FMA, ZERO)                                          \
    ROWS_START(T)                                                                                  \
    V c00 = any ? LOAD(s[0], m0) : ZERO(), c01 = any ? LOAD(s[0] + L, m1) : ZERO();                \
    V c10 = any ? LOAD(s[1], m0) : ZERO(), c11 = any ? LOAD(s[1] + L, m1) : ZERO();                \
    V c20 = any ? LOAD(s[2], m0) : ZERO(), c21 = any ? LOAD(s[2] + L, m1) : ZERO();                \
    V c30 = any ? LOAD(s[3], m0) : ZERO(), c31 = any ? LOAD(s[3] + L, m1) : ZERO();                \
    V c40 = any ? LOAD(s[4], m0) : ZERO(), c41 = any ? LOAD(s[4] + L, m1) : ZERO();                \
    V c50 = any ? LOAD(s[5], m0) : ZERO(), c51 = any ? LOAD(s[5] + L, m1) : ZERO();                \
    V c60 = any ? LOAD(s[6], m0) : ZERO(), c61 = any ? LOAD(s[6] + L, m1) : ZERO();                \
    V c70 = any ? LOAD(s[7], m0) : ZERO(), c71 = any ? LOAD(s[7] + L, m1) : ZERO();                \
    UNROLL_K for (int k = 0; k < K; k++) {                                                         \
        const T *b = Bm + (size_t)k * ldb;                                                         \
        const size_t o = (size_t)k * sk;                                                           \
        const V b0 = LOAD(b, m0), b1 = LOAD(b + L, m1);                                            \
        V x;                                                                                       \
        x = BCAST(a[0] + o); c00 = FMA(x, b0, c00); c01 = FMA(x, b1, c01);                         \
        x = BCAST(a[1] + o); c10 = FMA(x, b0, c10); c11 = FMA(x, b1, c11);                         \
        x = BCAST(a[2] + o); c20 = FMA(x, b0, c20); c21 = FMA(x, b1, c21);                         \
        x = BCAST(a[3] + o); c30 = FMA(x, b0, c30); c31 = FMA(x, b1, c31);                         \
        x = BCAST(a[4] + o); c40 = FMA(x, b0, c40); c41 = FMA(x, b1, c41);                         \
        x = BCAST(a[5] + o); c50 = FMA(x, b0, c50); c51 = FMA(x, b1, c51);                         \
        x = BCAST(a[6] + o); c60 = FMA(x, b0, c60); c61 = FMA(x, b1, c61);                         \
        x = BCAST(a[7] + o); c70 = FMA(x, b0, c70); c71 = FMA(x, b1, c71);                         \
    }                                                                                              \
    const V out[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},                          \
                          {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};                         \
    for (int r = 0; r < rb; r++) {                                                                 \
        STORE(C + (size_t)r * ldc, m0, out[r][0]);                                                 \
        STORE(C + (size_t)r * ldc + L, m1, out[r][1]);                                             \
    }

/* The tile of a panel's last nb <= L columns: one vector a row (the same chains) */
#define HALF_BODY(T, V, L, LOAD, STORE, BCAST, FMA, ZERO)                                          \
    ROWS_START(T)                                                                                  \
    V c0 = any ? LOAD(s[0], m0) : ZERO(), c1 = any ? LOAD(s[1], m0) : ZERO();                      \
    V c2 = any ? LOAD(s[2], m0) : ZERO(), c3 = any ? LOAD(s[3], m0) : ZERO();                      \
    V c4 = any ? LOAD(s[4], m0) : ZERO(), c5 = any ? LOAD(s[5], m0) : ZERO();                      \
    V c6 = any ? LOAD(s[6], m0) : ZERO(), c7 = any ? LOAD(s[7], m0) : ZERO();                      \
    UNROLL_K for (int k = 0; k < K; k++) {                                                         \
        const V b0 = LOAD(Bm + (size_t)k * ldb, m0);                                               \
        const size_t o = (size_t)k * sk;                                                           \
        c0 = FMA(BCAST(a[0] + o), b0, c0);                                                         \
        c1 = FMA(BCAST(a[1] + o), b0, c1);                                                         \
        c2 = FMA(BCAST(a[2] + o), b0, c2);                                                         \
        c3 = FMA(BCAST(a[3] + o), b0, c3);                                                         \
        c4 = FMA(BCAST(a[4] + o), b0, c4);                                                         \
        c5 = FMA(BCAST(a[5] + o), b0, c5);                                                         \
        c6 = FMA(BCAST(a[6] + o), b0, c6);                                                         \
        c7 = FMA(BCAST(a[7] + o), b0, c7);                                                         \
    }                                                                                              \
    const V out[MR] = {c0, c1, c2, c3, c4, c5, c6, c7};                                            \
    for (int r = 0; r < rb; r++) STORE(C + (size_t)r * ldc, m0, out[r]);

/* One row (inference at batch 1 through weight panels): a vector-matrix product, the
 * same chains as a row of the full tile */
#define ROW_BODY(T, V, L, LOAD, STORE, BCAST, FMA, ZERO)                                           \
    V c0 = init ? LOAD(init, m0) : ZERO(), c1 = init ? LOAD(init + L, m1) : ZERO();                \
    for (int k = 0; k < K; k++) {                                                                  \
        const T *b = Bm + (size_t)k * ldb;                                                         \
        const V x = BCAST(A + (size_t)k * sk);                                                     \
        c0 = FMA(x, LOAD(b, m0), c0);                                                              \
        c1 = FMA(x, LOAD(b + L, m1), c1);                                                          \
    }                                                                                              \
    STORE(C, m0, c0);                                                                              \
    STORE(C + L, m1, c1);

#define MASK_ps(n) ((__mmask16)((1u << (n)) - 1u)) /* lanes [0, n) set, n in [0, 16] */
#define MASK_pd(n) ((__mmask8)((1u << (n)) - 1u))  /* n in [0, 8] */
#define LOAD_ps(p, m) _mm512_loadu_ps(p)
#define STORE_ps(p, m, v) _mm512_storeu_ps(p, v)
#define MLOAD_ps(p, m) _mm512_maskz_loadu_ps(m, p)
#define MSTORE_ps(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define LOAD_pd(p, m) _mm512_loadu_pd(p)
#define STORE_pd(p, m, v) _mm512_storeu_pd(p, v)
#define MLOAD_pd(p, m) _mm512_maskz_loadu_pd(m, p)
#define MSTORE_pd(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define BCAST_ps(p) _mm512_set1_ps(*(p))
#define BCAST_pd(p) _mm512_set1_pd(*(p))

#define ARGS(T)                                                                                    \
    T *C, int ldc, const T *A, size_t sr, size_t sk, const T *Bm, int ldb, int rb, int K,          \
        int nb, const T *init
#define BODY(KIND, PS, LS) /* LS: empty, plain moves (LOAD_ps), or M, masked ones (MLOAD_ps) */    \
    KIND##_BODY(T, V, L, LS##LOAD_##PS, LS##STORE_##PS, BCAST_##PS, _mm512_fmadd_##PS,             \
                _mm512_setzero_##PS)

/* m0, m1: the masks of a row's two vectors for nb columns (L lanes each) */
#define TWO_MASKS(PS, MT)                                                                          \
    const MT m0 = MASK_##PS(nb >= L ? L : nb);                                                     \
    const MT m1 = MASK_##PS(nb <= L ? 0 : nb >= 2 * L ? L : nb - L);

/* NAME: the tile of one dtype, dispatching to its variants */
#define TILE_KERNEL(NAME, TT, VV, LL, PS, MT)                                                      \
    INLINE void NAME##_full(ARGS(TT)) {                                                            \
        typedef TT T;                                                                              \
        typedef VV V;                                                                              \
        enum { L = LL };                                                                           \
        const MT m0 = 0, m1 = 0;                                                                   \
        (void)m0, (void)m1, (void)nb;                                                              \
        BODY(TILE, PS, )                                                                           \
    }                                                                                              \
    INLINE void NAME##_tail(ARGS(TT)) {                                                            \
        typedef TT T;                                                                              \
        typedef VV V;                                                                              \
        enum { L = LL };                                                                           \
        TWO_MASKS(PS, MT)                                                                          \
        BODY(TILE, PS, M)                                                                          \
    }                                                                                              \
    INLINE void NAME##_one(ARGS(TT)) {                                                             \
        typedef TT T;                                                                              \
        typedef VV V;                                                                              \
        const MT m0 = 0;                                                                           \
        (void)m0, (void)nb;                                                                        \
        BODY(HALF, PS, )                                                                           \
    }                                                                                              \
    INLINE void NAME##_half(ARGS(TT)) {                                                            \
        typedef TT T;                                                                              \
        typedef VV V;                                                                              \
        const MT m0 = MASK_##PS(nb);                                                               \
        BODY(HALF, PS, M)                                                                          \
    }                                                                                              \
    INLINE void NAME##_row(ARGS(TT)) {                                                             \
        typedef TT T;                                                                              \
        typedef VV V;                                                                              \
        enum { L = LL };                                                                           \
        TWO_MASKS(PS, MT)                                                                          \
        (void)sr, (void)ldc, (void)rb;                                                             \
        BODY(ROW, PS, M)                                                                           \
    }                                                                                              \
    void NAME(ARGS(TT)) {                                                                          \
        if (rb == 1) NAME##_row(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);                      \
        else if (nb == 2 * LL && ldb == 2 * LL && sk == 1)                                         \
            NAME##_full(C, ldc, A, sr, 1, Bm, 2 * LL, rb, K, nb, init);                            \
        else if (nb == 2 * LL && ldb == 2 * LL && sr == 1)                                         \
            NAME##_full(C, ldc, A, 1, sk, Bm, 2 * LL, rb, K, nb, init);                            \
        else if (nb == 2 * LL) NAME##_full(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);           \
        else if (nb == LL) NAME##_one(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);                \
        else if (nb < LL) NAME##_half(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);                \
        else NAME##_tail(C, ldc, A, sr, sk, Bm, ldb, rb, K, nb, init);                             \
    }

TILE_KERNEL(fm_tile_avx512, float, __m512, 16, ps, __mmask16)
TILE_KERNEL(fm_tile_avx512_f64, double, __m512d, 8, pd, __mmask8)

/* gemv (batch 1): y = init + x W over nb columns, in y itself: W is read as it lies, GK
 * rows at a time across all nb columns (contiguous runs the prefetchers follow; y stays in
 * L1), each vector of y loaded once per GK rows and given their GK multiply-adds in row
 * order: each element is the tiles' FMA chain (init, then k in order), so a row's result
 * does not depend on the path (gemm_avx2.c's design, which replaced chains down all of K
 * for 128 columns at a time). The last nb % L columns use masked moves. */
#define GK 8
#define GEMV_KERNEL(NAME, T, V, L, PS, MT)                                                         \
    void NAME(T *y, const T *x, const T *W, int ldw, int K, int nb, const T *init) {               \
        const int nv = nb / L, rem = nb % L;                                                       \
        const MT ml = MASK_##PS(rem);                                                              \
        for (int v = 0; v < nv; v++)                                                               \
            STORE_##PS(y + L * v, 0, init ? LOAD_##PS(init + L * v, 0) : _mm512_setzero_##PS());   \
        if (rem)                                                                                   \
            MSTORE_##PS(y + L * nv, ml, init ? MLOAD_##PS(init + L * nv, ml)                       \
                                             : _mm512_setzero_##PS());                             \
        int k = 0;                                                                                 \
        for (; k + GK <= K; k += GK) {                                                             \
            const T *w = W + (size_t)k * ldw;                                                      \
            V xs[GK];                                                                              \
            for (int i = 0; i < GK; i++) xs[i] = BCAST_##PS(x + k + i);                            \
            for (int v = 0; v < nv; v++) {                                                         \
                V c = LOAD_##PS(y + L * v, 0);                                                     \
                for (int i = 0; i < GK; i++)                                                       \
                    c = _mm512_fmadd_##PS(xs[i], LOAD_##PS(w + (size_t)i * ldw + L * v, 0), c);    \
                STORE_##PS(y + L * v, 0, c);                                                       \
            }                                                                                      \
            if (rem) {                                                                             \
                V c = MLOAD_##PS(y + L * nv, ml);                                                  \
                for (int i = 0; i < GK; i++)                                                       \
                    c = _mm512_fmadd_##PS(xs[i], MLOAD_##PS(w + (size_t)i * ldw + L * nv, ml),     \
                                          c);                                                      \
                MSTORE_##PS(y + L * nv, ml, c);                                                    \
            }                                                                                      \
        }                                                                                          \
        for (; k < K; k++) { /* the last K % GK rows, one at a time */                             \
            const T *w = W + (size_t)k * ldw;                                                      \
            const V xk = BCAST_##PS(x + k);                                                        \
            for (int v = 0; v < nv; v++)                                                           \
                STORE_##PS(y + L * v, 0,                                                           \
                           _mm512_fmadd_##PS(xk, LOAD_##PS(w + L * v, 0),                          \
                                             LOAD_##PS(y + L * v, 0)));                            \
            if (rem)                                                                               \
                MSTORE_##PS(y + L * nv, ml,                                                        \
                            _mm512_fmadd_##PS(xk, MLOAD_##PS(w + L * nv, ml),                      \
                                              MLOAD_##PS(y + L * nv, ml)));                        \
        }                                                                                          \
    }

GEMV_KERNEL(fm_gemv_avx512, float, __m512, 16, ps, __mmask16)
GEMV_KERNEL(fm_gemv_avx512_f64, double, __m512d, 8, pd, __mmask8)

/* rows r[0..16) become columns: r[j][i] <- r[i][j] (unpack pairs, 4x4 blocks per 128-bit
 * lane, then whole lanes) */
static void transpose16(__m512 r[16]) {
    __m512 t[16], s[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* s[4g + c], lane L: rows 4g..4g+3 of column 4L + c */
        s[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        s[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        s[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        s[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        const __m512 u = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x88);
        const __m512 v = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xDD);
        const __m512 w = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x88);
        const __m512 x = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(u, w, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(u, w, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(v, x, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v, x, 0xDD);
    }
}

void fm_pack_t_avx512(float *buf, int nr, const float *M, int ldm, int nb, int K) {
    for (int q0 = 0; q0 < nb; q0 += 16) { /* 16x16 blocks through registers */
        const int qb = nb - q0 < 16 ? nb - q0 : 16;
        const __mmask16 qm = qb == 16 ? 0xFFFF : (__mmask16)((1u << qb) - 1);
        for (int k0 = 0; k0 < K; k0 += 16) {
            const int kb = K - k0 < 16 ? K - k0 : 16;
            const __mmask16 km = kb == 16 ? 0xFFFF : (__mmask16)((1u << kb) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < qb ? _mm512_maskz_loadu_ps(km, M + (size_t)(q0 + i) * ldm + k0)
                              : _mm512_setzero_ps();
            transpose16(r);
            for (int t = 0; t < kb; t++)
                _mm512_mask_storeu_ps(buf + (size_t)(k0 + t) * nr + q0, qm, r[t]);
        }
    }
}
