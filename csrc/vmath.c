/* vmath.c — the portable vmath.h loops (baseline instruction set) and the choice of set
 * for the active kernel path. */
#include "vmath.h"

#include "gemm.h"

#define VM_SFX generic
#include "vmath_impl.h"

#ifdef FASTMLP_X86_KERNELS
#define VM_SET(SFX) {fm_vexp_f32_##SFX, fm_vexp_f64_##SFX, fm_vsigmoid_f32_##SFX, fm_vsigmoid_f64_##SFX}
static const fm_vmath_set SETS[3] = {VM_SET(generic), VM_SET(avx2), VM_SET(avx2)};
#else
static const fm_vmath_set SETS[1] = {
    {fm_vexp_f32_generic, fm_vexp_f64_generic, fm_vsigmoid_f32_generic, fm_vsigmoid_f64_generic}};
#endif

const fm_vmath_set *fm_vmath(void) { return &SETS[fm_kernel_active()]; }
