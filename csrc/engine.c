/* engine.c — the training engine: workspace layout, forward/backward over the
 * whole net, and the step loop (batch gather, forward, loss, backward, update)
 * that runs many steps per call with no allocation and no Python. */
#include <math.h>
#include <string.h>

#include "kernels.h"

#define FM_ALIGN 64

size_t fm_param_count(const fm_net *net) {
    size_t n = 0;
    for (int l = 0; l < net->n_layers; l++)
        n += (size_t)net->sizes[l] * net->sizes[l + 1] + (size_t)net->sizes[l + 1];
    return n;
}

size_t fm_weight_offset(const fm_net *net, int layer) {
    size_t off = 0;
    for (int l = 0; l < layer; l++)
        off += (size_t)net->sizes[l] * net->sizes[l + 1] + (size_t)net->sizes[l + 1];
    return off;
}

size_t fm_bias_offset(const fm_net *net, int layer) {
    return fm_weight_offset(net, layer) + (size_t)net->sizes[layer] * net->sizes[layer + 1];
}

/* Byte offsets of the workspace regions for batches of up to `batch` rows:
 *   act[0]       (batch, n_0)  gathered input rows
 *   act[l]       (batch, n_l)  activations of layer l (act[L] holds the logits)
 *   delta[0..1]  (batch, max n_l, l >= 1)  ping-pong deltas
 *   loss, correct (batch) doubles: per-sample loss and accuracy */
typedef struct {
    size_t act[FM_MAX_LAYERS + 1];
    size_t delta[2];
    size_t loss, correct;
    size_t total;
} fm_ws_offsets;

static size_t round_up(size_t n) { return (n + FM_ALIGN - 1) / FM_ALIGN * FM_ALIGN; }

static void ws_offsets(const fm_net *net, int batch, size_t rs, fm_ws_offsets *o) {
    size_t off = 0;
    int widest = 1;
    for (int l = 0; l <= net->n_layers; l++) {
        o->act[l] = off;
        off += round_up((size_t)batch * net->sizes[l] * rs);
        if (l > 0 && net->sizes[l] > widest) widest = net->sizes[l];
    }
    for (int i = 0; i < 2; i++) {
        o->delta[i] = off;
        off += round_up((size_t)batch * widest * rs);
    }
    o->loss = off;
    off += round_up((size_t)batch * sizeof(double));
    o->correct = off;
    off += round_up((size_t)batch * sizeof(double));
    o->total = off;
}

size_t fm_workspace_bytes(const fm_net *net, int batch, size_t real_size) {
    fm_ws_offsets o;
    ws_offsets(net, batch, real_size, &o);
    return o.total + FM_ALIGN; /* room to align the caller's buffer */
}

static char *ws_base(void *work) {
    return (char *)(((uintptr_t)work + FM_ALIGN - 1) & ~(uintptr_t)(FM_ALIGN - 1));
}

static int net_ok(const fm_net *net) {
    if (net->n_layers < 1 || net->n_layers > FM_MAX_LAYERS || net->n_threads < 1) return 0;
    for (int l = 0; l <= net->n_layers; l++)
        if (net->sizes[l] < 1) return 0;
    return 1;
}

#define real float
#define FN(name) name##_f32
#include "engine_impl.h"
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include "engine_impl.h"
#undef real
#undef FN
