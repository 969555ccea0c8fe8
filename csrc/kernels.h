/* kernels.h — internal kernel declarations shared by the engine's translation units.
 * Shapes are row-major; B = batch rows, I = inputs, O = outputs, K = output units.
 * Every kernel exists as _f32 and _f64 (generated from the *_impl.h templates). */
#ifndef FASTMLP_KERNELS_H
#define FASTMLP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "fastmlp.h"
#include "fpenv.h"

/* Work below these sizes stays on one thread: waking the pool costs more.
 * Elementwise passes count elements; matrix products count multiply-adds. */
#define FM_PARALLEL_MIN_WORK 32768
#define FM_PARALLEL_MIN_MACS 524288
/* Per-thread panel copies: rows x FM_PACK_NR elements, rows = max(inputs, batch). */
#define FM_PACK_NR 32
#define FM_PACK_ROWS(I, B) ((I) > (B) ? (I) : (B))
/* Batches from which the forward pass packs weight panels (and widths from which dW does),
 * and the most rows that share one packed panel (the row group mc: cpuinfo.c). */
#define FM_PACK_GROUP 64
/* Layers of this many weights copy their forward panels at batches below FM_PACK_GROUP too. */
#define FM_PACK_LARGE ((size_t)1 << 20)
/* Batches from which the weight gradient reads its input transposed (X^T made once). */
#define FM_XT_MIN_BATCH 64
/* The row stride, in elements, of X^T (I rows of B) in fm_dense_backward_params' xt: B, or
 * B and one 64-byte line more where B elements fill an even number of lines. The transposing
 * copy writes 32 rows of X^T at a time (float64 in 4x4 blocks: half a line to each row, its
 * other half four rows of X later). With a stride of an even number of lines those rows
 * share few of L1's 64 sets (a 4 KiB stride, float64 at batch 512: all 32 in one set of 12
 * ways), and a half-written line leaves L1 before its second half comes: the copy took
 * 8.6 % of a one-thread float64 batch-512 epoch of 784-512-256-10, 3.7 % with the line
 * more (epochs 1.05x as fast; float32, whose copy writes whole lines, unchanged; RESULTS.md,
 * session 14). An odd number of lines puts each row in a set of its own. xt holds
 * I * fm_xt_stride(B, elem) elements: at most fm_xt_count(B, I, elem), which is what the
 * engine's workspace keeps for its largest batch (a shorter batch, 96 rows against 100,
 * may have the longer stride). */
static inline int fm_xt_stride(int B, size_t elem) {
    const size_t bytes = (size_t)B * elem;
    return bytes % 64 == 0 && (bytes / 64) % 2 == 0 ? B + (int)(64 / elem) : B;
}
/* The elements of xt for I rows of X^T and any batch up to B (fm_xt_stride's most) */
static inline size_t fm_xt_count(int B, int I, size_t elem) {
    return ((size_t)B + 64 / elem) * (size_t)I;
}

/* Columns of a float32 weight panel for the active kernel set (0: it has no tiles). */
int fm_panel_width(void);
/* Columns of a weight panel of elements of `elem` bytes (4: float32, 8: float64) for the
 * active kernel set (0: it has no tiles for that dtype). */
int fm_panel_width_of(size_t elem);
/* The register tile (mr x nr) of the active kernel set for float32 (f64 = 0) or float64,
 * and the largest k-block kc and the row group mc its products use (cpuinfo.c). */
void fm_blocking_info(int f64, int *mr, int *nr, int *kc, int *mc);
/* Offset (in elements of `elem` bytes) of dense layer l's weight panels in
 * fm_pack_weights_f32/_f64's layout. */
size_t fm_panels_offset(const fm_net *net, int l, size_t elem);

/* Panel layout during training (layout.c), for elements of `elem` bytes. Layer l trains in
 * it when its width is a multiple of fm_panel_width_of(elem) (never without register
 * tiles): W (I, O) stored as O / nr panels of (I, nr), one after another. */
int fm_layer_in_panels(const fm_net *net, int l, size_t elem);
/* Those layers' weight blocks of the parameter-shaped array a, in place: row-major to
 * panels (to_panels != 0) or back; scratch: fm_layout_scratch_count elements (fastmlp.h). */
