/* optim.c — in-place optimizer updates and gradient clipping.
 *
 * Each rule follows the update written in the torch.optim documentation of the
 * optimizer with the same name (single-tensor path, maximize=False), computed in
 * the parameters' precision; DeltaBarDelta follows Jacobs (1988). Updates are
 * elementwise, so any split over threads gives the same result; the clipping norm
 * is summed in a fixed order for the same reason: layer by layer, panel by panel
 * for a layer of panel width (so the sum is the same whether the gradient is in
 * the panel layout or row-major), in fixed blocks otherwise. The update loops are
 * compiled per ISA (isa.h); Adam multiplies by 1/sqrt(1 - beta2^t) where PyTorch
 * divides by its square root (a difference of at most an ulp). */
#include <math.h>

#include "isa.h"
#include "kernels.h"

#define FM_NORM_BLOCKS 64 /* fixed partition of the squared-norm reduction */

#define FM_TEMPLATE "optim_impl.h"
#include "instantiate.h"
