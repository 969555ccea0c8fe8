/* fpenv.c — the engine's subnormal-flush switch (fpenv.h) and its test probe. */
#ifdef _OPENMP
#include <omp.h>
#endif

#include "fpenv.h"

/* (the OpenMP calls themselves, not threads.c's: benchmarks/update_cost.c links this file
 * with optim.c alone) */
static int thread_rank(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int flush_on = 1; /* the default: flush (fpenv.h says why) */

/* The calling thread's engine call: whether one is open, and its flush mode before it
 * (engine calls do not nest: each _engine.pyx call enters and leaves once) */
static _Thread_local int call_open = 0, mode_outside = 0;

fm_fpenv fm_fp_enter(int on) {
    call_open = 1;
    mode_outside = fm_fp_flushing();
    return fm_fp_flush(on);
}

void fm_fp_leave(fm_fpenv had) {
    fm_fp_restore(had);
    call_open = 0;
}

fm_fpteam fm_fp_team(void) {
    const int mode = fm_fp_flushing();
    const fm_fpteam t = {mode, call_open ? mode_outside : mode};
    return t;
}

void fm_fp_part(fm_fpteam t, fm_fpenv had) {
    fm_fp_restore(had);
    if (thread_rank() != 0) (void)fm_fp_flush(t.after);
}

int fm_flush_denormal_enabled(void) { return __atomic_load_n(&flush_on, __ATOMIC_RELAXED); }

void fm_flush_denormal_set(int on) { __atomic_store_n(&flush_on, on != 0, __ATOMIC_RELAXED); }

int fm_flush_denormal_supported(void) { return FM_FP_SUPPORTED; }

int fm_fp_team_modes(int nt, int mode, int *seen, int *after) {
    for (int i = 0; i < nt; i++) seen[i] = after[i] = -1;
    int size = 1;
    const fm_fpenv had = fm_fp_enter(mode);
    const fm_fpteam ft = fm_fp_team();
#pragma omp parallel num_threads(nt)
    {
        FM_FP_TEAM(ft, seen[thread_rank()] = fm_fp_flushing());
#ifdef _OPENMP
#pragma omp single
        size = omp_get_num_threads();
#endif
    }
    fm_fp_leave(had);
#pragma omp parallel num_threads(nt)
    after[thread_rank()] = fm_fp_flushing();
    return size;
}
