/* vmath_avx2.c — the vmath.h loops for AVX2+FMA (compiled with -mavx2 -mfma; used only
 * when the CPU has both, see vmath.c). */
#include "vmath.h"

#define VM_SFX avx2
#include "vmath_impl.h"
