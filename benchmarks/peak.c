/* peak.c — the machine's float32 (or float64) FMA peak: every thread runs independent
 * chains of fused multiply-adds on the widest vectors the CPU has (AVX-512, else
 * AVX2+FMA), long enough to hide FMA latency. Prints "threads GFLOP/s" lines for 1 thread
 * and for all. Built and run by benchmarks/peak.py; the chains are chosen at run time, so
 * the build needs no -march flag. With PEAK_CPU_TIME in the environment it times by CPU
 * time; with PEAK_FLOAT64, it runs float64 chains (half the lanes). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Independent FMA chains: enough to cover the FMA latency on two pipes (4 cycles x 2 = 8),
 * few enough that the chains and the two constants stay in registers: AVX2 has 16 vector
 * registers (16 chains spilled three of them to the stack, whose store-load round trips
 * halved the measured peak), AVX-512 has 32. */
#define CHAINS 16
#define CHAINS256 12

/* NAME(iters): N independent chains of FMAs on vectors V of T (SET1 broadcasts, FMA and
 * ADD as the intrinsics), compiled for TARGET; returns a sum of the chains (a sink) */
#define CHAINS_FN(NAME, TARGET, V, T, N, SET1, FMA, ADD)                                     \
    __attribute__((target(TARGET))) static double NAME(long iters) {                        \
        V a[N];                                                                              \
        for (int k = 0; k < N; k++) a[k] = SET1((T)(1.0 + k * 1e-3));                       \
        const V m = SET1((T)0.999999), c = SET1((T)1e-6);                                    \
        for (long i = 0; i < iters; i++) {                                                   \
            _Pragma("GCC unroll 16") for (int k = 0; k < N; k++) a[k] = FMA(a[k], m, c);     \
        }                                                                                    \
        V s = a[0];                                                                          \
        for (int k = 1; k < N; k++) s = ADD(s, a[k]);                                        \
        T out[sizeof(V) / sizeof(T)];                                                        \
        memcpy(out, &s, sizeof s);                                                           \
        return (double)out[0] + (double)out[sizeof(V) / sizeof(T) - 1];                      \
    }

CHAINS_FN(chains512, "avx512f,fma", __m512, float, CHAINS, _mm512_set1_ps, _mm512_fmadd_ps,
          _mm512_add_ps)
CHAINS_FN(chains256, "avx2,fma", __m256, float, CHAINS256, _mm256_set1_ps, _mm256_fmadd_ps,
          _mm256_add_ps)
CHAINS_FN(chains512d, "avx512f,fma", __m512d, double, CHAINS, _mm512_set1_pd, _mm512_fmadd_pd,
          _mm512_add_pd)
CHAINS_FN(chains256d, "avx2,fma", __m256d, double, CHAINS256, _mm256_set1_pd, _mm256_fmadd_pd,
          _mm256_add_pd)

/* CPU seconds of the whole process (all its threads) */
static double process_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    /* PEAK_CPU_TIME set: time by the CPU seconds each thread ran, so that a core's peak is
       measured while other processes share the machine; else by wall time */
    const int cpu_time = getenv("PEAK_CPU_TIME") != NULL;
    __builtin_cpu_init();
    const int wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        printf("no AVX2/FMA: not measured\n");
        return 1;
    }
    const int f64 = getenv("PEAK_FLOAT64") != NULL;
    const int lanes = (wide ? 16 : 8) / (f64 ? 2 : 1);
    const long iters = 20000000;
    printf("isa %s\n", wide ? "avx512" : "avx2");
    const int counts[2] = {1, omp_get_max_threads()};
    for (int c = 0; c < (counts[1] > 1 ? 2 : 1); c++) {
        double best = 1e30;
        volatile double sink = 0;
        for (int rep = 0; rep < 5; rep++) {
            const double t = cpu_time ? process_seconds() : omp_get_wtime();
#pragma omp parallel num_threads(counts[c]) reduction(+ : sink)
            sink += wide ? (f64 ? chains512d(iters) : chains512(iters))
                         : (f64 ? chains256d(iters) : chains256(iters));
            const double dt = cpu_time ? (process_seconds() - t) / counts[c]
                                       : omp_get_wtime() - t;
            if (dt < best) best = dt;
        }
        /* the chains that ran: 12 on AVX2 (counting 16 there overstated the peak by 4/3) */
        const double flops = 2.0 * lanes * (wide ? CHAINS : CHAINS256) * (double)iters * counts[c];
        printf("%d %.1f\n", counts[c], flops / best / 1e9);
    }
    return 0;
}
