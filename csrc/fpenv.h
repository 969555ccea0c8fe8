/* fpenv.h — subnormal numbers flushed to zero in the engine's arithmetic.
 *
 * On x86-64 an arithmetic instruction that reads or produces a subnormal number (below
 * 2^-126 in float32, 2^-1022 in float64) takes a microcode assist of about a hundred
 * cycles on Intel cores. Training produces them: Adam's first moment of a weight whose
 * gradient stays zero (a dead ReLU unit) decays by beta1 each step into the subnormal
 * range and stays there, so on an Intel Xeon a Fashion-MNIST fit (one thread) took 1.12 s
 * for its first epoch and 2.43 s for its eighth at batch 128, 4.8 s and 10.3 s at batch 32
 * (benchmarks/subnormal.py). With the flush on, the engine runs with
 * MXCSR's FTZ (results below the normal range become zero) and DAZ (subnormal operands
 * read as zero) bits set, as TensorFlow does by default and torch.set_flush_denormal(True)
 * does: then every epoch takes about the first one's time (1.14-1.17 s, 1.64-1.71 s).
 *
 * The mode is per thread. An engine call (_engine.pyx) sets it on its own thread for the
 * call's duration (fm_fp_enter, then fm_fp_leave); every OpenMP region that computes
 * numbers has each of its threads take the mode of the thread that opened it, and at the
 * end the mode the calling thread has outside the call (fm_fp_team, fm_fp_join,
 * fm_fp_part), so results do not depend on the thread count and no other code that
 * shares the OpenMP threads sees the mode change. Regions that only copy (layout.c, the
 * X^T copy) or only test finiteness (finite.c: the outcome is the same either way) are
 * left as they were. Elsewhere than on x86-64 (where subnormals cost little or nothing on
 * current cores) these are no-ops. */
#ifndef FASTMLP_FPENV_H
#define FASTMLP_FPENV_H

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define FM_FP_FLUSH_BITS 0x8040u /* MXCSR: FTZ (bit 15), DAZ (bit 6) */
typedef unsigned fm_fpenv;

/* Whether this thread flushes subnormals now */
static inline int fm_fp_flushing(void) {
    return (_mm_getcsr() & FM_FP_FLUSH_BITS) == FM_FP_FLUSH_BITS;
}

/* Set this thread's mode (on: flush), returning the environment it had */
static inline fm_fpenv fm_fp_flush(int on) {
    const unsigned had = _mm_getcsr();
    const unsigned want = on ? had | FM_FP_FLUSH_BITS : had & ~FM_FP_FLUSH_BITS;
    if (want != had) _mm_setcsr(want);
    return had;
}

/* Give this thread back the environment fm_fp_flush returned */
static inline void fm_fp_restore(fm_fpenv had) {
    if (_mm_getcsr() != had) _mm_setcsr(had);
}
#define FM_FP_SUPPORTED 1
#else
typedef unsigned fm_fpenv;
static inline int fm_fp_flushing(void) { return 0; }
static inline fm_fpenv fm_fp_flush(int on) {
    (void)on;
    return 0;
}
static inline void fm_fp_restore(fm_fpenv had) { (void)had; }
#define FM_FP_SUPPORTED 0
#endif

/* An engine call on the calling thread (the Cython layer): sets its mode (on: flush) and
 * records the flush mode it had as the one that the threads of the call's OpenMP regions
 * go back to; returns the environment to give back to it with fm_fp_leave. */
fm_fpenv fm_fp_enter(int on);
void fm_fp_leave(fm_fpenv had);

/* An OpenMP region whose threads compute numbers: its opener reads fm_fp_team() before
 * it; each thread of the team calls fm_fp_join first (the opener's mode) and fm_fp_part
 * last: the opener (thread 0) gets its environment back, the others keep theirs but for
 * the flush mode, which becomes the one outside the engine call (fm_fp_enter's record;
 * the opener's mode where no call is recorded). (A worker thread that the runtime starts
 * during a call inherits the flushing mode of its creator, so "its own mode" would
 * otherwise stay flushing after the call.)
 *     const fm_fpteam ft = fm_fp_team();
 *     #pragma omp parallel ...
 *     {
 *         const fm_fpenv had = fm_fp_join(ft);
 *         #pragma omp for ... nowait
 *         for (...) ...
 *         fm_fp_part(ft, had);
 *     }
 * FM_FP_TEAM(ft, STMT) is that body where it is one statement (a call). */
typedef struct {
    int mode;  /* the opener's: flush or not */
    int after; /* the workers' flush mode after the region */
} fm_fpteam;
fm_fpteam fm_fp_team(void);
static inline fm_fpenv fm_fp_join(fm_fpteam t) { return fm_fp_flush(t.mode); }
void fm_fp_part(fm_fpteam t, fm_fpenv had);

#define FM_FP_TEAM(ft, STMT)                                                                  \
    do {                                                                                      \
        const fm_fpenv fm_fp_had_ = fm_fp_join(ft);                                           \
        STMT;                                                                                 \
        fm_fp_part(ft, fm_fp_had_);                                                           \
    } while (0)

/* The engine's switch (fpenv.c): whether engine calls flush (1, the default) or keep
 * IEEE gradual underflow (0); _engine applies FASTMLP_FLUSH_DENORMAL at import */
int fm_flush_denormal_enabled(void);
void fm_flush_denormal_set(int on);
/* Whether flushing is available here (x86-64) */
int fm_flush_denormal_supported(void);
/* Tests: an engine call in mode `mode` that opens a region of nt threads, each writing
 * its fm_fp_flushing() there into seen[0..nt) (-1 for threads the runtime did not start);
 * after the call, each thread's mode at the start of a second region into after[0..nt).
 * Returns the first team's size. */
int fm_fp_team_modes(int nt, int mode, int *seen, int *after);

#endif