void fm_convert_layout(const fm_net *net, void *a, void *scratch, size_t elem, int to_panels,
                       int n_threads);
/* dst = src, parameter-shaped, src with those layers in panels and dst row-major. */
void fm_copy_from_panels(const fm_net *net, void *dst, const void *src, size_t elem,
                         int n_threads);

/* The thread count to use for `requested` (1 in a process forked after this one ran
 * OpenMP teams; see threads.c). */
int fm_usable_threads(int requested);
/* This thread's number in the enclosing OpenMP team (0 outside one, or without OpenMP). */
int fm_thread_rank(void);
/* adapt.c: the threads for fm_train's next step of `batch` rows, and that step's time
 * (timed = 0: not comparable with the others, e.g. a short last batch). a may be NULL. */
int fm_adapt_threads(fm_adapt *a, const fm_net *net, int batch);
void fm_adapt_record(fm_adapt *a, int threads, double seconds, int timed);
double fm_seconds(void);

/* Streams of the counter-based training randomness (fm_hash): dropout of the input of
 * dense layer l uses stream FM_STREAM_DROPOUT + l. */
#define FM_STREAM_DROPOUT 0
#define FM_STREAM_NOISE 1000
#define FM_STREAM_SHIFT 1001
#define FM_STREAM_AFFINE 1002
uint64_t fm_stream_base(uint64_t key, uint64_t counter, uint64_t stream);
uint64_t fm_hash_at(uint64_t base, uint64_t index);
uint64_t fm_stream_skip(uint64_t base, uint64_t k);
static inline double fm_unit(uint64_t h) { return (double)(h >> 11) * 0x1.0p-53; }

/* Whether fm_train applies elementwise optimizer updates inside the weight-gradient
 * products (engine_impl.h; by default as cpuinfo.h's fm_fused_update_default says; _engine
 * sets it from FASTMLP_FUSED_UPDATE at import), setting it (1 on, 0 off, -1 the machine's
 * default), and the layer updates made that way so far. */
int fm_fused_update_enabled(void);
void fm_fused_update_set(int on);
unsigned long long fm_fused_update_calls(void);
void fm_fused_update_count(unsigned long long layers);

