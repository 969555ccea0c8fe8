/* gemm_avx2.c — AVX2+FMA float32 tile kernel (compiled with -mavx2 -mfma; called only
 * when the CPU has both). 6x16 register tile: 12 ymm accumulators; masked tails. */
#include <immintrin.h>

#include "gemm.h"

#define MR 6

static __m256i tail_mask(int n) { /* lanes [0, n) set, n in [0, 8] */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

void fm_tile_avx2(float *C, int ldc, const float *A, size_t sr, size_t sk, const float *Bm,
                  int ldb, int rb, int K, int nb, const float *init) {
    const __m256i m0 = tail_mask(nb >= 8 ? 8 : nb), m1 = tail_mask(nb <= 8 ? 0 : nb >= 16 ? 8 : nb - 8);
    const float *a[MR];
    for (int r = 0; r < MR; r++) a[r] = A + (size_t)(r < rb ? r : rb - 1) * sr;
    const __m256 i0 = init ? _mm256_maskload_ps(init, m0) : _mm256_setzero_ps();
    const __m256 i1 = init ? _mm256_maskload_ps(init + 8, m1) : _mm256_setzero_ps();
    __m256 c00 = i0, c01 = i1, c10 = i0, c11 = i1, c20 = i0, c21 = i1;
    __m256 c30 = i0, c31 = i1, c40 = i0, c41 = i1, c50 = i0, c51 = i1;
    for (int k = 0; k < K; k++) {
        const float *b = Bm + (size_t)k * ldb;
        const size_t o = (size_t)k * sk;
        const __m256 b0 = _mm256_maskload_ps(b, m0);
        const __m256 b1 = _mm256_maskload_ps(b + 8, m1);
        __m256 x;
#define ROW(r, c0, c1)                           \
    x = _mm256_broadcast_ss(a[r] + o);           \
    c0 = _mm256_fmadd_ps(x, b0, c0);             \
    c1 = _mm256_fmadd_ps(x, b1, c1);
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21)
        ROW(3, c30, c31) ROW(4, c40, c41) ROW(5, c50, c51)
#undef ROW
    }
    __m256 out[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < rb; r++) {
        _mm256_maskstore_ps(C + (size_t)r * ldc, m0, out[r][0]);
        _mm256_maskstore_ps(C + (size_t)r * ldc + 8, m1, out[r][1]);
    }
}
