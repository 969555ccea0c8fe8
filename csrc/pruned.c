/* pruned.c — the dense layer's forward pass with sparse (pruned) weights, for predict:
 * W (I, O) given as CSR of its transpose (row o lists the inputs i with W[i][o] != 0),
 * Y (B, O) = act(X (B, I) @ W + b). The batch is transposed so that every non-zero weight
 * is one axpy over the batch (vectorized over rows), then transposed back.
 *
 * Each output unit is computed by exactly one thread, summing its non-zeros in CSR order:
 * results do not depend on the thread count. They equal the dense product's up to
 * rounding (another summation order; the pruned terms are exact zeros there). */
#include <string.h>

#include "isa.h"
#include "kernels.h"

#define FM_CSR_ROWS 64  /* rows per transposed block: 64 x 1024 inputs x 4 bytes = 256 KB */
#define FM_CSR_STRIP 16 /* rows whose sums stay in registers */

#define FM_TEMPLATE "pruned_impl.h"
#include "instantiate.h"
