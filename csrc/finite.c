/* finite.c — is every element of an array finite? The input check of every public call
 * (NaN/inf must raise, never train or predict silently wrong), so it must cost little
 * next to the work it guards: one vectorized pass, (x - x) is 0 for finite x and NaN
 * otherwise, summed per block; blocks spread over threads for large arrays. */
#include <math.h>
#include <stddef.h>

#include "isa.h"
#include "kernels.h"

#define FM_FINITE_BLOCK 65536

#define FM_FINITE(T, SFX)                                                                      \
    FM_ISA_CLONES                                                                               \
    static int block_finite_##SFX(const T *x, size_t n) {                                      \
        T acc[16] = {0};                                                                        \
        size_t i = 0;                                                                           \
        for (; i + 16 <= n; i += 16)                                                            \
            for (int k = 0; k < 16; k++) acc[k] += x[i + k] - x[i + k];                         \
        for (; i < n; i++) acc[0] += x[i] - x[i];                                               \
        T s = 0;                                                                                \
        for (int k = 0; k < 16; k++) s += acc[k];                                               \
        return s == 0;                                                                          \
    }                                                                                           \
    int fm_all_finite_##SFX(const T *x, size_t n, int n_threads) {                             \
        const size_t blocks = (n + FM_FINITE_BLOCK - 1) / FM_FINITE_BLOCK;                      \
        const int nt = fm_usable_threads(n_threads);                                            \
        int ok = 1;                                                                             \
        _Pragma("omp parallel for schedule(static) num_threads(nt) reduction(&& : ok) if (nt > 1 && blocks > 4)") \
        for (size_t b = 0; b < blocks; b++) {                                                   \
            const size_t lo = b * FM_FINITE_BLOCK;                                              \
            const size_t m = n - lo < FM_FINITE_BLOCK ? n - lo : FM_FINITE_BLOCK;               \
            ok = ok && block_finite_##SFX(x + lo, m);                                           \
        }                                                                                       \
        return ok;                                                                              \
    }

FM_FINITE(float, f32)
FM_FINITE(double, f64)
