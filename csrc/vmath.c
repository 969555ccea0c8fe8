/* vmath.c — the portable vmath.h loops (baseline instruction set) and the choice of set
 * for the active kernel path. */
#include "vmath.h"

#include "gemm.h"

#define VM_SFX generic
#include "vmath_impl.h"

#define VM_SET(SFX) {fm_vexp_f32_##SFX, fm_vexp_f64_##SFX, fm_vsigmoid_f32_##SFX, fm_vsigmoid_f64_##SFX}
/* one entry per kernel path (gemm.h's FM_KERNEL_*): the BLAS path, which stands for CPUs
 * without hand kernels, and every path of a build without them take the portable loops */
#ifdef FASTMLP_X86_KERNELS
static const fm_vmath_set SETS[FM_KERNEL_COUNT] = {
    [FM_KERNEL_GENERIC] = VM_SET(generic), [FM_KERNEL_AVX2] = VM_SET(avx2),
    [FM_KERNEL_AVX512] = VM_SET(avx2), [FM_KERNEL_BLAS] = VM_SET(generic)};
#else
static const fm_vmath_set SETS[FM_KERNEL_COUNT] = {
    [FM_KERNEL_GENERIC] = VM_SET(generic), [FM_KERNEL_AVX2] = VM_SET(generic),
    [FM_KERNEL_AVX512] = VM_SET(generic), [FM_KERNEL_BLAS] = VM_SET(generic)};
#endif

const fm_vmath_set *fm_vmath(void) { return &SETS[fm_kernel_active()]; }
