/* gemm.h — the float32 tile kernels behind the dense layer, one set per instruction
 * set, and the run-time choice between them.
 *
 *   tile:  C (rb, nb) = init (nb) + sum_k a(r, k) * Bm[k*ldb + j], j < nb,
 *          a(r, k) = A[r*sr + k*sk]; rb <= mr, nb <= nr; init NULL means zero.
 *          (forward: A = X, Bm = a weight panel; weight gradient: A = X read transposed,
 *          Bm = a panel of the deltas; input gradient: A = D, Bm = a panel of W^T)
 *
 * Each output element is computed by one call in a fixed order, so results do not
 * depend on how the driver spreads tiles over threads. */
#ifndef FASTMLP_GEMM_H
#define FASTMLP_GEMM_H

#include <stddef.h>

typedef enum { FM_KERNEL_GENERIC = 0, FM_KERNEL_AVX2 = 1, FM_KERNEL_AVX512 = 2 } fm_kernel;

typedef void (*fm_tile_fn)(float *C, int ldc, const float *A, size_t sr, size_t sk,
                           const float *Bm, int ldb, int rb, int K, int nb, const float *init);

/* gemv:  y (nb) = init (nb) + sum_k x[k] * W[k*ldw + j], j < nb <= gemv_nb: one row
 *        through many columns at once (batch 1). Every element is the same FMA chain, in
 *        the same order, as in `tile`, so a row's result does not depend on the path. */
typedef void (*fm_gemv_fn)(float *y, const float *x, const float *W, int ldw, int K, int nb,
                           const float *init);

/* pack_t: buf[k*nr + q] = M[q*ldm + k] for q < nb <= nr, k < K: a panel of M^T from nb
 *         rows of M (the input-gradient product reads W^T). Columns q >= nb are left as
 *         they were. */
typedef void (*fm_pack_t_fn)(float *buf, int nr, const float *M, int ldm, int nb, int K);

typedef struct {
    int mr, nr;      /* tile shape of `tile` */
    fm_tile_fn tile; /* NULL: use the generic C tile */
    int gemv_nb;     /* columns per `gemv` call */
    fm_gemv_fn gemv; /* NULL: one-row products go through `tile` */
    fm_pack_t_fn pack_t; /* NULL: the portable transposing copy */
} fm_kernel_set;

/* The kernel set in use: the best the CPU supports, or the one named by the environment
 * variable FASTMLP_KERNEL (generic, avx2, avx512) or by fm_kernel_select. */
const fm_kernel_set *fm_kernels(void);
/* The same set, without counting a call. */
const fm_kernel_set *fm_kernels_uncounted(void);
int fm_kernel_active(void);
int fm_kernel_available(int kernel);
/* Returns 0 and switches, or -1 (unknown or unsupported here: nothing changes). */
int fm_kernel_select(int kernel);
/* Float32 dense-layer calls served by each kernel set so far (tests read it to see
 * which path ran). */
unsigned long long fm_kernel_calls(int kernel);

#ifdef FASTMLP_X86_KERNELS
void fm_tile_avx512(float *C, int ldc, const float *A, size_t sr, size_t sk, const float *Bm,
                    int ldb, int rb, int K, int nb, const float *init);
void fm_tile_avx2(float *C, int ldc, const float *A, size_t sr, size_t sk, const float *Bm,
                  int ldb, int rb, int K, int nb, const float *init);
void fm_gemv_avx512(float *y, const float *x, const float *W, int ldw, int K, int nb,
                    const float *init);
void fm_pack_t_avx512(float *buf, int nr, const float *M, int ldm, int nb, int K);
#endif

#endif
