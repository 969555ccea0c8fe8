/* isa.h — run-time instruction-set dispatch for hot loops.
 * FM_ISA_CLONES makes gcc compile a function for x86-64-v4 (AVX-512), x86-64-v3
 * (AVX2 + FMA) and baseline x86-64, and pick one when the library loads (ifunc; glibc
 * only: on musl it expands to nothing).
 * The package is never built for the build machine's own CPU. Elsewhere it expands to nothing.
 * Keep OpenMP pragmas out of cloned functions: the outlined parallel body would
 * be compiled for the baseline only. Clone the serial tile routine instead. */
#ifndef FASTMLP_ISA_H
#define FASTMLP_ISA_H

#include <limits.h> /* defines __GLIBC__ on glibc: musl's loader has no ifunc */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(FASTMLP_NO_ISA_CLONES)
#define FM_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FM_ISA_CLONES
#endif

#endif
