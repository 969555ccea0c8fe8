/* Template: included by ties.c through instantiate.h. */

/* W (r, c) = (or += when `add`) S (c, r) transposed when `transpose`, else S (r, c) */
static void FN(transfer)(real *W, const real *S, int r, int c, int transpose, int add) {
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            const real v = transpose ? S[(size_t)j * r + i] : S[(size_t)i * c + j];
            W[(size_t)i * c + j] = add ? W[(size_t)i * c + j] + v : v;
        }
}

void FN(fm_tie_refresh)(const fm_net *net, real *params) {
    for (int l = 0; l < net->n_layers; l++)
        if (net->tie[l])
            FN(transfer)(params + fm_weight_offset(net, l),
                         params + fm_weight_offset(net, net->tie[l] - 1), net->sizes[l],
                         net->sizes[l + 1], net->tie_transpose[l], 0);
}

void FN(fm_tie_fold)(const fm_net *net, real *grads) {
    for (int l = 0; l < net->n_layers; l++) {
        if (!net->tie[l]) continue;
        const int s = net->tie[l] - 1;
        real *G = grads + fm_weight_offset(net, l);
        FN(transfer)(grads + fm_weight_offset(net, s), G, net->sizes[s], net->sizes[s + 1],
                     net->tie_transpose[l], 1);
        memset(G, 0, (size_t)net->sizes[l] * net->sizes[l + 1] * sizeof(real));
    }
}
