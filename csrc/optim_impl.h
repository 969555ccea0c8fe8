/* Template: included by optim.c through instantiate.h. */

#undef SQRT
#ifdef FM_REAL_IS_FLOAT
#define SQRT sqrtf
#else
#define SQRT sqrt
#endif

/* STMT for each i in [0, n), over nt threads when n is large enough, each in the mode
 * of the calling thread (fpenv.h) */
#define FM_EACH(n, nt, STMT)                                                                   \
    do {                                                                                       \
        const fm_fpteam ft_ = fm_fp_team();                                                    \
        _Pragma("omp parallel num_threads(nt) if (nt > 1 && n >= FM_PARALLEL_MIN_WORK)")       \
        {                                                                                      \
            const fm_fpenv had_ = fm_fp_join(ft_);                                             \
            _Pragma("omp for schedule(static) nowait")                                         \
            for (size_t i = 0; i < n; i++) STMT;                                               \
            fm_fp_part(ft_, had_);                                                             \
        }                                                                                      \
    } while (0)

/* RMSprop's loop with its three options as constants (always inlined into one call per
 * combination): with them read inside the loop, gcc left it scalar (3.2 ns a parameter on
 * a Zen 3 core, 8x Adam's). The same operations in the same order as before. */
static inline __attribute__((always_inline)) void FN(rmsprop_range)(
    real *p, const real *g, real *s0, real *s1, real *s2, size_t n, real lr, real wd, real eps,
    real alpha, real one_alpha, real mu, const int centered, const int inside,
    const int momentum) {
    for (size_t i = 0; i < n; i++) {
        const real gi = g[i] + wd * p[i];
        s0[i] = s0[i] * alpha + one_alpha * gi * gi;
        real avg;
        if (centered) {
            s2[i] += one_alpha * (gi - s2[i]);
            const real var = s0[i] - s2[i] * s2[i];
            avg = inside ? SQRT(var + eps) : SQRT(var) + eps;
        } else {
            avg = inside ? SQRT(s0[i] + eps) : SQRT(s0[i]) + eps;
        }
        if (momentum) {
            s1[i] = s1[i] * mu + gi / avg;
            p[i] -= lr * s1[i];
        } else {
            p[i] -= lr * (gi / avg);
        }
    }
}

/* The update of elements [0, n) of p, g and the state slots (NULL when unused), for
 * the update u (its rule, rate and the constants of its update number). Serial and compiled
 * per ISA; fm_update_span spreads chunks of it over threads, the fused update (dense_impl.h)
 * calls it per register tile. Every loop vectorizes (the sign tests below are selects, not
 * branches). */
