/* gemm_avx512.c — AVX-512 float32 kernels (compiled with -mavx512f -mfma; called only
 * when the CPU has AVX-512F, see dispatch.c). 8x32 register tile: 16 zmm accumulators,
 * 2 weight loads and 8 broadcasts per k; masked loads/stores for tails. One-row
 * products (batch 1) run through 128 columns at once: 8 independent FMA chains hide the
 * FMA latency and keep 8 weight loads in flight. */
#include <immintrin.h>

#include "gemm.h"

#define MR 8

void fm_tile_avx512(float *C, int ldc, const float *A, size_t sr, size_t sk, const float *Bm,
                    int ldb, int rb, int K, int nb, const float *init) {
    const __mmask16 m0 = nb >= 16 ? 0xFFFF : (__mmask16)((1u << nb) - 1);
    const __mmask16 m1 = nb <= 16 ? 0 : nb >= 32 ? 0xFFFF : (__mmask16)((1u << (nb - 16)) - 1);
    if (rb == 1) { /* one row (inference at batch 1): a vector-matrix product. One FMA
                      chain per element, in the order of the full tile below, so that a row's
                      result never depends on the rows it is batched with. init == C: a
                      later k-block (gemm.h), C is its own start. */
        __m512 c0 = init ? _mm512_maskz_loadu_ps(m0, init) : _mm512_setzero_ps();
        __m512 c1 = init ? _mm512_maskz_loadu_ps(m1, init + 16) : _mm512_setzero_ps();
        for (int k = 0; k < K; k++) {
            const float *b = Bm + (size_t)k * ldb;
            const __m512 x = _mm512_set1_ps(A[(size_t)k * sk]);
            c0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m0, b), c0);
            c1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m1, b + 16), c1);
        }
        _mm512_mask_storeu_ps(C, m0, c0);
        _mm512_mask_storeu_ps(C + 16, m1, c1);
        return;
    }
    const float *a[MR], *s[MR]; /* s: where each row's start values come from */
    const int acc = init == C;  /* a later k-block (gemm.h): every row starts from its C row */
    for (int r = 0; r < MR; r++) {
        a[r] = A + (size_t)(r < rb ? r : rb - 1) * sr;
        s[r] = acc ? C + (size_t)(r < rb ? r : rb - 1) * ldc : init;
    }
#define START(r, m, off) (init ? _mm512_maskz_loadu_ps(m, s[r] + (off)) : _mm512_setzero_ps())
    __m512 c00 = START(0, m0, 0), c01 = START(0, m1, 16), c10 = START(1, m0, 0);
    __m512 c11 = START(1, m1, 16), c20 = START(2, m0, 0), c21 = START(2, m1, 16);
    __m512 c30 = START(3, m0, 0), c31 = START(3, m1, 16), c40 = START(4, m0, 0);
    __m512 c41 = START(4, m1, 16), c50 = START(5, m0, 0), c51 = START(5, m1, 16);
    __m512 c60 = START(6, m0, 0), c61 = START(6, m1, 16), c70 = START(7, m0, 0);
    __m512 c71 = START(7, m1, 16);
#undef START
    for (int k = 0; k < K; k++) {
        const float *b = Bm + (size_t)k * ldb;
        const size_t o = (size_t)k * sk;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
        const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + 16);
        __m512 x;
#define ROW(r, c0, c1)                           \
    x = _mm512_set1_ps(a[r][o]);                 \
    c0 = _mm512_fmadd_ps(x, b0, c0);             \
    c1 = _mm512_fmadd_ps(x, b1, c1);
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21) ROW(3, c30, c31)
        ROW(4, c40, c41) ROW(5, c50, c51) ROW(6, c60, c61) ROW(7, c70, c71)
#undef ROW
    }
    __m512 out[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                         {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    for (int r = 0; r < rb; r++) {
        _mm512_mask_storeu_ps(C + (size_t)r * ldc, m0, out[r][0]);
        _mm512_mask_storeu_ps(C + (size_t)r * ldc + 16, m1, out[r][1]);
    }
}

void fm_gemv_avx512(float *y, const float *x, const float *W, int ldw, int K, int nb,
                    const float *init) {
    __mmask16 m[8];
    __m512 c[8];
    for (int v = 0; v < 8; v++) {
        const int left = nb - 16 * v;
        m[v] = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        c[v] = init ? _mm512_maskz_loadu_ps(m[v], init + 16 * v) : _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) { /* element j: init + x[0] w[0][j] + x[1] w[1][j] + ... */
        const float *w = W + (size_t)k * ldw;
        const __m512 xk = _mm512_set1_ps(x[k]);
        for (int v = 0; v < 8; v++)
            c[v] = _mm512_fmadd_ps(xk, _mm512_maskz_loadu_ps(m[v], w + 16 * v), c[v]);
    }
    for (int v = 0; v < 8; v++) _mm512_mask_storeu_ps(y + 16 * v, m[v], c[v]);
}

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
