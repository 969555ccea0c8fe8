/* transpose_avx2.c — AVX2 transposing copies for the AVX2 kernel set (compiled with
 * -mavx2; called only when the CPU has AVX2, see dispatch.c): float32 in 8x8 blocks
 * through registers, float64 in 4x4 blocks, the tails element by element. They make a
 * layer's input transposed for its weight gradient (X^T once per step instead of reading
 * columns of X at a stride of I elements) and the panels of W^T that the input gradient
 * reads; before them, the AVX2 set had none and both went through scalar copies. Copies:
 * results are unchanged. */
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

/* r[j][i] <- r[i][j] for 4x4 doubles: pairs within 128-bit lanes, then the lanes */
static inline void transpose4(__m256d r[4]) {
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* NAME(buf, nr, M, ldm, nb, K): gemm.h's pack_t for element type T in blocks of L x L
 * (L elements to a vector V, moved by LOAD/STORE, transposed in registers by TRANSPOSE) */
#define FM_PACK_T(NAME, T, V, L, LOAD, STORE, TRANSPOSE)                                      \
    void NAME(T *buf, int nr, const T *M, int ldm, int nb, int K) {                           \
        const int qfull = nb - nb % L, kfull = K - K % L;                                     \
        for (int q0 = 0; q0 < qfull; q0 += L) {                                               \
            for (int k0 = 0; k0 < kfull; k0 += L) {                                           \
                V r[L];                                                                       \
                for (int i = 0; i < L; i++) r[i] = LOAD(M + (size_t)(q0 + i) * ldm + k0);     \
                TRANSPOSE(r);                                                                 \
                for (int t = 0; t < L; t++) STORE(buf + (size_t)(k0 + t) * nr + q0, r[t]);    \
            }                                                                                 \
            for (int q = q0; q < q0 + L; q++) /* the last K % L columns of M */               \
                for (int k = kfull; k < K; k++)                                               \
                    buf[(size_t)k * nr + q] = M[(size_t)q * ldm + k];                         \
        }                                                                                     \
        for (int q = qfull; q < nb; q++) /* the last nb % L rows of M */                      \
            for (int k = 0; k < K; k++) buf[(size_t)k * nr + q] = M[(size_t)q * ldm + k];     \
    }

FM_PACK_T(fm_pack_t_avx2, float, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, transpose8)
FM_PACK_T(fm_pack_t_avx2_f64, double, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, transpose4)