FM_ISA_CLONES
static void FN(update_range)(const FN(fm_update) * u, real *p, const real *g, real *s0,
                             real *s1, real *s2, size_t n) {
    const fm_optimizer *o = u->opt;
    const double lr_ = u->lr;
    const real lr = (real)lr_, wd = (real)o->weight_decay, eps = (real)o->eps;
    const int inside = o->eps_inside;
    switch (o->kind) {
    case FM_OPT_SGD: {
        const real mu = (real)o->momentum, damp = (real)(1 - o->dampening);
        const int nesterov = o->nesterov, first = u->t == 1;
        if (o->momentum == 0) {
            for (size_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
        } else {
            for (size_t i = 0; i < n; i++) {
                const real gi = g[i] + wd * p[i];
                const real b = first ? gi : mu * s0[i] + damp * gi;
                s0[i] = b;
                p[i] -= lr * (nesterov ? gi + mu * b : b);
            }
        }
        break;
    }
    case FM_OPT_ADAGRAD: {
        const real clr = (real)u->rate;
        for (size_t i = 0; i < n; i++) {
            const real gi = g[i] + wd * p[i];
            s0[i] += gi * gi;
            p[i] -= clr * gi / (inside ? SQRT(s0[i] + eps) : SQRT(s0[i]) + eps);
        }
        break;
    }
    case FM_OPT_ADADELTA: {
        const real rho = (real)o->rho, one_rho = (real)(1 - o->rho);
        for (size_t i = 0; i < n; i++) {
            const real gi = g[i] + wd * p[i];
            s0[i] = s0[i] * rho + one_rho * gi * gi;
            const real delta = SQRT(s1[i] + eps) / SQRT(s0[i] + eps) * gi;
            s1[i] = s1[i] * rho + one_rho * delta * delta;
            p[i] -= lr * delta;
        }
        break;
    }
    case FM_OPT_RMSPROP: {
        const real alpha = (real)o->alpha, one_alpha = (real)(1 - o->alpha);
        const real mu = (real)o->momentum;
        const int centered = o->centered != 0, momentum = o->momentum > 0, in = inside != 0;
#define RMS(C, I, M) FN(rmsprop_range)(p, g, s0, s1, s2, n, lr, wd, eps, alpha, one_alpha, mu, C, I, M)
        switch (centered * 4 + in * 2 + momentum) {
        case 0: RMS(0, 0, 0); break;
        case 1: RMS(0, 0, 1); break;
        case 2: RMS(0, 1, 0); break;
        case 3: RMS(0, 1, 1); break;
        case 4: RMS(1, 0, 0); break;
        case 5: RMS(1, 0, 1); break;
        case 6: RMS(1, 1, 0); break;
        default: RMS(1, 1, 1); break;
        }
#undef RMS
        break;
    }
    case FM_OPT_ADAM:
    case FM_OPT_ADAMW: {
        const int decoupled = o->kind == FM_OPT_ADAMW, amsgrad = o->amsgrad;
        const real b1c = (real)(1 - o->beta1), b2 = (real)o->beta2, b2c = (real)(1 - o->beta2);
        const real step_size = (real)u->rate, inv_bc2_sqrt = (real)u->scale;
        const real decay = (real)(1 - lr_ * o->weight_decay), l2 = decoupled ? 0 : wd;
        for (size_t i = 0; i < n; i++) {
            if (decoupled) p[i] *= decay;
            const real gi = g[i] + l2 * p[i];
            s0[i] += b1c * (gi - s0[i]);
            s1[i] = s1[i] * b2 + b2c * gi * gi;
            real v = s1[i];
            if (amsgrad) {
                s2[i] = s2[i] > v ? s2[i] : v;
                v = s2[i];
            }
            p[i] -= step_size * (s0[i] / (SQRT(v) * inv_bc2_sqrt + eps));
        }
        break;
    }
    case FM_OPT_RPROP: {
        const real up = (real)o->etaplus, down = (real)o->etaminus;
        const real lo = (real)o->step_min, hi = (real)o->step_max;
        for (size_t i = 0; i < n; i++) {
            real gi = g[i];
            const real prod = gi * s0[i];
            real step = s1[i] * (prod > 0 ? up : prod < 0 ? down : (real)1);
            step = step < lo ? lo : step > hi ? hi : step;
            s1[i] = step;
            gi = prod < 0 ? (real)0 : gi;
            const real sign = gi > 0 ? (real)1 : gi < 0 ? (real)-1 : (real)0;
            p[i] -= sign * step;
            s0[i] = gi;
        }
        break;
    }
    case FM_OPT_DELTA_BAR_DELTA: {
        const real kappa = (real)o->kappa, shrink = (real)(1 - o->phi);
        const real theta = (real)o->theta, one_theta = (real)(1 - o->theta);
        for (size_t i = 0; i < n; i++) {
            const real gi = g[i] + wd * p[i];
            const real agree = s1[i] * gi;
            s0[i] = agree > 0 ? s0[i] + kappa : agree < 0 ? s0[i] * shrink : s0[i];
            p[i] -= s0[i] * gi;
            s1[i] = one_theta * gi + theta * s1[i];
        }
        break;
    }
    default:
        break;
    }
}

FN(fm_update) FN(fm_update_next)(fm_optimizer *o, double lr, real *params, const real *grads) {
    FN(fm_update) u = {o, ++o->step, lr, 0, 0, params, grads};
    const double t = (double)u.t;
    if (o->kind == FM_OPT_ADAGRAD) {
        u.rate = lr / (1 + (t - 1) * o->lr_decay);
    } else if (o->kind == FM_OPT_ADAM || o->kind == FM_OPT_ADAMW) {
        u.rate = lr / (1 - pow(o->beta1, t));
        /* sqrt(v) / sqrt(1 - beta2^t) as a product: one division per element, not two */
        u.scale = 1 / sqrt(1 - pow(o->beta2, t));
    }
    return u;
}

void FN(fm_update_range)(const FN(fm_update) * u, size_t lo, size_t n) {
    const fm_optimizer *o = u->opt;
    real *s0 = o->slot[0], *s1 = o->slot[1], *s2 = o->slot[2];
    FN(update_range)(u, u->params + lo, u->grads + lo, s0 ? s0 + lo : NULL,
                     s1 ? s1 + lo : NULL, s2 ? s2 + lo : NULL, n);
}

void FN(fm_update_span)(const FN(fm_update) * u, size_t lo, size_t hi, int nt) {
    const size_t chunk = 16384, n = hi - lo, chunks = (n + chunk - 1) / chunk;
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (nt > 1 && n >= FM_PARALLEL_MIN_WORK)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (size_t c = 0; c < chunks; c++) {
            const size_t at = lo + c * chunk;
            FN(fm_update_range)(u, at, hi - at < chunk ? hi - at : chunk);
        }
        fm_fp_part(ft, had);
    }
}

