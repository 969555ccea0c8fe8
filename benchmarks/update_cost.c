/* update_cost.c — nanoseconds per parameter of the engine's optimizer updates
 * (csrc/optim.c, its per-ISA loops as the package builds them), on arrays that stay in L1/L2
 * (a few thousand parameters) and on arrays that do not (784-512-256-10: 535,818): whether a
 * rule is bound by its arithmetic or by memory on this core. One thread, the best of five
 * runs of `reps` updates. The row adam_traffic is Adam's reads and writes (parameters,
 * gradient, two moments in; parameters and moments out) with a multiply-add in place of
 * its square root and division, compiled per ISA like the engine's loops: where it costs as
 * much as adam, Adam is bound by memory, not by its divider. At a few parameters a row is
 * the update's fixed cost per call (`update_cost 16 200000`, times 16 for nanoseconds a
 * call). Build and run from the repository root:
 *
 *     cc -O3 -fno-math-errno -fno-trapping-math -fopenmp -Icsrc \
 *         benchmarks/update_cost.c csrc/optim.c csrc/fpenv.c -o /tmp/update_cost -lm
 *     /tmp/update_cost            # SGD, SGD with momentum, Adam at 4,096 and 535,818
 *     /tmp/update_cost 8192 1000  # another size and repetition count
 *
 * Prints "rule dtype params ns-per-parameter" lines, float32 and float64. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "isa.h"
#include "kernels.h"

/* optim.c's clipping norm walks the layers: unused here */
int fm_usable_threads(int requested) { return requested < 1 ? 1 : requested; }
int fm_panel_width_of(size_t elem) { return 0; }
int fm_fused_update_default(void) { return 0; }
size_t fm_weight_offset(const fm_net *net, int l) { return 0; }
size_t fm_bias_offset(const fm_net *net, int l) { return 0; }
int fm_layer_in_panels(const fm_net *net, int l, size_t elem) { return 0; }
size_t fm_param_count(const fm_net *net) { return 0; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* TRAFFIC_T(T, SFX): traffic_SFX, Adam's loads and stores with v * c + eps in place of
 * sqrt(v) * c + eps and a product in place of the quotient */
#define TRAFFIC_T(T, SFX)                                                                      \
    FM_ISA_CLONES static void traffic_##SFX(T *p, const T *g, T *m, T *v, size_t n) {          \
        const T b1c = (T)0.1, b2 = (T)0.999, b2c = (T)0.001, c = (T)1.01, eps = (T)1e-8;       \
        for (size_t i = 0; i < n; i++) {                                                       \
            m[i] += b1c * (g[i] - m[i]);                                                       \
            v[i] = v[i] * b2 + b2c * g[i] * g[i];                                              \
            p[i] -= (T)1e-3 * (m[i] * (v[i] * c + eps));                                       \
        }                                                                                      \
    }
TRAFFIC_T(float, f32)
TRAFFIC_T(double, f64)

#define ADAM_TRAFFIC (-1) /* run_SFX's kind for traffic_SFX */
#define STEP(SFX)                                                                              \
    do {                                                                                       \
        if (kind == ADAM_TRAFFIC) traffic_##SFX(p, g, s0, s1, n);                              \
        else fm_optimizer_step_##SFX(&o, p, g, n, 1e-3, 1);                                    \
    } while (0)

/* RUN_T(T, SFX): run_SFX times fm_optimizer_step_SFX (or traffic_SFX) on arrays of T */
#define RUN_T(T, SFX)                                                                          \
    static void run_##SFX(const char *name, int kind, double momentum, size_t n, long reps) { \
        T *a = malloc(4 * n * sizeof(T));                                                      \
        if (!a) {                                                                              \
            fprintf(stderr, "update_cost: no memory for %zu parameters\n", n);               \
            exit(1);                                                                           \
        }                                                                                      \
        T *p = a, *g = a + n, *s0 = a + 2 * n, *s1 = a + 3 * n;                                \
        for (size_t i = 0; i < n; i++) {                                                       \
            p[i] = 1;                                                                          \
            g[i] = (T)0.01 * (T)(i % 7) - (T)0.03;                                             \
            s0[i] = s1[i] = 0;                                                                 \
        }                                                                                      \
        fm_optimizer o = optimizer(kind, momentum, s0, s1);                                    \
        STEP(SFX); /* warm-up: first touch */                                                 \
        double best = 1e30;                                                                    \
        for (int r = 0; r < 5; r++) {                                                          \
            const double t = now();                                                            \
            for (long k = 0; k < reps; k++) STEP(SFX);                                         \
            const double dt = now() - t;                                                       \
            if (dt < best) best = dt;                                                          \
        }                                                                                      \
        printf("%-13s %-8s %9zu %6.3f\n", name, sizeof(T) == 4 ? "float32" : "float64", n,      \
               best / (double)reps / (double)n * 1e9);                                         \
        free(a);                                                                               \
    }

static fm_optimizer optimizer(int kind, double momentum, void *s0, void *s1) {
    fm_optimizer o = {0};
    o.kind = kind;
    o.momentum = momentum;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.eps = 1e-8;
    o.slot[0] = kind == FM_OPT_SGD && momentum == 0 ? NULL : s0;
    o.slot[1] = kind == FM_OPT_ADAM ? s1 : NULL;
    return o;
}

RUN_T(float, f32)
RUN_T(double, f64)

int main(int argc, char **argv) {
    size_t sizes[2] = {4096, 535818};
    long reps[2] = {100000, 400};
    int count = 2;
    if (argc > 1) {
        sizes[0] = (size_t)atol(argv[1]);
        reps[0] = argc > 2 ? atol(argv[2]) : 1000;
        count = 1;
        if (sizes[0] < 1 || reps[0] < 1) {
            fprintf(stderr, "usage: update_cost [params >= 1 [reps >= 1]]\n");
            return 2;
        }
    }
    printf("rule          dtype       params ns/param\n");
    for (int i = 0; i < count; i++) {
        run_f32("sgd", FM_OPT_SGD, 0, sizes[i], reps[i]);
        run_f32("sgd_momentum", FM_OPT_SGD, 0.9, sizes[i], reps[i]);
        run_f32("adam", FM_OPT_ADAM, 0, sizes[i], reps[i]);
        run_f32("adam_traffic", ADAM_TRAFFIC, 0, sizes[i], reps[i]);
        run_f64("sgd", FM_OPT_SGD, 0, sizes[i], reps[i]);
        run_f64("sgd_momentum", FM_OPT_SGD, 0.9, sizes[i], reps[i]);
        run_f64("adam", FM_OPT_ADAM, 0, sizes[i], reps[i]);
        run_f64("adam_traffic", ADAM_TRAFFIC, 0, sizes[i], reps[i]);
    }
    return 0;
}
