/* engine.c — the training engine: parameter and workspace layout, forward and
 * backward over the whole net (dropout, batch norm, activity penalties included),
 * and the step loop (gather, augment, forward, loss, backward, penalties, clipping,
 * update, pruning) that runs many steps per call with no allocation and no Python. */
#include <math.h>
#include <string.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

#include "gemm.h"
#include "kernels.h"
#include "sparse.h"

#define FM_ALIGN 64
/* AddressSanitizer builds (CMake option FASTMLP_SANITIZE) put a poisoned red zone after each
 * workspace region: the workspace is one allocation, so a kernel that runs past its region
 * into the next would go unnoticed otherwise. */
#ifdef __SANITIZE_ADDRESS__
#define FM_REDZONE FM_ALIGN
#else
#define FM_REDZONE 0
#endif
/* fm_train's panel layout (layout.c) in calls of at least this many steps, or of this many
 * rows in all: its two conversions cost 1.5-2 steps of 784-512-256-10 at batch 32, and
 * save 10-30% of each (a float64 call of ~0.2 s at batch 128 has ~28 steps). */
#define FM_LAYOUT_MIN_STEPS 32
#define FM_LAYOUT_MIN_ROWS (FM_LAYOUT_MIN_STEPS * 32)

/* Inference on several threads (predict, evaluate) splits the rows when each thread gets
 * at least this many: each block of rows goes through every layer on one thread, instead
 * of the team splitting every layer's product and waiting for each other between layers. */
#define FM_PREDICT_SPLIT_ROWS 64
/* A split evaluate holds the losses and accuracies of this many rows at most (on the
 * stack), and the threads wait for each other once per such window. */
#define FM_EVAL_WINDOW 2048

static unsigned long long predict_splits = 0, evaluate_splits = 0;

unsigned long long fm_predict_split_calls(void) {
    return __atomic_load_n(&predict_splits, __ATOMIC_RELAXED);
}

unsigned long long fm_evaluate_split_calls(void) {
    return __atomic_load_n(&evaluate_splits, __ATOMIC_RELAXED);
}