void FN(fm_optimizer_step)(fm_optimizer *o, real *p, const real *g, size_t n, double lr,
                           int n_threads) {
    const FN(fm_update) u = FN(fm_update_next)(o, lr, p, g);
    FN(fm_update_span)(&u, 0, n, fm_usable_threads(n_threads));
}

double FN(fm_sum_squares)(const real *g, size_t n, int nt) {
    double part[FM_NORM_BLOCKS];
    const size_t per = (n + FM_NORM_BLOCKS - 1) / FM_NORM_BLOCKS;
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (nt > 1 && n >= FM_PARALLEL_MIN_WORK)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (int b = 0; b < FM_NORM_BLOCKS; b++) {
            const size_t lo = b * per < n ? b * per : n, hi = lo + per < n ? lo + per : n;
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            size_t i = lo;
            for (; i + 8 <= hi; i += 8)
                for (int k = 0; k < 8; k++) acc[k] += (double)g[i + k] * g[i + k];
            for (; i < hi; i++) acc[0] += (double)g[i] * g[i];
            part[b] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                      ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
        fm_fp_part(ft, had);
    }
    double s = 0;
    for (int b = 0; b < FM_NORM_BLOCKS; b++) s += part[b];
    return s;
}

/* Sum of squares of panel p of a weight block W (I, O) (nr columns from p * nr), in panel
 * layout or row-major: lane t takes the panel's elements i = t (mod 8) in its row order
 * (element i at row i / nr, column p * nr + i % nr); the lanes added pairwise. */
static double FN(panel_squares)(const real *W, int I, int O, int nr, int p, int in_panels) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < I; k++) {
        const real *row = in_panels ? W + ((size_t)p * I + k) * nr
                                    : W + (size_t)k * O + (size_t)p * nr;
        for (int j = 0; j < nr; j += 8)
            for (int t = 0; t < 8; t++) acc[t] += (double)row[j + t] * row[j + t];
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Sum of squares of a parameter-shaped g, in one order whether the fm_layer_in_panels
 * layers' weights are in panel layout (layout != 0) or row-major: per layer, such a weight
 * block panel by panel (panel_squares; nr is a multiple of 8), others in fixed blocks
 * (fm_sum_squares), then the layer's other parameters; the parts added in order. So the
 * clipping norm does not depend on whether a training call took the layout (which depends
 * on its length), nor on the thread count. */
static double FN(grad_sum_squares)(const fm_net *net, const real *g, int layout, int nt) {
    const int nr = fm_panel_width_of(sizeof(real)), L = net->n_layers;
    double total = 0;
    for (int l = 0; l < L; l++) {
        const int I = net->sizes[l], O = net->sizes[l + 1];
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        const size_t end = l + 1 < L ? fm_weight_offset(net, l + 1) : fm_param_count(net);
        if (fm_layer_in_panels(net, l, sizeof(real))) {
            const int P = O / nr;
            double part[FM_NORM_BLOCKS];
            for (int p0 = 0; p0 < P; p0 += FM_NORM_BLOCKS) {
                const int pg = P - p0 < FM_NORM_BLOCKS ? P - p0 : FM_NORM_BLOCKS;
                const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode */
#pragma omp parallel num_threads(nt) if (nt > 1 && (size_t)I * O >= FM_PARALLEL_MIN_WORK)
                {
                    const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
                    for (int q = 0; q < pg; q++)
                        part[q] = FN(panel_squares)(g + w, I, O, nr, p0 + q, layout);
                    fm_fp_part(ft, had);
                }
                for (int q = 0; q < pg; q++) total += part[q];
            }
        } else {
            total += FN(fm_sum_squares)(g + w, b - w, nt);
        }
        total += FN(fm_sum_squares)(g + b, end - b, nt);
    }
    return total;
}

double FN(fm_clip_grads)(const fm_net *net, real *g, int layout, const fm_clip *clip,
                         int n_threads) {
    const int nt = fm_usable_threads(n_threads);
    const size_t n = fm_param_count(net);
    double norm = 0;
    if (clip->max_norm > 0) {
        norm = sqrt(FN(grad_sum_squares)(net, g, layout, nt));
        if (!isfinite(norm) && clip->error_if_nonfinite) return norm;
        const double coef = clip->max_norm / (norm + 1e-6);
        if (coef < 1) {
            const real c = (real)coef;
            FM_EACH(n, nt, g[i] *= c);
        }
    }
    if (clip->max_value > 0) {
        const real v = (real)clip->max_value;
        FM_EACH(n, nt, g[i] = g[i] > v ? v : g[i] < -v ? -v : g[i]);
    }
    return norm;
}
