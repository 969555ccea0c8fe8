/* adapt.c — the thread count of training steps, chosen from their measured times.
 *
 * A training step with n_threads forks and joins its team a dozen times or more. When
 * other processes hold the cores, a thread of the team is often not running, and every
 * join waits for it: 2-thread steps ran 40-60x slower than 1-thread steps with a load of
 * ~4 on 2 cores. fm_train therefore times each step and runs it with whichever of
 * n_threads and one thread is faster now. It starts with n_threads, tries one thread
 * after PROBE steps (calibration), then keeps the faster choice and probes the other for
 * PROBE steps again whenever the probe's expected extra time is at most MAX_OVERHEAD of
 * the time since the last probe (at once, after MIN_GAP steps, when the other looks no
 * slower): a change of load is noticed within about a second, and a probe of a collapsed
 * team costs a few percent. Every kernel computes the same result whatever its thread
 * count, so the choice changes the time of a step, never its result. */
#include <string.h>
#include <time.h>

#include "kernels.h"

#define PROBE 4            /* steps of a probe (the first is not timed: its team changed) */
#define MIN_GAP 16         /* steps with the current choice between two probes, at least */
#define MAX_OVERHEAD 0.05  /* a probe's expected extra seconds / seconds since the last */
#define HYSTERESIS 0.03    /* the other choice must be this much faster to be taken */

double fm_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* median of the recent step times of choice k (at least one) */
static double median(const fm_adapt *a, int k) {
    double v[FM_ADAPT_WINDOW];
    const int n = a->n_sample[k];
    memcpy(v, a->sample[k], (size_t)n * sizeof(double));
    for (int i = 1; i < n; i++) /* insertion sort of at most FM_ADAPT_WINDOW values */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            const double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void reset(fm_adapt *a, int n_threads, int batch) {
    a->batch = batch;
    a->n_threads = n_threads;
    a->current = 1;
    a->probing = 0;
    a->skip = 1;
    a->since = 0;
    a->since_s = 0;
    memset(a->n_sample, 0, sizeof a->n_sample);
    memset(a->next, 0, sizeof a->next);
}

static int active(const fm_adapt *a) { return a && a->enabled && a->n_threads > 1; }

int fm_adapt_threads(fm_adapt *a, int n_threads, int batch) {
    if (!a || !a->enabled || n_threads <= 1) {
        if (a) a->n_threads = n_threads; /* inactive: fm_adapt_record only counts */
        return n_threads;
    }
    if (a->batch != batch || a->n_threads != n_threads) reset(a, n_threads, batch);
    const int choice = a->probing > 0 ? !a->current : a->current;
    return choice ? n_threads : 1;
}

static int should_probe(const fm_adapt *a) {
    const int c = a->current, o = !c;
    if (a->n_sample[o] == 0) return a->since >= PROBE;
    if (a->since < MIN_GAP || a->n_sample[c] == 0) return 0;
    const double extra = PROBE * (median(a, o) - median(a, c));
    return extra <= 0 || a->since_s * MAX_OVERHEAD >= extra;
}

void fm_adapt_record(fm_adapt *a, int threads, double seconds, int timed) {
    if (!a) return;
    const int k = threads > 1;
    a->steps[k]++;
    if (!active(a)) return;
    seconds += a->test_extra[k];
    if (timed && !a->skip) {
        a->sample[k][a->next[k]] = seconds;
        a->next[k] = (a->next[k] + 1) % FM_ADAPT_WINDOW;
        if (a->n_sample[k] < FM_ADAPT_WINDOW) a->n_sample[k]++;
    }
    a->skip = 0;
    if (a->probing > 0) {
        if (--a->probing == 0) { /* the probe is over: keep the faster choice */
            const int c = a->current, o = !c;
            if (a->n_sample[o] && a->n_sample[c] &&
                median(a, o) < (1 - HYSTERESIS) * median(a, c))
                a->current = o;
            a->since = 0;
            a->since_s = 0;
            a->skip = 1;
        }
        return;
    }
    a->since++;
    a->since_s += seconds;
    if (should_probe(a)) {
        a->probing = PROBE;
        a->skip = 1;
    }
}
