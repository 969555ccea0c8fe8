/* blas.h — the BLAS-backed dense-layer path: the products of the dense layer through a
 * BLAS's sgemm/dgemm (Fortran interface, column-major), handed over at run time as
 * function pointers (the Python layer takes SciPy's from scipy.linalg.cython_blas).
 * Kernel set FM_KERNEL_BLAS (gemm.h) selects it; without a registered BLAS it is not
 * available. Covered: the dense forward pass (bias and activation as a pass over each
 * output block), the input gradient (activation derivative likewise) and the weight
 * gradient (bias gradient by our own loop). Not covered (they run the portable C code):
 * sparse first layers, pruned layers and the panel layouts (the set has no panels). */
#ifndef FASTMLP_BLAS_H
#define FASTMLP_BLAS_H

/* ?gemm: C = alpha op(A) op(B) + beta C, column-major, LP64 integers (the reference BLAS
 * interface, as scipy.linalg.cython_blas exports it) */
typedef void (*fm_gemm_fn_f32)(char *transa, char *transb, int *m, int *n, int *k,
                               float *alpha, float *a, int *lda, float *b, int *ldb,
                               float *beta, float *c, int *ldc);
typedef void (*fm_gemm_fn_f64)(char *transa, char *transb, int *m, int *n, int *k,
                               double *alpha, double *a, int *lda, double *b, int *ldb,
                               double *beta, double *c, int *ldc);
/* The BLAS's own thread count (OpenBLAS: openblas_get/set_num_threads) */
typedef int (*fm_blas_get_threads_fn)(void);
typedef void (*fm_blas_set_threads_fn)(int threads);

/* Hands the engine a BLAS, once: returns 0, or -1 when sgemm or dgemm is NULL or a BLAS is
 * registered already (nothing changes). get/set may be NULL: the BLAS's threads cannot be
 * limited then, and the path calls it from one thread of ours, letting it thread itself. */
int fm_blas_register(fm_gemm_fn_f32 sgemm, fm_gemm_fn_f64 dgemm, fm_blas_get_threads_fn get,
                     fm_blas_set_threads_fn set);
/* 1 when a BLAS is registered */
int fm_blas_ready(void);
/* 1 when its thread count can be limited (the path then runs on our threads) */
int fm_blas_threads_controlled(void);

/* The dense-layer products on the BLAS, same contracts as fm_dense_forward,
 * fm_dense_backward_params (row-major dW) and fm_dense_backward_input (row-major W) in
 * kernels.h. The output is split into fixed blocks, one BLAS call each, spread over nt
 * threads with the BLAS held to one thread of its own during the call: the calls, and so
 * the results, do not depend on nt. */
#define FM_BLAS_KERNELS(T, SFX)                                                                \
    /* Y (B, O) = act(X (B, I) @ W (I, O) + b (O)) */                                          \
    void fm_blas_forward_##SFX(T *Y, const T *X, const T *W, const T *b, int B, int I, int O, \
                               int act, double slope, int nt);                                 \
    /* dW (I, O) = X (B, I)^T @ D (B, O);  db (O) = sum over rows of D */                      \
    void fm_blas_backward_params_##SFX(T *dW, T *db, const T *X, const T *D, int B, int I,    \
                                       int O, int nt);                                         \
    /* dX (B, I) = (D (B, O) @ W (I, O)^T) * act'(A (B, I)); A == NULL: no factor */          \
    void fm_blas_backward_input_##SFX(T *dX, const T *D, const T *W, const T *A, int B, int I, \
                                      int O, int act, double slope, int nt);
FM_BLAS_KERNELS(float, f32)
FM_BLAS_KERNELS(double, f64)
#undef FM_BLAS_KERNELS

#endif