#define FM_KERNELS(T, SFX)                                                                      \
    /* One optimizer update of a step: its rule and state, its update number t and rate lr,  \
       the constants of that update number (Adam: lr / (1 - beta1^t) and                      \
       1 / sqrt(1 - beta2^t); Adagrad: the decayed rate), the parameter-shaped params and    \
       grads it reads and writes (optim.c) */                                                  \
    typedef struct {                                                                            \
        const fm_optimizer *opt;                                                                \
        int64_t t;                                                                              \
        double lr, rate, scale;                                                                 \
        T *params;                                                                              \
        const T *grads;                                                                         \
    } fm_update_##SFX;                                                                          \
    /* The next update of o (increments o->step) with rate lr */                               \
    fm_update_##SFX fm_update_next_##SFX(fm_optimizer *o, double lr, T *params, const T *grads); \
    /* Elements [lo, lo + n) of u's parameters (and state) updated, on the calling thread:    \
       elementwise, so the same bits whichever ranges a step is cut into */                  \
    void fm_update_range_##SFX(const fm_update_##SFX *u, size_t lo, size_t n);                \
    /* Elements [lo, hi) updated, in chunks over nt threads */                                 \
    void fm_update_span_##SFX(const fm_update_##SFX *u, size_t lo, size_t hi, int nt);        \
    /* x (n) <- act(x), in place */                                                             \
    void fm_act_forward_##SFX(T *x, size_t n, int act, double slope);                          \
    /* d (n) <- d * act'(z), with act'(z) computed from the activation's output a (n) */        \
    void fm_act_backward_##SFX(T *d, const T *a, size_t n, int act, double slope);             \
    /* the same for `rows` rows of n elements (x's and d's ld / ldd apart, a's lda apart) */    \
    void fm_act_forward_rows_##SFX(T *x, size_t ld, int rows, size_t n, int act, double slope); \
    void fm_act_backward_rows_##SFX(T *d, size_t ldd, const T *a, size_t lda, int rows,        \
                                    size_t n, int act, double slope);                          \
    /* Y (B, O) = act(X (B, I) @ W (I, O) + b (O)); pack: nt * FM_PACK_ROWS(I, B) * FM_PACK_NR \
       scratch elements (per-thread copies of weight panels); panels: W already in panel     \
       layout (fm_pack_weights_*; W is then not read), or NULL */                                \
    void fm_dense_forward_##SFX(T *Y, const T *X, const T *W, const T *b, int B, int I, int O, \
                                int act, double slope, int nt, T *pack, const T *panels);      \
    /* Y (B, O) = act(X (B, I) @ W + b (O)), W (I, O) given as CSR of W^T (pruned.c); xt     \
       (I, B) and yt (O, B) scratch */                                                          \
    void fm_pruned_forward_##SFX(T *Y, const T *X, const fm_pruned_csr *w, const T *b, int B, int I,     \
                              int O, int act, double slope, int nt, T *xt, T *yt);             \
    /* dW (I, O) = X (B, I)^T @ D (B, O);  db (O) = sum over rows of D; pack as above; xt:      \
       scratch of I * fm_xt_stride(B) elements for X^T, or NULL; in_panels: dW in panel       \
       layout (layout.c).                                                                       \
       With upd (dW lying in upd->grads), also updates the weights of dW's elements while    \
       each register tile's block of dW is in cache, where that block is contiguous (dW in   \
       panel layout, or a narrow layer's rows): returns 1 when it did (the weights updated,  \
       not the biases), else 0 (nothing updated). */                                          \
    int fm_dense_backward_params_##SFX(T *dW, T *db, const T *X, const T *D, int B, int I,     \
                                       int O, int nt, T *pack, T *xt, int in_panels,            \
                                       const fm_update_##SFX *upd);                             \
    /* dX (B, I) = (D (B, O) @ W (I, O)^T) * act'(A (B, I)); A == NULL: no activation factor; \
       pack as above; in_panels: W in panel layout (layout.c) */                                \
    void fm_dense_backward_input_##SFX(T *dX, const T *D, const T *W, const T *A, int B, int I, \
                                       int O, int act, double slope, int nt, T *pack,           \
                                       int in_panels);                                          \
    /* Loss of logits Z (B, K) against targets rows idx[0..B) (idx NULL: rows 0..B).           \
       Writes sample_loss (B) and sample_correct (B); delta (B, K) = d(mean loss)/dZ unless     \
       delta is NULL. */                                                                        \
    void fm_loss_##SFX(T *delta, double *sample_loss, double *sample_correct, const T *Z,      \
                       fm_targets targets, const int64_t *idx, int B, int K, int loss);        \
    /* fm_loss of a net with targets.heads: each head's loss on its column block, weighted   \
       and summed per sample; sample_correct is 0 (heads report accuracy per head) */          \
    void fm_loss_heads_##SFX(T *delta, double *sample_loss, double *sample_correct,            \
                             const T *Z, fm_targets targets, const int64_t *idx, int B, int K); \
    /* Y (B, K) <- the loss's output activation of logits Y, in place */                       \
    void fm_output_activation_##SFX(T *Y, int B, int K, int loss);                             \
    /* mask (B, n) = dropout multipliers drawn from `base`: 0 with probability p, else      \
       1/(1-p) (inverted) or 1 (classic) */                                                     \
    void fm_dropout_mask_##SFX(T *mask, int B, int n, double p, int classic, uint64_t base);  \
    /* y (n) = x (n) * m (n) elementwise; y may be x */                                         \
    void fm_mul_##SFX(T *y, const T *x, const T *m, size_t n);                                 \
    /* x (n) *= s */                                                                            \
    void fm_scale_##SFX(T *x, size_t n, double s);                                              \
    /* Batch norm, training: y (B, n) = gamma * xhat + beta, xhat = (x - mean) / sqrt(var+eps) \
       with the batch's mean and biased var (n); writes xhat (B, n), mean, var. */             \
    void fm_bn_forward_train_##SFX(T *y, T *xhat, T *mean, T *var, const T *x, const T *gamma, \
                                   const T *beta, int B, int n, double eps);                    \
    /* Batch norm, inference with running mean/var (n); xhat (B, n) may be NULL */             \
    void fm_bn_forward_infer_##SFX(T *y, T *xhat, const T *x, const T *gamma, const T *beta,   \
                                   const T *rmean, const T *rvar, int B, int n, double eps);     \
    /* Backward of either: dx (B, n) from dy (B, n); dgamma, dbeta (n). training: var is the   \
       batch variance (batch statistics are differentiated); else the running variance. */    \
    void fm_bn_backward_##SFX(T *dx, T *dgamma, T *dbeta, const T *dy, const T *xhat,          \
                              const T *var, const T *gamma, int B, int n, double eps,           \
                              int training);                                                    \
    /* running (2n: mean, var) <- (1-m) running + m (mean, var * B/(B-1)) */                   \
    void fm_bn_update_running_##SFX(T *running, const T *mean, const T *var, int B, int n,    \
                                    double momentum);                                           \
    /* X (B, n): random affine maps (rotation, scale, shear), then random shifts of (h, w, c)  \
       images, zero fill; then the input transform of `transform` (NULL or no scale: none:   \
       the images moved as raw pixels); then += noise_std * N(0, 1); tmp (n) scratch; X's    \
       rows are rows row0.. of the step's batch (their draws) */                              \
    void fm_augment_##SFX(T *X, T *tmp, int B, int n, const fm_augment *aug,                  \
                          const fm_input *transform, uint64_t key, uint64_t counter,          \
                          int64_t row0);                                                        \
    /* Weight penalty of params: returns l2/2 sum w^2 + l1 sum |w| over the weights (and the  \
       biases and BN parameters when pen->biases), summed in one order whether the layers of   \
       fm_layer_in_panels have their weights in panel layout (layout != 0) or not; adds its    \
       (sub)gradient to grads unless grads is NULL (the L1 part only when not proximal). */    \
    double fm_penalty_##SFX(T *grads, const T *params, const fm_net *net,                      \
                            const fm_penalty *pen, int layout);                                 \
    /* Soft-threshold the penalized parameters: w <- sign(w) max(|w| - t, 0) */                \
    void fm_prox_l1_##SFX(T *params, const fm_net *net, double t, int biases);                 \
    /* sum of squares of g (n) in double, summed over fixed blocks: thread-count independent */ \
    double fm_sum_squares_##SFX(const T *g, size_t n, int nt);                                 \
    /* Tied weights (ties.c): add each tied layer's weight gradient in grads (row-major),     \
       transposed back when the tie is, to its source's, in layer order, and zero it */        \
    void fm_tie_fold_##SFX(const fm_net *net, T *grads);

FM_KERNELS(float, f32)
FM_KERNELS(double, f64)
#undef FM_KERNELS

/* 1 when a layer of the net uses tied weights (ties.c) */
int fm_has_ties(const fm_net *net);

/* The input rows of a call (input.c; fm_input in fastmlp.h). */
#define FM_INPUT(T, SFX)                                                                        \
    /* Xb (B, I) = data-set rows idx[0..B) of in (rows first .. first+B-1 when idx is NULL),   \
       converted to T and transformed */                                                       \
    void fm_input_rows_##SFX(T *Xb, const fm_input *in, const int64_t *idx, int64_t first,   \
                             int B, int I, int nt);                                             \
    /* Rows first .. first+B-1 as the net reads them (B, I): in place when they need no       \
       conversion, transform or selection and lie contiguous, else converted into Xb */       \
    const T *fm_input_block_##SFX(T *Xb, const fm_input *in, int64_t first, int B, int I,     \
                                  int nt);                                                \
    /* Xb (B, I) <- the input transform of in (x * scale + shift), on converted rows */        \
    void fm_input_transform_##SFX(T *Xb, const fm_input *in, int B, int I);

FM_INPUT(float, f32)
FM_INPUT(double, f64)
#undef FM_INPUT

#endif
