/* optim.c — in-place optimizer updates and gradient clipping.
 *
 * Each rule follows the update written in the torch.optim documentation of the
 * optimizer with the same name (single-tensor path, maximize=False), computed in
 * the parameters' precision; DeltaBarDelta follows Jacobs (1988). Updates are
 * elementwise, so any split over threads, or into the register tiles of the weight
 * gradient (the fused update, dense_impl.h), gives the same result; the clipping norm
 * is summed in a fixed order for the same reason: layer by layer, panel by panel
 * for a layer of panel width (so the sum is the same whether the gradient is in
 * the panel layout or row-major), in fixed blocks otherwise. The update loops are
 * compiled per ISA (isa.h); Adam multiplies by 1/sqrt(1 - beta2^t) where PyTorch
 * divides by its square root (a difference of at most an ulp). */
#include <math.h>

#include "cpuinfo.h"
#include "isa.h"
#include "kernels.h"

#define FM_NORM_BLOCKS 64 /* fixed partition of the squared-norm reduction */

/* The fused update's switch: 1 on, 0 off, -1 the machine's default (cpuinfo.h's
 * fm_fused_update_default; _engine applies FASTMLP_FUSED_UPDATE) */
static int fused_on = -1;
static unsigned long long fused_calls = 0;

int fm_fused_update_enabled(void) {
    const int on = __atomic_load_n(&fused_on, __ATOMIC_RELAXED);
    return on < 0 ? fm_fused_update_default() : on;
}

void fm_fused_update_set(int on) {
    __atomic_store_n(&fused_on, on < 0 ? -1 : on != 0, __ATOMIC_RELAXED);
}

unsigned long long fm_fused_update_calls(void) {
    return __atomic_load_n(&fused_calls, __ATOMIC_RELAXED);
}

void fm_fused_update_count(unsigned long long layers) {
    __atomic_fetch_add(&fused_calls, layers, __ATOMIC_RELAXED);
}

#define FM_TEMPLATE "optim_impl.h"
#include "instantiate.h"
