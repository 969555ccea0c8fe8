/* peak.c — the machine's float32 FMA peak: every thread runs independent chains of
 * fused multiply-adds on the widest vectors the CPU has (AVX-512, else AVX2+FMA), long
 * enough to hide FMA latency. Prints "threads GFLOP/s" lines for 1 thread and for all.
 * Built and run by benchmarks/peak.py; the chains are chosen at run time, so the build
 * needs no -march flag. With PEAK_CPU_TIME in the environment it times by CPU time. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Independent FMA chains: enough to cover the FMA latency on two pipes (4 cycles x 2 = 8),
 * few enough that the chains and the two constants stay in registers: AVX2 has 16 vector
 * registers (16 chains spilled three of them to the stack, whose store-load round trips
 * halved the measured peak), AVX-512 has 32. */
#define CHAINS 16
#define CHAINS256 12

__attribute__((target("avx512f,fma"))) static float chains512(long iters) {
    __m512 a[CHAINS];
    for (int k = 0; k < CHAINS; k++) a[k] = _mm512_set1_ps(1.0f + k * 1e-3f);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < CHAINS; k++) a[k] = _mm512_fmadd_ps(a[k], m, c);
    }
    __m512 s = a[0];
    for (int k = 1; k < CHAINS; k++) s = _mm512_add_ps(s, a[k]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float chains256(long iters) {
    __m256 a[CHAINS256];
    for (int k = 0; k < CHAINS256; k++) a[k] = _mm256_set1_ps(1.0f + k * 1e-3f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < CHAINS256; k++) a[k] = _mm256_fmadd_ps(a[k], m, c);
    }
    float out[8];
    __m256 s = a[0];
    for (int k = 1; k < CHAINS256; k++) s = _mm256_add_ps(s, a[k]);
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

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
    const int lanes = wide ? 16 : 8;
    const long iters = 20000000;
    printf("isa %s\n", wide ? "avx512" : "avx2");
    const int counts[2] = {1, omp_get_max_threads()};
    for (int c = 0; c < (counts[1] > 1 ? 2 : 1); c++) {
        double best = 1e30;
        volatile float sink = 0;
        for (int rep = 0; rep < 5; rep++) {
            const double t = cpu_time ? process_seconds() : omp_get_wtime();
#pragma omp parallel num_threads(counts[c]) reduction(+ : sink)
            sink += wide ? chains512(iters) : chains256(iters);
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
