/* sparse.h — kernels of a dense layer whose input is sparse (rows of a CSR matrix):
 * the forward product and the weight gradient (sparse.c). Shapes as in kernels.h. */
#ifndef FASTMLP_SPARSE_H
#define FASTMLP_SPARSE_H

#include "fastmlp.h"

#define FM_SPARSE_KERNELS(T, SFX)                                                               \
    /* Y (B, O) = act(X[rows] (B, I) @ W (I, O) + b (O)), X a CSR matrix of the layer's I     \
       columns: batch row i is row rows[i] of X (r0 + i when rows is NULL). nr > 0: W in the  \
       training panel layout (O / nr panels of (I, nr), layout.c); 0: row-major. Each row of  \
       Y is summed by one thread over its row's entries in stored order. */                    \
    void fm_csr_forward_##SFX(T *Y, const fm_csr *X, const int64_t *rows, int64_t r0,         \
                              const T *W, const T *b, int B, int I, int O, int act,           \
                              double slope, int nt, int nr);                                    \
    /* dW (I, O) = X[rows]^T (I, B) @ D (B, O), db (O) = sums over the rows of D; rows, nr as \
       above. Threads own column blocks of dW; each element is summed over the batch rows in  \
       order, so the result does not depend on the thread count. */                           \
    void fm_csr_backward_params_##SFX(T *dW, T *db, const fm_csr *X, const int64_t *rows,     \
                                      int64_t r0, const T *D, int B, int I, int O, int nt,     \
                                      int nr);

FM_SPARSE_KERNELS(float, f32)
FM_SPARSE_KERNELS(double, f64)
#undef FM_SPARSE_KERNELS

#endif
