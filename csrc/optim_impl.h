/* Template: included by optim.c with `real` and FN() defined. */

/* p (n) -= lr * g (n) */
void FN(fm_sgd)(real *p, const real *g, size_t n, double lr, int nt) {
    const real a = (real)lr;
    const int par = nt > 1 && n >= (size_t)FM_PARALLEL_MIN_WORK;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
    for (size_t i = 0; i < n; i++) p[i] -= a * g[i];
}
