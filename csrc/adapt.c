/* adapt.c — the thread count of training steps, chosen from their measured times.
 *
 * A training step with n_threads forks and joins its team a dozen times or more. When
 * other processes hold the cores, a thread of the team is often not running, and every
 * join waits for it: 2-thread steps ran 40-60x slower than 1-thread steps with a load of
 * ~4 on 2 cores. fm_train therefore times each step and runs it with whichever of
 * n_threads and one thread is faster now.
 *
 * It starts with one thread (safe whatever the load), tries n_threads after PROBE steps
 * (calibration), then keeps the faster choice and probes the other for PROBE steps again
 * whenever the probe's expected extra time is at most MAX_OVERHEAD of the time since the
 * last probe (at once, after MIN_GAP steps, when the other looks no slower). A probe step
 * slower than ABORT times the current choice ends its probe at once. So probing costs at
 * most a few percent, and a change of load is noticed within seconds.
 *
 * The last ratio measured (by any model of the process) is kept for HINT_SECONDS with the
 * work of the steps it was measured on. A new model, or a new batch size, whose steps do
 * about as much work (within a factor of 2) starts with the choice that was faster and
 * probes the other only after as many steps as a later probe would wait: on a busy
 * machine a single team step can cost more than the rest of a small fit. Steps of other
 * sizes ignore it: a team can be slower on small steps of an idle machine and faster on
 * large ones.
 *
 * Every kernel computes the same result whatever its thread count, so the choice changes
 * the time of a step, never its result. */
#include <string.h>
#include <time.h>

#include "kernels.h"

#define PROBE 4            /* steps of a probe (the first is not timed: its team changed) */
#define MIN_GAP 16         /* steps with the current choice between two probes, at least */
#define MAX_OVERHEAD 0.02  /* a probe's expected extra seconds / seconds since the last */
#define HYSTERESIS 0.03    /* the other choice must be this much faster to be taken */
#define ABORT 2.0          /* a timed probe step this many times slower ends the probe ... */
#define ABORT_FIRST 10.0   /* ... and so does its untimed first one, this many times slower */
#define HINT_SECONDS 2.0   /* how long a measured ratio is taken for the machine's state */

/* median team step time / median one-thread step time at the last decision of any
 * model, in percent (0: none yet), and the work of those steps (multiply-adds); models
 * read and write them from any thread */
static _Atomic int last_ratio = 0;
static _Atomic double last_work = 0, last_when = 0;

void fm_adapt_forget(void) { last_ratio = 0; }

/* multiply-adds of the dense layers' forward pass over `rows` rows */
static double net_work(const fm_net *net, int rows) {
    double w = 0;
    for (int l = 0; l < net->n_layers; l++) w += (double)net->sizes[l] * net->sizes[l + 1];
    return w * rows;
}

/* the last ratio measured on steps of about this much work, if less than HINT_SECONDS
 * ago (the machine's load a moment ago), else 0 */
static int ratio_for(double work) {
    const int ratio = last_ratio;
    const double w = last_work;
    if (fm_seconds() - last_when > HINT_SECONDS) return 0;
    return w > 0 && work >= 0.5 * w && work <= 2 * w ? ratio : 0;
}

int fm_adapt_hint(const fm_net *net, int rows) {
    /* a forward pass over `rows` rows does a third of a training step's work on them */
    return ratio_for(net_work(net, rows) / 3) > 100 ? 1 : net->n_threads;
}

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

static void reset(fm_adapt *a, const fm_net *net, int batch) {
    const int n_threads = net->n_threads;
    a->batch = batch;
    a->n_threads = n_threads;
    a->current = 0;
    a->probing = 0;
    a->skip = 1;
    a->since = 0;
    a->since_s = 0;
    memset(a->n_sample, 0, sizeof a->n_sample);
    memset(a->next, 0, sizeof a->next);
    a->work = net_work(net, batch);
    /* Without a measurement on steps like these: one thread, and the team after PROBE
       steps. With one: the faster choice, and the other after as many steps as its probe
       needs to cost MAX_OVERHEAD (a slow team's probe ends at its first step: ABORT) */
    const int ratio = ratio_for(a->work);
    double wait = PROBE;
    if (ratio > 100) {
        wait = (ratio / 100.0 - 1) / MAX_OVERHEAD;
    } else if (ratio > 0 && ratio < 100) {
        a->current = 1;
        wait = PROBE * (100.0 / ratio - 1) / MAX_OVERHEAD;
    }
    a->first_probe = wait > 4096 ? 4096 : wait < PROBE ? PROBE : (int)wait;
}

static int active(const fm_adapt *a) { return a && a->enabled && a->n_threads > 1; }

int fm_adapt_threads(fm_adapt *a, const fm_net *net, int batch) {
    const int n_threads = net->n_threads;
    if (!a || !a->enabled || n_threads <= 1) {
        if (a) a->n_threads = n_threads; /* inactive: fm_adapt_record only counts */
        return n_threads;
    }
    if (a->batch != batch || a->n_threads != n_threads) reset(a, net, batch);
    const int choice = a->probing > 0 ? !a->current : a->current;
    return choice ? n_threads : 1;
}

static int should_probe(const fm_adapt *a) {
    const int c = a->current, o = !c;
    if (a->n_sample[o] == 0) return a->since >= a->first_probe;
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
    const int c = a->current;
    /* a probe step far slower than the current choice: the answer is clear already */
    const int abort = a->probing > 0 && a->n_sample[c] > 0 &&
                      seconds > (a->skip ? ABORT_FIRST : ABORT) * median(a, c);
    if (timed && (!a->skip || abort)) {
        a->sample[k][a->next[k]] = seconds;
        a->next[k] = (a->next[k] + 1) % FM_ADAPT_WINDOW;
        if (a->n_sample[k] < FM_ADAPT_WINDOW) a->n_sample[k]++;
    }
    a->skip = 0;
    if (a->probing > 0) {
        if (abort) a->probing = 1;
        if (--a->probing == 0) { /* the probe is over: keep the faster choice */
            const int o = !c;
            if (a->n_sample[o] && a->n_sample[c]) {
                const double mo = median(a, o), mc = median(a, c);
                if (mo < (1 - HYSTERESIS) * mc) a->current = o;
                const double ratio = 100 * (o ? mo / mc : mc / mo);
                last_ratio = ratio > 1e6 ? 1000000 : ratio < 1 ? 1 : (int)ratio;
                last_work = a->work;
                last_when = fm_seconds();
            }
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