static void count_split(unsigned long long *counter) {
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static int has_bn(const fm_net *net, int l) { return l < net->n_layers - 1 && net->bn[l]; }

/* Elements of layer l's parameters: W, b and (BN) gamma, beta. */
static size_t layer_params(const fm_net *net, int l) {
    const size_t I = (size_t)net->sizes[l], O = (size_t)net->sizes[l + 1];
    return I * O + O + (has_bn(net, l) ? 2 * O : 0);
}

size_t fm_param_count(const fm_net *net) { return fm_weight_offset(net, net->n_layers); }

size_t fm_weight_offset(const fm_net *net, int layer) {
    size_t off = 0;
    for (int l = 0; l < layer; l++) off += layer_params(net, l);
    return off;
}

size_t fm_bias_offset(const fm_net *net, int layer) {
    return fm_weight_offset(net, layer) + (size_t)net->sizes[layer] * net->sizes[layer + 1];
}

size_t fm_bn_offset(const fm_net *net, int layer) {
    return fm_bias_offset(net, layer) + (size_t)net->sizes[layer + 1];
}

size_t fm_running_offset(const fm_net *net, int layer) {
    size_t off = 0;
    for (int l = 0; l < layer; l++)
        if (has_bn(net, l)) off += 2 * (size_t)net->sizes[l + 1];
    return off;
}

size_t fm_running_count(const fm_net *net) { return fm_running_offset(net, net->n_layers); }

/* Byte offsets of the workspace regions for batches of up to `batch` rows:
 *   x0, xmask, xin, xgrad (batch, n_0): gathered input, its dropout mask, the masked
 *       input fed to layer 0, scratch for adversarial input gradients (all empty for a
 *       net with csr_input)
 *   per hidden layer l (batch, n_{l+1}): z (pre-activation or BN xhat), a (activation),
 *       o (BN-after output), h (dropout output), mask (dropout mask); mean, var (n_{l+1})
 *   Regions a network never uses (dropout's without dropout, batch norm's without it)
 *   are empty: the workspace is faulted in whole, so they would cost resident memory.
 *   logits (batch, n_L)
 *   delta[0..2] (batch, max width): ping-pong deltas and a scratch
 *   pack (threads, max(width, batch), FM_PACK_NR): per-thread packed panels
 *   xt (max width, batch + one line): a layer's input transposed for its weight gradient
 *   loss, correct (batch) doubles: per-sample loss and accuracy
 *   each followed by FM_REDZONE bytes */
typedef struct {
    size_t x0, xmask, xin, xgrad;
    size_t z[FM_MAX_LAYERS], a[FM_MAX_LAYERS], o[FM_MAX_LAYERS], h[FM_MAX_LAYERS];
    size_t mask[FM_MAX_LAYERS], mean[FM_MAX_LAYERS], var[FM_MAX_LAYERS];
    size_t logits, delta[3], pack, xt;
    size_t loss, correct;
    size_t total;
} fm_ws_offsets;

static size_t round_up(size_t n) { return (n + FM_ALIGN - 1) / FM_ALIGN * FM_ALIGN; }

/* A region of `bytes` at offset `off`; returns where the next one starts. With a base (ASan
 * builds), the region becomes addressable and its padding and red zone poisoned. */
static size_t take(char *base, size_t off, size_t bytes) {
    const size_t next = off + round_up(bytes) + FM_REDZONE;
#ifdef __SANITIZE_ADDRESS__
    if (base) {
        ASAN_UNPOISON_MEMORY_REGION(base + off, bytes);
        ASAN_POISON_MEMORY_REGION(base + off + bytes, next - off - bytes);
    }
#else
    (void)base;
#endif
    return next;
}

/* The regions for batches of up to `batch` rows; base: the aligned workspace when carving
 * it (poisons the red zones in ASan builds), or NULL when only sizing it. */
static void ws_offsets(const fm_net *net, int batch, size_t rs, fm_ws_offsets *o, char *base) {
    size_t off = 0;
    /* CSR input (csr_input): layer 0 reads the sparse rows in place, and no pass needs
       them dense or packed */
    const size_t dense_in = !net->csr_input;
    int widest = dense_in ? net->sizes[0] : 1;
#define TAKE(field, count) (o->field = off, off = take(base, off, (size_t)(count) * rs))
    TAKE(x0, dense_in * batch * net->sizes[0]);
    const size_t in_drop = dense_in && net->dropout[0] > 0;
    TAKE(xmask, in_drop * batch * net->sizes[0]);
    TAKE(xin, in_drop * batch * net->sizes[0]);
    TAKE(xgrad, dense_in * batch * net->sizes[0]);
    for (int l = 0; l < net->n_layers - 1; l++) {
        const size_t n = (size_t)net->sizes[l + 1], bn = net->bn[l] != 0;
        const size_t drop = net->dropout[l + 1] > 0, bn_after = net->bn[l] == FM_BN_AFTER;
        TAKE(z[l], bn * batch * n);
        TAKE(a[l], batch * n);
        TAKE(o[l], bn_after * batch * n);
        TAKE(h[l], drop * batch * n);
        TAKE(mask[l], drop * batch * n);
        TAKE(mean[l], bn * n);
        TAKE(var[l], bn * n);
    }
    for (int l = 1; l <= net->n_layers; l++)
        if (net->sizes[l] > widest) widest = net->sizes[l];
    TAKE(logits, (size_t)batch * net->sizes[net->n_layers]);
    for (int i = 0; i < 3; i++) TAKE(delta[i], (size_t)batch * widest);
    TAKE(pack, (size_t)net->n_threads * FM_PACK_ROWS(widest, batch) * FM_PACK_NR);
    /* (a shorter batch's stride may be the longer one: 96 rows a line more, 100 not) */
    TAKE(xt, fm_xt_count(batch, widest, rs));
#undef TAKE
    o->loss = off;
    off = take(base, off, (size_t)batch * sizeof(double));
    o->correct = off;
    off = take(base, off, (size_t)batch * sizeof(double));
    o->total = off;
}

size_t fm_workspace_bytes(const fm_net *net, int batch, size_t real_size) {
    fm_ws_offsets o;
    ws_offsets(net, batch, real_size, &o, NULL);
    size_t bytes = o.total + FM_ALIGN; /* room to align the caller's buffer */
    const int nt = net->n_threads;
    if (nt > 1 && batch / nt >= 1) { /* or predict's row split: nt one-thread workspaces of
        batch / nt rows (about as large: the per-row regions add up to the same) */
        fm_net one = *net;
        one.n_threads = 1;
        ws_offsets(&one, batch / nt, real_size, &o, NULL);
        const size_t parts = (o.total + FM_ALIGN) * (size_t)nt;
        if (parts > bytes) bytes = parts;
    }
    return bytes;
}

static char *ws_base(void *work) {
    return (char *)(((uintptr_t)work + FM_ALIGN - 1) & ~(uintptr_t)(FM_ALIGN - 1));
}

static int net_ok(const fm_net *net) {
    if (net->n_layers < 1 || net->n_layers > FM_MAX_LAYERS || net->n_threads < 1) return 0;
    for (int l = 0; l <= net->n_layers; l++)
        if (net->sizes[l] < 1) return 0;
    for (int l = 0; l < net->n_layers; l++)
        if (!(net->dropout[l] >= 0 && net->dropout[l] < 1)) return 0;
    return fm_ties_ok(net);
}

#define FM_TEMPLATE "engine_impl.h"
#include "instantiate.h"
#undef FM_TEMPLATE

/* Curvature products (Hessian-, Gauss-Newton- and Jacobian-vector) on the passes above. */
#define FM_TEMPLATE "curvature_impl.h"
#include "instantiate.h"
