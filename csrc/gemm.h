/* gemm.h — the tile kernels behind the dense layer (float32 and float64), one set per
 * instruction set, and the run-time choice between them.
 *
 *   tile:  C (rb, nb) = init (nb) + sum_k a(r, k) * Bm[k*ldb + j], j < nb,
 *          a(r, k) = A[r*sr + k*sk]; rb <= mr, nb <= nr; init NULL means zero.
 *          init == C: each row r starts from C's own row r instead, and the chain of
 *          multiply-adds goes on from there (a later k-block of a product split over k:
 *          the same operations in the same order as one call over all k, so the result is
 *          bitwise the same whatever the blocks; dense_impl.h's packed_product).
 *          (forward: A = X, Bm = a weight panel; weight gradient: A = X read transposed,
 *          Bm = a panel of the deltas, or for a narrow layer A = D read transposed, Bm =
 *          X's rows; input gradient: A = D, Bm = a panel of W^T)
 *
 * Each output element is computed by one call in a fixed order, so results do not
 * depend on how the driver spreads tiles over threads. */
#ifndef FASTMLP_GEMM_H
#define FASTMLP_GEMM_H

#include <stddef.h>

/* FM_KERNEL_BLAS: no tiles; the dense layer's products through a registered BLAS (blas.h) */
typedef enum {
    FM_KERNEL_GENERIC = 0,
    FM_KERNEL_AVX2 = 1,
    FM_KERNEL_AVX512 = 2,
    FM_KERNEL_BLAS = 3,
    FM_KERNEL_COUNT = 4
} fm_kernel;

typedef void (*fm_tile_fn_f32)(float *C, int ldc, const float *A, size_t sr, size_t sk,
                               const float *Bm, int ldb, int rb, int K, int nb,
                               const float *init);
typedef void (*fm_tile_fn_f64)(double *C, int ldc, const double *A, size_t sr, size_t sk,
                               const double *Bm, int ldb, int rb, int K, int nb,
                               const double *init);

/* gemv:  y (nb) = init (nb) + sum_k x[k] * W[k*ldw + j], j < nb <= gemv_nb: one row
 *        through many columns at once (batch 1; init may be NULL: from 0). Every element
 *        is the same FMA chain, in the same order, as in `tile`, so a row's result does not
 *        depend on the path. y may overlap none of x, W and init (it is the accumulator). */
typedef void (*fm_gemv_fn_f32)(float *y, const float *x, const float *W, int ldw, int K,
                               int nb, const float *init);
typedef void (*fm_gemv_fn_f64)(double *y, const double *x, const double *W, int ldw, int K,
                               int nb, const double *init);

/* pack_t: buf[k*nr + q] = M[q*ldm + k] for q < nb <= nr, k < K: a panel of M^T from nb
 *         rows of M (the input-gradient product reads W^T). Columns q >= nb are left as
 *         they were. */
typedef void (*fm_pack_t_fn_f32)(float *buf, int nr, const float *M, int ldm, int nb, int K);
typedef void (*fm_pack_t_fn_f64)(double *buf, int nr, const double *M, int ldm, int nb, int K);

/* The tiles of one dtype. */
#define FM_TILES(SFX)                                                                         \
    typedef struct {                                                                          \
        int mr, nr;                  /* tile shape of `tile` */                               \
        fm_tile_fn_##SFX tile;       /* NULL: use the generic C tile */                       \
        fm_pack_t_fn_##SFX pack_t;   /* NULL: the portable transposing copy */                \
        int gemv_nb;                 /* columns per `gemv` call */                            \
        fm_gemv_fn_##SFX gemv;       /* NULL: one-row products go through `tile` */          \
    } fm_tiles_##SFX;
FM_TILES(f32)
FM_TILES(f64)
#undef FM_TILES

typedef struct {
    fm_tiles_f32 f32;
    fm_tiles_f64 f64;
} fm_kernel_set;

static inline const fm_tiles_f32 *fm_tiles_of_f32(const fm_kernel_set *k) { return &k->f32; }
static inline const fm_tiles_f64 *fm_tiles_of_f64(const fm_kernel_set *k) { return &k->f64; }

/* The kernel set in use: the best the CPU supports (a registered BLAS where no hand tiles
 * apply), or the one named by the environment variable FASTMLP_KERNEL (generic, avx2,
 * avx512, blas) or by fm_kernel_select. */
const fm_kernel_set *fm_kernels(void);
/* The same set, without counting a call. */
const fm_kernel_set *fm_kernels_uncounted(void);
int fm_kernel_active(void);
int fm_kernel_available(int kernel);
/* Returns 0 and switches, or -1 (unknown or unsupported here: nothing changes). */
int fm_kernel_select(int kernel);
/* Dense-layer calls (either dtype) served by each kernel set so far (tests read it to see
 * which path ran). */
unsigned long long fm_kernel_calls(int kernel);

#ifdef FASTMLP_X86_KERNELS
void fm_tile_avx512(float *C, int ldc, const float *A, size_t sr, size_t sk, const float *Bm,
                    int ldb, int rb, int K, int nb, const float *init);
void fm_tile_avx512_f64(double *C, int ldc, const double *A, size_t sr, size_t sk,
                        const double *Bm, int ldb, int rb, int K, int nb, const double *init);
void fm_tile_avx2(float *C, int ldc, const float *A, size_t sr, size_t sk, const float *Bm,
                  int ldb, int rb, int K, int nb, const float *init);
void fm_tile_avx2_f64(double *C, int ldc, const double *A, size_t sr, size_t sk,
                      const double *Bm, int ldb, int rb, int K, int nb, const double *init);
void fm_gemv_avx512(float *y, const float *x, const float *W, int ldw, int K, int nb,
                    const float *init);
void fm_gemv_avx512_f64(double *y, const double *x, const double *W, int ldw, int K, int nb,
                        const double *init);
void fm_gemv_avx2(float *y, const float *x, const float *W, int ldw, int K, int nb,
                  const float *init);
void fm_gemv_avx2_f64(double *y, const double *x, const double *W, int ldw, int K, int nb,
                      const double *init);
void fm_pack_t_avx512(float *buf, int nr, const float *M, int ldm, int nb, int K);
void fm_pack_t_avx2(float *buf, int nr, const float *M, int ldm, int nb, int K);
void fm_pack_t_avx2_f64(double *buf, int nr, const double *M, int ldm, int nb, int K);
#endif

#endif
