/* layout.c — the panel layout of float32 weights during training.
 *
 * fm_train keeps the weights of each dense layer whose width O is a multiple of the active
 * kernel set's panel width nr in the layout its register tiles read: W (I, O) as O / nr
 * panels of (I, nr), one after another (fm_pack_weights' layout for such a layer). The
 * layer's weight gradient and optimizer state follow it. The forward pass then reads the
 * weights without copying them each step, and the elementwise passes (update, penalties,
 * clipping) work on any layout as they are. fm_train converts on entry and back before it
 * returns: outside it every array is in the row-major layout of fastmlp.h. */
#include <string.h>

#include "kernels.h"

/* Batches it is used for. Below 64 rows the forward pass reads weights in place (a panel
 * copy per step would cost more than it saves), with a power-of-two row stride that maps
 * them onto few cache sets; the layout saved 10-30% of a 784-512-256-10 step at batch 32.
 * From 64 rows the pass copies panels once per step anyway: the layout gained 2% at batch
 * 128 and nothing at 512, so larger batches stay row-major. */
#define FM_LAYOUT_MAX_BATCH 64

static unsigned long long layout_calls = 0;

int fm_layer_in_panels(const fm_net *net, int l) {
    const int nr = fm_panel_width();
    return nr > 0 && net->sizes[l + 1] % nr == 0;
}

size_t fm_layout_scratch_count(const fm_net *net, int batch_size) {
    if (batch_size >= FM_LAYOUT_MAX_BATCH) return 0;
    size_t most = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = (size_t)net->sizes[l] * net->sizes[l + 1];
        if (fm_layer_in_panels(net, l) && w > most) most = w;
    }
    return most;
}

/* one row of one panel: nr floats (constant sizes compile to a few vector moves) */
static void copy_run(float *dst, const float *src, int nr) {
    if (nr == 32) memcpy(dst, src, 32 * sizeof(float));
    else if (nr == 16) memcpy(dst, src, 16 * sizeof(float));
    else memcpy(dst, src, (size_t)nr * sizeof(float));
}

/* dst = src for W (I, O), one of them in panel layout: to_panels != 0 reads src row-major
 * and writes dst as panels, else the reverse. Panels are spread over threads; each writes
 * its own runs of nr floats. */
static void relayout(float *dst, const float *src, int I, int O, int nr, int to_panels, int nt) {
    const int P = O / nr;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && P > 1 && (size_t)I * O >= FM_PARALLEL_MIN_WORK)
    for (int p = 0; p < P; p++)
        for (int k = 0; k < I; k++) {
            const size_t panel = (size_t)p * I * nr + (size_t)k * nr, flat = (size_t)k * O + (size_t)p * nr;
            if (to_panels) copy_run(dst + panel, src + flat, nr);
            else copy_run(dst + flat, src + panel, nr);
        }
}

/* dst (n) = src (n), in blocks over threads */
static void copy_blocks(float *dst, const float *src, size_t n, int nt) {
    const size_t block = (size_t)1 << 16, blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && blocks > 1)
    for (size_t b = 0; b < blocks; b++) {
        const size_t lo = b * block, m = n - lo < block ? n - lo : block;
        memcpy(dst + lo, src + lo, m * sizeof(float));
    }
}

void fm_convert_layout(const fm_net *net, float *a, float *scratch, int to_panels, int n_threads) {
    const int nt = fm_usable_threads(n_threads), nr = fm_panel_width();
    for (int l = 0; l < net->n_layers; l++) {
        if (!fm_layer_in_panels(net, l)) continue;
        const int I = net->sizes[l], O = net->sizes[l + 1];
        float *w = a + fm_weight_offset(net, l);
        copy_blocks(scratch, w, (size_t)I * O, nt);
        relayout(w, scratch, I, O, nr, to_panels, nt);
    }
    if (to_panels) layout_calls++;
}

void fm_copy_from_panels(const fm_net *net, float *dst, const float *src, int n_threads) {
    const int nt = fm_usable_threads(n_threads), nr = fm_panel_width(), L = net->n_layers;
    for (int l = 0; l < L; l++) {
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        const size_t end = l + 1 < L ? fm_weight_offset(net, l + 1) : fm_param_count(net);
        const size_t lo = fm_layer_in_panels(net, l) ? b : w; /* row-major from here */
        if (lo == b) relayout(dst + w, src + w, net->sizes[l], net->sizes[l + 1], nr, 0, nt);
        copy_blocks(dst + lo, src + lo, end - lo, nt);
    }
}

unsigned long long fm_panel_layout_calls(void) { return layout_calls; }
