/* dense.c — the dense layer: fused forward (matmul + bias + activation) and the
 * backward kernels (weight/bias gradients, input gradient with the previous
 * layer's activation derivative fused), as drivers that spread register tiles over
 * threads. float32 tiles come from the selected ISA kernels (gemm.h); float64 and the
 * generic path use the portable C tiles below, compiled per ISA by target_clones.
 *
 * Parallel work is split so that each output element is computed by exactly one
 * thread in a fixed order: results do not depend on the thread count. */
#ifdef FASTMLP_HAVE_OPENMP
#include <omp.h>
#endif

#include "gemm.h"
#include "isa.h"
#include "kernels.h"

#define FM_TEMPLATE "dense_impl.h"
#include "instantiate.h"
