/* threads.c — how many threads the engine may use. GNU OpenMP cannot start a thread team
 * in a process forked after its parent ran one: the child would wait forever for pool
 * threads that fork did not copy. After such a fork (multiprocessing's "fork" start
 * method, joblib's multiprocessing backend) the engine therefore runs single-threaded;
 * results do not depend on the thread count, so they are unchanged. */
#include <pthread.h>
#ifdef FASTMLP_HAVE_OPENMP
#include <omp.h>
#endif

#include "kernels.h"

static volatile int teams_started = 0, forked_after_teams = 0;

static void child_after_fork(void) {
    if (teams_started) forked_after_teams = 1;
}

__attribute__((constructor)) static void register_fork_handler(void) {
    pthread_atfork(NULL, NULL, child_after_fork);
}

int fm_usable_threads(int requested) {
    if (requested <= 1 || forked_after_teams) return 1;
    teams_started = 1;
    return requested;
}

int fm_fork_serial(void) { return forked_after_teams; }

int fm_thread_rank(void) {
#ifdef FASTMLP_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
