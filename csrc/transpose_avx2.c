/* transpose_avx2.c — AVX2 transposing copy for the float32 kernel set (compiled with
 * -mavx2; called only when the CPU has AVX2, see dispatch.c): 8x8 blocks through
 * registers, the tails element by element. It makes a layer's input transposed for its
 * weight gradient (X^T once per step instead of reading columns of X at a stride of I
 * floats) and the panels of W^T that the input gradient reads; before it, the AVX2 set
 * had none and both went through scalar copies. A copy: results are unchanged. */
#include <immintrin.h>

#include "gemm.h"

/* r[j][i] <- r[i][j]: pairs, then 2x2 blocks within 128-bit lanes, then the lanes */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) { /* s[4g + c]: rows 4g..4g+3 of columns c and 4 + c */
        s[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        s[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        s[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        s[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
    }
}

void fm_pack_t_avx2(float *buf, int nr, const float *M, int ldm, int nb, int K) {
    const int qfull = nb - nb % 8, kfull = K - K % 8;
    for (int q0 = 0; q0 < qfull; q0 += 8) {
        for (int k0 = 0; k0 < kfull; k0 += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(M + (size_t)(q0 + i) * ldm + k0);
            transpose8(r);
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(buf + (size_t)(k0 + t) * nr + q0, r[t]);
        }
        for (int q = q0; q < q0 + 8; q++) /* the last K % 8 columns of M */
            for (int k = kfull; k < K; k++) buf[(size_t)k * nr + q] = M[(size_t)q * ldm + k];
    }
    for (int q = qfull; q < nb; q++) /* the last nb % 8 rows of M */
        for (int k = 0; k < K; k++) buf[(size_t)k * nr + q] = M[(size_t)q * ldm + k];
}
