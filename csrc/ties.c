/* ties.c — tied weights (parameter sharing): a dense layer that uses another layer's weight
 * matrix, as it is or transposed (fm_net.tie). params keeps a copy of the shared matrix in
 * each tied layer's weights, so every pass reads them as its own; a training step adds the
 * tied layers' weight gradients into their sources' (fm_tie_fold) before penalties,
 * clipping and the update, which then change only the sources, and copies the sources
 * back into the tied layers after it (fm_tie_refresh). One thread, layers in order: the
 * results do not depend on the thread count. */
#include <string.h>

#include "kernels.h"

#define FM_TIE_TILE 32 /* rows and columns of a transposed tile */

int fm_ties_ok(const fm_net *net) {
    for (int l = 0; l < net->n_layers; l++) {
        const int t = net->tie[l];
        if (t == 0) continue;
        const int s = t - 1;
        if (t < 0 || s >= net->n_layers || s == l || net->tie[s] != 0) return 0;
        const int r = net->sizes[l], c = net->sizes[l + 1];
        const int rs = net->sizes[s], cs = net->sizes[s + 1];
        if (net->tie_transpose[l] ? (r != cs || c != rs) : (r != rs || c != cs)) return 0;
    }
    return 1;
}

int fm_has_ties(const fm_net *net) {
    for (int l = 0; l < net->n_layers; l++)
        if (net->tie[l]) return 1;
    return 0;
}

#define FM_TEMPLATE "ties_impl.h"
#include "instantiate.h"
