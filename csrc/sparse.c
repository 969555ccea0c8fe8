/* sparse.c — a dense layer on sparse input (CSR rows): the forward product fused with
 * the bias and activation, and the weight gradient as the transposed sparse product. The
 * engine uses them for layer 0 when its X is a CSR matrix (fm_*_csr in fastmlp.h); the
 * input gradient is never needed there.
 *
 * Work is split so that each output element is summed by one thread in a fixed order:
 * rows of Y in the forward pass, column blocks of dW in the backward pass. Results do not
 * depend on the thread count. */
#include <string.h>

#include "isa.h"
#include "kernels.h"
#include "sparse.h"

#define FM_TEMPLATE "sparse_impl.h"
#include "instantiate.h"
