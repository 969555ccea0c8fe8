/* dispatch.c — which tile kernels run (float32 and float64): chosen once from the CPU's
 * features (AVX-512F > AVX2+FMA > a registered BLAS (blas.c) > portable C), overridable by
 * FASTMLP_KERNEL=generic|avx2|avx512|blas or fm_kernel_select (tests run every path the
 * machine supports). The AVX-512 set takes its float64 transposing copy from the AVX2 one.
 * The BLAS set has no tiles: the dense layer's products go to blas.c, the rest runs the
 * portable C code. */
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "gemm.h"

#define PORTABLE_SET {{4, 64, NULL, NULL, 0, NULL}, {4, 64, NULL, NULL, 0, NULL}}
#define AVX2_F64 {6, 8, fm_tile_avx2_f64, fm_pack_t_avx2_f64, 512, fm_gemv_avx2_f64}

#ifdef FASTMLP_X86_KERNELS
static const fm_kernel_set SETS[FM_KERNEL_COUNT] = {
    PORTABLE_SET,
    {{6, 16, fm_tile_avx2, fm_pack_t_avx2, 1024, fm_gemv_avx2}, AVX2_F64},
    {{8, 32, fm_tile_avx512, fm_pack_t_avx512, 1024, fm_gemv_avx512},
     {8, 16, fm_tile_avx512_f64, fm_pack_t_avx2_f64, 512, fm_gemv_avx512_f64}},
    PORTABLE_SET,
};
#else /* the x86 sets are never available: portable placeholders */
static const fm_kernel_set SETS[FM_KERNEL_COUNT] = {PORTABLE_SET, PORTABLE_SET, PORTABLE_SET,
                                                    PORTABLE_SET};
#endif

static int active = -1;

int fm_kernel_available(int kernel) {
    if (kernel == FM_KERNEL_GENERIC) return 1;
    if (kernel == FM_KERNEL_BLAS) return fm_blas_ready();
#ifdef FASTMLP_X86_KERNELS
    __builtin_cpu_init();
    if (kernel == FM_KERNEL_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (kernel == FM_KERNEL_AVX512) /* its float64 transposing copy is the AVX2 one */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
#endif
    return 0;
}

static int from_environment(void) {
    const char *name = getenv("FASTMLP_KERNEL");
    if (!name) return -1;
    if (!strcmp(name, "generic")) return FM_KERNEL_GENERIC;
    if (!strcmp(name, "avx2")) return FM_KERNEL_AVX2;
    if (!strcmp(name, "avx512")) return FM_KERNEL_AVX512;
    if (!strcmp(name, "blas")) return FM_KERNEL_BLAS;
    return -1;
}

int fm_kernel_active(void) {
    if (active < 0) {
        const int wanted = from_environment();
        if (wanted >= 0 && fm_kernel_available(wanted)) {
            active = wanted;
        } else {
            static const int preferred[] = {FM_KERNEL_AVX512, FM_KERNEL_AVX2, FM_KERNEL_BLAS};
            active = FM_KERNEL_GENERIC;
            for (int i = 0; i < 3; i++)
                if (fm_kernel_available(preferred[i])) {
                    active = preferred[i];
                    break;
                }
        }
    }
    return active;
}

int fm_kernel_select(int kernel) {
    if (kernel < FM_KERNEL_GENERIC || kernel >= FM_KERNEL_COUNT || !fm_kernel_available(kernel))
        return -1;
    active = kernel;
    return 0;
}

static unsigned long long calls[FM_KERNEL_COUNT];

const fm_kernel_set *fm_kernels(void) {
    const int k = fm_kernel_active();
    /* called by the drivers outside their parallel regions; fits of several models may
       run at once */
    __atomic_fetch_add(&calls[k], 1, __ATOMIC_RELAXED);
    return &SETS[k];
}

const fm_kernel_set *fm_kernels_uncounted(void) { return &SETS[fm_kernel_active()]; }

unsigned long long fm_kernel_calls(int kernel) {
    if (kernel < 0 || kernel >= FM_KERNEL_COUNT) return 0;
    return __atomic_load_n(&calls[kernel], __ATOMIC_RELAXED);
}
