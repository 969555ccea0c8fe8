/* blas.c — the BLAS-backed dense-layer path (blas.h): the registered sgemm/dgemm, the
 * BLAS's own thread count held at one while our threads call it, and the drivers
 * (blas_impl.h, per dtype).
 *
 * Threads: each output is split into fixed blocks of at most FM_BLAS_ROWS x FM_BLAS_COLS
 * (from the shapes alone), one BLAS call each, spread over our OpenMP threads, so every
 * thread count makes the same calls on the same operands: results do not depend on it.
 * A multithreaded BLAS must not be called inside our parallel region (its threads would
 * compete with ours), so while any call of this path runs the BLAS is held to one thread
 * (its own count is restored when the last one returns). A BLAS whose count cannot be
 * set (no get/set registered) is called from one thread of ours and threads as it likes. */
#ifdef FASTMLP_HAVE_OPENMP
#include <omp.h>
#endif

#include <pthread.h>
#include <stddef.h>

#include "blas.h"
#include "gemm.h"
#include "kernels.h"

/* Block of the output of one BLAS call: rows (batch rows, or input units of dW) x columns
 * (units of the layer). Columns of 128 give a 512-wide layer four blocks for the threads
 * to share (a 256-wide one two); measured on one thread (784-512-256-10, Zen 4, OpenBLAS
 * Haswell kernels) they cost 6-10% of CPU time against one call per product, blocks of
 * 256 columns 2-4% (benchmarks/RESULTS.md, issue 18's BLAS section). */
#define FM_BLAS_ROWS 512
#define FM_BLAS_COLS 128

static fm_gemm_fn_f32 gemm_f32 = NULL;
static fm_gemm_fn_f64 gemm_f64 = NULL;
static fm_blas_get_threads_fn get_threads = NULL;
static fm_blas_set_threads_fn set_threads = NULL;

int fm_blas_register(fm_gemm_fn_f32 sgemm, fm_gemm_fn_f64 dgemm, fm_blas_get_threads_fn get,
                     fm_blas_set_threads_fn set) {
    if (!sgemm || !dgemm || gemm_f32) return -1;
    get_threads = get && set ? get : NULL;
    set_threads = get && set ? set : NULL;
    gemm_f64 = dgemm;
    gemm_f32 = sgemm; /* last: fm_blas_ready reads it */
    return 0;
}

int fm_blas_ready(void) { return gemm_f32 != NULL; }

int fm_blas_threads_controlled(void) { return set_threads != NULL; }

/* Calls of this path in flight (any thread of the process) and the BLAS's thread count
 * from before the first of them. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static int holders = 0, saved_threads = 1;

/* The BLAS on one thread of its own until release_blas (no-op without set_threads). */
static void hold_blas(void) {
    if (!set_threads) return;
    pthread_mutex_lock(&hold_lock);
    if (holders++ == 0) {
        saved_threads = get_threads();
        if (saved_threads != 1) set_threads(1);
    }
    pthread_mutex_unlock(&hold_lock);
}

static void release_blas(void) {
    if (!set_threads) return;
    pthread_mutex_lock(&hold_lock);
    if (--holders == 0 && saved_threads != 1) set_threads(saved_threads);
    pthread_mutex_unlock(&hold_lock);
}

/* Whether `blocks` calls of `macs` multiply-adds in all are worth a team of nt threads */
static int blas_team(int nt, int blocks, double macs) {
    return nt > 1 && blocks > 1 && macs >= FM_PARALLEL_MIN_MACS && set_threads != NULL;
}

#define FM_TEMPLATE "blas_impl.h"
#include "instantiate.h"
