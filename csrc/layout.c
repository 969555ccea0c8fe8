/* layout.c — the panel layout of the weights during training (either dtype).
 *
 * fm_train keeps the weights of each dense layer whose width O is a multiple of the active
 * kernel set's panel width nr for the dtype (16 floats or 8 doubles for the AVX2 tiles, 32
 * or 16 for the AVX-512 ones) in the layout its register tiles read: W (I, O) as O / nr
 * panels of (I, nr), one after
 * another (fm_pack_weights_*' layout for such a layer). The layer's weight gradient and
 * optimizer state follow it. The forward pass then reads the weights without copying them
 * each step, and the elementwise passes (update, penalty gradients, clipping) work on any
 * layout as they are; the sums over the weights (the penalty's value, the clipping norm)
 * take such a layer panel by panel in either layout (penalty_impl.h, optim_impl.h), so
 * whether a call takes the layout changes no bit. fm_train converts on entry and back
 * before it returns: outside it every array is in the row-major layout of fastmlp.h. */
#include <string.h>

#include "kernels.h"

/* Used at every batch, both dtypes. Without it the forward pass copies every weight panel
 * once per step (or reads row-major weights with a power-of-two row stride that maps them
 * onto few cache sets, below 64 rows). float32: the layout saved 10-30% of a
 * 784-512-256-10 step at batch 32; at 64 / 128 / 512 / 2048 rows 1.14x / 1.04-1.10x /
 * 1.02-1.07x / 1.00x on a Zen 5 EPYC (session 10), 1.00-1.02x on an Intel Xeon (session 9,
 * up to 256) and 0.99-1.01x on Zen 3/4 (at 128 and 512). float64: a row of a panel is a
 * 64-byte line of a weight row 8 * O bytes long (4 KiB for 512 outputs: each line of a
 * panel copy on a page of its own, which the hardware does not fetch ahead); the copy took
 * 12% of a batch-128 step of 784-512-256-10. */

static unsigned long long layout_calls = 0;

int fm_layer_in_panels(const fm_net *net, int l, size_t elem) {
    const int nr = fm_panel_width_of(elem);
    return nr > 0 && net->sizes[l + 1] % nr == 0;
}

size_t fm_layout_scratch_count(const fm_net *net, size_t elem) {
    size_t most = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const size_t w = (size_t)net->sizes[l] * net->sizes[l + 1];
        if (fm_layer_in_panels(net, l, elem) && w > most) most = w;
    }
    return most;
}

/* one row of one panel: `bytes` (64 for the AVX2 tiles of either dtype: constant sizes
 * compile to a few vector moves) */
static void copy_run(char *dst, const char *src, size_t bytes) {
    if (bytes == 64) memcpy(dst, src, 64);
    else if (bytes == 128) memcpy(dst, src, 128);
    else memcpy(dst, src, bytes);
}

/* Rows of W a relayout takes through every panel before the next rows (below) */
#define RELAYOUT_ROWS 16

/* dst = src for W (I, O) of elem-byte elements, one of them in panel layout: to_panels != 0
 * reads src row-major and writes dst as panels, else the reverse. Blocks of RELAYOUT_ROWS
 * rows go through every panel in turn (the row-major side read or written a few whole rows
 * at a time, each panel's side in runs of that many rows), spread over threads; each writes
 * its own runs of nr elements. Panel by panel down all of I instead (a 128-byte run from
 * each 8 KiB row: a page a run) took 1.6-2.7 ms into the layout for a 2048 x 2048 float32
 * array from memory against 1.2-1.7 ms this way (a Zen 5 EPYC), and was no faster for
 * arrays in L2 or L3 (RESULTS.md, session 14). */
static void relayout(char *dst, const char *src, int I, int O, int nr, size_t elem,
                     int to_panels, int nt) {
    const int P = O / nr, blocks = (I + RELAYOUT_ROWS - 1) / RELAYOUT_ROWS;
    const size_t run = (size_t)nr * elem;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && blocks > 1 && (size_t)I * O >= FM_PARALLEL_MIN_WORK)
    for (int kb = 0; kb < blocks; kb++) {
        const int k0 = kb * RELAYOUT_ROWS, k1 = k0 + RELAYOUT_ROWS < I ? k0 + RELAYOUT_ROWS : I;
        for (int p = 0; p < P; p++)
            for (int k = k0; k < k1; k++) {
                const size_t panel = ((size_t)p * I * nr + (size_t)k * nr) * elem;
                const size_t flat = ((size_t)k * O + (size_t)p * nr) * elem;
                if (to_panels) copy_run(dst + panel, src + flat, run);
                else copy_run(dst + flat, src + panel, run);
            }
    }
}

/* dst (n bytes) = src, in blocks over threads */
static void copy_blocks(char *dst, const char *src, size_t n, int nt) {
    const size_t block = (size_t)1 << 18, blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && blocks > 1)
    for (size_t b = 0; b < blocks; b++) {
        const size_t lo = b * block, m = n - lo < block ? n - lo : block;
        memcpy(dst + lo, src + lo, m);
    }
}

void fm_convert_layout(const fm_net *net, void *a, void *scratch, size_t elem, int to_panels,
                       int n_threads) {
    const int nt = fm_usable_threads(n_threads), nr = fm_panel_width_of(elem);
    for (int l = 0; l < net->n_layers; l++) {
        if (!fm_layer_in_panels(net, l, elem)) continue;
        const int I = net->sizes[l], O = net->sizes[l + 1];
        char *w = (char *)a + fm_weight_offset(net, l) * elem;
        copy_blocks(scratch, w, (size_t)I * O * elem, nt);
        relayout(w, scratch, I, O, nr, elem, to_panels, nt);
    }
    if (to_panels) /* (fits of several models may run at once) */
        __atomic_fetch_add(&layout_calls, 1, __ATOMIC_RELAXED);
}

void fm_copy_from_panels(const fm_net *net, void *dst, const void *src, size_t elem,
                         int n_threads) {
    const int nt = fm_usable_threads(n_threads), nr = fm_panel_width_of(elem), L = net->n_layers;
    char *d = dst;
    const char *s = src;
    for (int l = 0; l < L; l++) {
        const size_t w = fm_weight_offset(net, l), b = fm_bias_offset(net, l);
        const size_t end = l + 1 < L ? fm_weight_offset(net, l + 1) : fm_param_count(net);
        const size_t lo = fm_layer_in_panels(net, l, elem) ? b : w; /* row-major from here */
        if (lo == b)
            relayout(d + w * elem, s + w * elem, net->sizes[l], net->sizes[l + 1], nr, elem, 0,
                     nt);
        copy_blocks(d + lo * elem, s + lo * elem, (end - lo) * elem, nt);
    }
}

unsigned long long fm_panel_layout_calls(void) {
    return __atomic_load_n(&layout_calls, __ATOMIC_RELAXED);
}
