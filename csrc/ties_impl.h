/* Template: included by ties.c through instantiate.h. */

/* W (r, c) = (or += when `add`) S (c, r) transposed when `transpose`, else S (r, c). The
 * transpose goes tile by tile, so that both matrices are read a cache line at a time. */
static void FN(transfer)(real *W, const real *S, int r, int c, int transpose, int add) {
    if (!transpose) {
        for (size_t k = 0; k < (size_t)r * c; k++) W[k] = add ? W[k] + S[k] : S[k];
        return;
    }
    for (int i0 = 0; i0 < r; i0 += FM_TIE_TILE)
        for (int j0 = 0; j0 < c; j0 += FM_TIE_TILE) {
            const int i1 = i0 + FM_TIE_TILE < r ? i0 + FM_TIE_TILE : r;
            const int j1 = j0 + FM_TIE_TILE < c ? j0 + FM_TIE_TILE : c;
            for (int i = i0; i < i1; i++)
                for (int j = j0; j < j1; j++) {
                    const real v = S[(size_t)j * r + i];
                    W[(size_t)i * c + j] = add ? W[(size_t)i * c + j] + v : v;
                }
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
