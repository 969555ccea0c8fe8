/* fastmlp.h — public C API of the fastmlp training engine (plain C, no Python).
 *
 * House rules (see DESIGN.md §2):
 *  - Every buffer is owned by the caller (NumPy on the Python side); the engine
 *    never keeps a pointer past the call that received it.
 *  - Inputs are validated once, at the Cython boundary; kernels assume valid input.
 *  - Functions return an fm_status; nothing prints, aborts or exits.
 *  - Each entry point exists as an explicit _f32 and _f64 symbol.
 *
 * Parameter layout (private: Python reads and writes it only through the
 * engine's getters/setters):
 *     params = [W_0 (n_0, n_1) row-major, b_0 (n_1), W_1 (n_1, n_2), b_1 (n_2), ...]
 * gradients and optimizer state use the same layout. While fm_train runs it may hold some
 * layers' weights (and their gradients and state) in the register tiles' panel layout
 * instead (layout.c); it converts them back before it returns.
 *
 * The workspace is one byte buffer of fm_workspace_bytes(net, batch) bytes,
 * allocated once per fit by the caller and carved up here (workspace.h).
 */
#ifndef FASTMLP_H
#define FASTMLP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FM_MAX_LAYERS 64

typedef enum {
    FM_IDENTITY = 0,
    FM_SIGMOID = 1,
    FM_TANH = 2,
    FM_RELU = 3,
    FM_LEAKY_RELU = 4
} fm_activation;

typedef enum {
    FM_CROSS_ENTROPY = 0,        /* softmax output, labels or probability targets */
    FM_BINARY_CROSS_ENTROPY = 1, /* sigmoid output, targets in {0, 1} */
    FM_MSE = 2,                  /* identity output */
    FM_HINGE = 3,                /* identity output, targets in {-1, +1} */
    FM_MULTI_HINGE = 4,          /* identity output, labels */
    FM_POISSON = 5,              /* exp output (log link), targets >= 0 */
    FM_KL_DIV = 6,               /* softmax output, target distributions */
    FM_SYMMETRIC_KL = 7,         /* softmax output, target distributions, all > 0 */
    FM_BHATTACHARYYA = 8         /* softmax output, target distributions */
} fm_loss;

typedef enum {
    FM_OK = 0,
    FM_ERR_NONFINITE_LOSS = 1, /* a batch loss was NaN or inf; no update was applied for it */
    FM_ERR_BAD_ARGUMENT = 2,   /* a size or code the boundary should have rejected */
    FM_ERR_NONFINITE_GRAD = 3, /* the global gradient norm was NaN or inf (clipping asked to
                                  stop); no update was applied for that step */
    FM_ERR_NONFINITE_INPUT = 4 /* predict with fm_input.check_finite: an input row held NaN
                                  or inf as the net sees it (the outputs are not all written) */
} fm_status;

/* Update rules; each follows the torch.optim optimizer of the same name. */
typedef enum {
    FM_OPT_SGD = 0,      /* momentum, dampening, nesterov, weight_decay */
    FM_OPT_ADAGRAD = 1,  /* lr_decay, weight_decay, eps; state: sum */
    FM_OPT_ADADELTA = 2, /* rho, eps, weight_decay; state: square_avg, acc_delta */
    FM_OPT_RMSPROP = 3,  /* alpha, eps, weight_decay, momentum, centered;
                            state: square_avg, momentum_buffer, grad_avg */
    FM_OPT_ADAM = 4,     /* beta1, beta2, eps, weight_decay (L2), amsgrad;
                            state: exp_avg, exp_avg_sq, max_exp_avg_sq */
    FM_OPT_ADAMW = 5,    /* as Adam, decoupled weight decay */
    FM_OPT_RPROP = 6,    /* etaminus, etaplus, step_min, step_max; state: prev, step_size */
    FM_OPT_DELTA_BAR_DELTA = 7 /* kappa, phi, theta, weight_decay; state: rate, bar_delta */
} fm_optimizer_kind;

#define FM_OPT_MAX_SLOTS 3

typedef enum { FM_BN_NONE = 0, FM_BN_BEFORE = 1, FM_BN_AFTER = 2 } fm_batch_norm;

/* The network's shape; copied by value, holds no pointers.
 * Hidden layer l (0 <= l < L-1) computes, in training mode,
 *     z = h_{l-1} W_l + b_l;  [BN before]  a = act(z or BN(z));  [BN after]  o = BN(a) or a;
 *     h_l = o * dropout mask (rate dropout[l+1]),
 * with h_{-1} = X * input dropout mask (rate dropout[0]). BN(x) = gamma (x - mean) /
 * sqrt(var + eps) + beta uses batch statistics in training and running ones otherwise.
 * Inverted dropout scales kept units by 1/(1-p) in training; classic dropout trains
 * unscaled and scales by (1-p) at inference (the same as multiplying the outgoing weights
 * by 1-p). */
typedef struct {
    int n_layers;                 /* dense layers L, 1 <= L <= FM_MAX_LAYERS */
    int sizes[FM_MAX_LAYERS + 1]; /* widths n_0 (inputs) ... n_L (outputs) */
    int act[FM_MAX_LAYERS];       /* fm_activation of layers 0..L-2; the last layer is linear
                                     (its output activation belongs to the loss) */
    double leaky_slope;           /* negative-side slope of FM_LEAKY_RELU, >= 0 */
    int loss;                     /* fm_loss */
    int n_threads;                /* OpenMP threads, >= 1; 1 never starts a thread pool */
    double dropout[FM_MAX_LAYERS]; /* dropout rate on the input of dense layer l, in [0, 1) */
    int dropout_classic;          /* 0: inverted dropout, 1: classic */
    int bn[FM_MAX_LAYERS];        /* fm_batch_norm of hidden layer l */
    double bn_eps, bn_momentum;   /* torch.nn.BatchNorm1d: 1e-5, 0.1 */
    int csr_input;                /* 1: the calls read X as CSR rows (the fm_*_csr entry
                                     points, which need it): the workspace then has no dense
                                     input regions; 0: dense X (all other entry points) */
    /* Tied weights (ties.c): tie[l] = 0: dense layer l owns its weights; s + 1: it uses
       layer s's (transposed when tie_transpose[l]); s owns its weights, shapes match. */
    int tie[FM_MAX_LAYERS];
    int tie_transpose[FM_MAX_LAYERS];
} fm_net;

/* The thread count of fm_train's steps, adapted to the machine (adapt.c). On a busy
 * machine a team of n_threads can be many times slower than one thread (a descheduled
 * thread stalls every fork/join of a step), so fm_train times its steps and runs them with
 * n_threads or with one thread, whichever is faster now, probing the other now and then.
 * Results do not depend on the count it picks. The caller owns it across calls (zeroed,
 * then `enabled` set); fm_train resets it when the batch size or n_threads change. */
#define FM_ADAPT_WINDOW 5
typedef struct {
    int enabled;              /* 0: every step uses n_threads */
    double test_extra[2];     /* seconds added to each measured step of one thread [0] or of
                                 n_threads [1]: lets tests simulate a busy machine */
    int64_t steps[2];         /* steps run with one thread / with n_threads (statistics) */
    /* private to adapt.c */
    int batch, n_threads;     /* what the timings below are for */
    int current;              /* 0: one thread, 1: n_threads */
    int probing;              /* steps left in the probe of the other choice (0: none) */
    int skip;                 /* 1: do not time the next step (its team just changed) */
    int64_t since;            /* steps with the current choice since the last probe */
    int first_probe;          /* steps before the first probe */
    double work;              /* multiply-adds of a step's forward pass */
    double since_s;           /* their seconds */
    double sample[2][FM_ADAPT_WINDOW]; /* recent step times of each choice (ring buffers) */
    int n_sample[2], next[2];
} fm_adapt;

/* Forget the team/one-thread step time ratio that new fm_adapt states start from. */
void fm_adapt_forget(void);
/* The threads for a forward pass of `rows` rows outside training (predict, evaluate,
 * curvature products): 1 while the last ratio measured on steps of about that much work
 * says a team is slower than one thread, else net->n_threads. */
int fm_adapt_hint(const fm_net *net, int rows);

/* One dense layer's weights W (n_in, n_out) as CSR of W^T: row o holds the inputs i with
 * W[i][o] != 0, cols[rowptr[o] .. rowptr[o+1]) and their values vals (the net's dtype),
 * inputs in increasing order; rowptr has n_out + 1 entries. */
typedef struct {
    const int32_t *rowptr;
    const int32_t *cols;
    const void *vals;
} fm_pruned_csr;

/* Caller-owned buffers of one model, valid for the length of a call. */
typedef struct {
    void *params;           /* fm_param_count elements */
    void *grads;            /* like params */
    void *running;          /* fm_running_count elements: BN running mean, var per BN layer */
    const void *prune_mask; /* like params: 1 keeps, 0 prunes (NULL: no pruning) */
    void *work;             /* fm_workspace_bytes(net, batch_cap) bytes */
    int batch_cap;          /* the batch the workspace was sized for */
    const void *panels;     /* fm_predict only: the weights as fm_pack_weights_* laid
                               them out for the active kernel, or NULL (packed per call) */
    void *scratch;          /* fm_train only: fm_layout_scratch_count elements, or NULL.
                               With it fm_train keeps weights, gradients and optimizer state
                               in the tiles' panel layout while it runs (not with a pruning
                               mask), converting on entry and back before it returns. */
    fm_adapt *adapt;        /* fm_train only: the adaptive thread count, or NULL (n_threads) */
    const fm_pruned_csr *pruned;      /* fm_predict only: n_layers entries, each layer's weights in CSR
                               (pruned.c; rowptr NULL: that layer stays dense), or NULL.
                               Results equal the dense path's up to rounding. */
    double *grad_norms;     /* fm_train only: (n_steps, n_layers) doubles that receive each
                               step's L2 norm of every dense layer's weight gradient (after
                               penalties, pruning mask and clipping: the one the update
                               uses; 0 for a tied layer, whose gradient is in its
                               source's), or NULL (not computed) */
} fm_buffers;

/* Penalties added to the mean loss (and their gradients). */
typedef struct {
    double l2;         /* + l2/2 * sum W^2 */
    double l1;         /* + l1 * sum |W| (subgradient sign(W), sign(0) = 0) */
    int l1_proximal;   /* 1: apply L1 as soft-thresholding after each update instead */
    int biases;        /* 1: the penalties also cover biases and BN parameters */
    double act_l1;     /* + act_l1 * mean over samples of sum |a| over hidden units */
    double act_l2;     /* + act_l2/2 * mean over samples of sum a^2 over hidden units */
} fm_penalty;

/* Training-time input transformations, applied in the batch-gather step. */
typedef struct {
    double noise_std;          /* Gaussian noise added to every input */
    int shift;                 /* random shifts of up to `shift` pixels ... */
    int height, width, channels; /* ... of inputs that are (height, width, channels) images */
    double adv_eps, adv_ratio; /* FGSM: the first round(adv_ratio*B) rows of each batch become
                                  x + adv_eps * sign(dLoss/dx) */
    /* random affine maps of the images about their centre (before the shifts), per sample:
       rotation by U(-rotate, rotate) degrees, scaling by U(1 - scale, 1 + scale), shear
       by U(-shear, shear) degrees; bilinear interpolation, zero fill */
    double rotate, scale, shear;
} fm_augment;

/* Counter-based randomness of the training step: draws are a hash of
 * (key, counter, stream, index), so they do not depend on the thread count. */
typedef struct {
    uint64_t key;
    int64_t counter; /* training steps taken; each step increments it */
} fm_random;

/* Weights in the register-tile kernels' panel layout, so that repeated predicts do not
 * copy panels on every call: fm_packed_weights_count elements of `elem` bytes (4 float32,
 * 8 float64; 0 when the active kernel set has no tiles for that dtype), filled by
 * fm_pack_weights_f32/_f64 from params. Valid until the parameters or the active kernel
 * set change. */
size_t fm_packed_weights_count(const fm_net *net, size_t elem);
/* Elements (of `elem` bytes: 4 float32, 8 float64) of fm_buffers.scratch for fm_train's
 * panel layout (0: no layer can use it). */
size_t fm_layout_scratch_count(const fm_net *net, size_t elem);
/* Arrays converted into that layout so far (tests read it to see that training used it). */
unsigned long long fm_panel_layout_calls(void);
/* Predict calls whose rows were split between threads so far (tests read it). */
unsigned long long fm_predict_split_calls(void);
/* Evaluate calls whose rows were split between threads so far (tests read it). */
unsigned long long fm_evaluate_split_calls(void);
void fm_pack_weights_f32(const fm_net *net, const float *params, float *panels);
void fm_pack_weights_f64(const fm_net *net, const double *params, double *panels);

/* 1 when every element of x (n) is finite (no NaN, no infinity); n_threads as elsewhere. */
int fm_all_finite_f32(const float *x, size_t n, int n_threads);
int fm_all_finite_f64(const double *x, size_t n, int n_threads);

/* 1 when this process was forked after its parent ran OpenMP thread teams: the engine
 * then runs single-threaded (GNU OpenMP cannot start teams after such a fork). */
int fm_fork_serial(void);

/* Hash-based uniform in [0, 1) (53 bits) and its integer source; see rng.c. */
uint64_t fm_hash(uint64_t key, uint64_t counter, uint64_t stream, uint64_t index);
double fm_uniform(uint64_t key, uint64_t counter, uint64_t stream, uint64_t index);

/* The data a call reads its input rows from (input.c). Data-set row i is row rows[i] (row i
 * when rows is NULL) of a matrix whose rows start row_stride bytes apart (any sign), each
 * n_0 contiguous elements of fm_input_type `type`. The engine converts each row to the
 * net's dtype as it copies it (as a C cast does: integers and float16 exactly, float64 to
 * float32 rounded to nearest) and, when scale is not NULL, maps element j to
 * x * scale[j] + shift[j] in the net's dtype, rounding the product and then the sum (no
 * fused multiply-add): the bits of NumPy's x.astype(dtype) * scale + shift. A call of the
 * net's own dtype with no rows, no transform and contiguous rows reads them in place. */
typedef enum {
    FM_IN_F32 = 0,
    FM_IN_F64 = 1,
    FM_IN_F16 = 2, /* IEEE half precision */
    FM_IN_U8 = 3,
    FM_IN_I8 = 4,
    FM_IN_U16 = 5,
    FM_IN_I16 = 6,
    FM_IN_I32 = 7
} fm_input_type;

typedef struct {
    const void *data;
    int type;             /* fm_input_type */
    int64_t row_stride;   /* bytes from one stored row to the next */
    const int64_t *rows;  /* (n,) stored row of each data-set row, or NULL */
    const void *scale;    /* (n_0,) of the net's dtype, or NULL: no transform ... */
    const void *shift;    /* ... and (n_0,) with it */
    int check_finite;     /* predict: check each block's rows as the net sees them (after
                             conversion and transform) for NaN and inf: FM_ERR_NONFINITE_INPUT.
                             The other calls ignore it (their callers check the input). */
} fm_input;

/* Training targets: exactly one of labels and dense is non-NULL.
 * labels (n,) int32 class indices; dense (n, n_L) target rows of the net's dtype.
 * label_smoothing (FM_CROSS_ENTROPY only, in [0, 1]): each target row t becomes
 * (1 - label_smoothing) t + label_smoothing / n_L, as torch.nn.CrossEntropyLoss's.
 * weights (n,) non-negative per-sample weights of the net's dtype, or NULL for equal
 * weights: a batch's loss is then sum(w_i * loss_i) / sum(w_i) (scikit-learn's rule),
 * and the per-sample losses/accuracies reported are scaled by w_i * B / sum(w_i) so that
 * their plain mean is the weighted mean. */
typedef struct {
    const int32_t *labels;
    const void *dense;
    const void *weights;
    double label_smoothing;
    const struct fm_head *heads; /* multitask heads (heads.c), or NULL: one loss, net->loss */
    int n_heads;
} fm_targets;

/* One head of a multitask net (heads.c): the output columns [offset, offset + width) with
 * their own loss and weight in the objective, sum_h weight_h * mean loss_h. With heads,
 * fm_targets.dense (n, n_L) holds each head's targets in its own columns: the class index
 * (as a value of the net's dtype) in column `offset` for a labels head, the target values
 * otherwise; fm_targets.labels is NULL. The heads cover the n_L columns in order. */
typedef struct fm_head {
    int offset, width;      /* output columns */
    int loss;               /* fm_loss of this head */
    int labels;             /* 1: class-index targets (cross_entropy, multi_hinge) */
    double weight;          /* >= 0; 0: the head has no influence (its delta is 0) */
    double label_smoothing; /* cross_entropy heads, in [0, 1] */
} fm_head;

/* An update rule, its hyper-parameters and its state. The state is
 * FM_OPT_MAX_SLOTS caller-owned arrays ("slots") shaped like the parameters, in the
 * order listed under fm_optimizer_kind; the caller initializes them (zeros, except
 * Adagrad's sum = initial_accumulator_value, Rprop's step_size = lr, and
 * DeltaBarDelta's rate = lr) and they are valid for the length of one call. */
typedef struct {
    int kind; /* fm_optimizer_kind */
    double momentum, dampening, weight_decay, eps;
    double alpha, rho, beta1, beta2, lr_decay;
    double etaminus, etaplus, step_min, step_max;
    double kappa, phi, theta;
    int nesterov, centered, amsgrad;
    int eps_inside; /* Adagrad, RMSprop: g / sqrt(s + eps) (Keras, the course) instead of
                       PyTorch's g / (sqrt(s) + eps) */
    int64_t step; /* updates applied so far; each update increments it first */
    void *slot[FM_OPT_MAX_SLOTS];
} fm_optimizer;

/* Where fm_train copies the state its first step starts from, once that step's loss is
 * known to be finite: the parameters, the batch-norm running statistics and the optimizer
 * slots in use (NULL: not copied). A diverging run can go back to it. */
typedef struct {
    void *params, *running;
    void *slot[FM_OPT_MAX_SLOTS];
} fm_snapshot;

/* Gradient clipping applied before each update (torch.nn.utils semantics). */
typedef struct {
    double max_norm;  /* > 0: scale grads by max_norm / (norm + 1e-6) when norm > max_norm */
    double max_value; /* > 0: clamp every gradient to [-max_value, max_value] (after the norm) */
    int error_if_nonfinite; /* a NaN/inf norm stops training with FM_ERR_NONFINITE_GRAD */
} fm_clip;

size_t fm_param_count(const fm_net *net);
/* Offsets (in elements) of W_l, b_l and (BN layers) gamma_l inside params; beta_l
 * follows gamma_l. Layout: [W_0, b_0, (gamma_0, beta_0), W_1, b_1, ...]. */
size_t fm_weight_offset(const fm_net *net, int layer);
size_t fm_bias_offset(const fm_net *net, int layer);
size_t fm_bn_offset(const fm_net *net, int layer);
/* Running statistics: [mean_l, var_l] for each BN layer l in order. */
size_t fm_running_count(const fm_net *net);
size_t fm_running_offset(const fm_net *net, int layer);
/* Bytes of workspace needed for batches of up to `batch` samples. */
size_t fm_workspace_bytes(const fm_net *net, int batch, size_t real_size);

/* Seeded random numbers: xoshiro256** seeded through splitmix64. */
void fm_rng_seed(uint64_t state[4], uint64_t seed);
uint64_t fm_rng_next(uint64_t state[4]);
/* Uniform integer in [0, n): the high 64 bits of next() * n. */
uint64_t fm_rng_below(uint64_t state[4], uint64_t n);
/* Fisher-Yates shuffle of order (n,) in place: for i = n-1 .. 1, swap i with below(i+1). */
void fm_shuffle(uint64_t state[4], int64_t *order, int64_t n);

#define FM_DECLARE(T, SFX)                                                                      \
    /* out (n, n_L) = output activation of the net (inference mode) applied to the n rows of  \
       X (fm_input), in blocks of buf->batch_cap rows; logits != 0 leaves out the output      \
       activation */                                                                           \
    int fm_predict_##SFX(const fm_net *net, const fm_buffers *buf, const fm_input *X,         \
                         int64_t n, int logits, T *out);                                        \
    /* Mean loss + penalties over X (n, n_0) and its gradients into buf->grads; input_grad    \
       (n, n_0) = dLoss/dX when not NULL. training: dropout masks drawn from (rng, stream 0)   \
       and BN batch statistics (running statistics are not updated). n <= batch_cap. */       \
    int fm_loss_grad_##SFX(const fm_net *net, const fm_buffers *buf, const T *X,              \
                           fm_targets targets, int n, int training, const fm_penalty *pen,     \
                           fm_random rng, double *loss, T *input_grad);                        \
    /* Sums of per-sample loss and accuracy over the n rows of X (fm_input) in inference mode  \
       (no penalties), in blocks of batch_cap rows; accuracy is 0 for losses without one       \
       (mse). Unweighted: targets.weights must be NULL. */                                     \
    int fm_evaluate_##SFX(const fm_net *net, const fm_buffers *buf, const fm_input *X,        \
                          fm_targets targets, int64_t n, double *loss_sum, double *correct_sum); \
    /* Runs n_steps training steps on the n rows of X (fm_input: the batch gather converts     \
       them). order holds one or more epochs of n sample indices each;                          \
       a step takes the next batch_size of them from start on, fewer where an epoch ends (a   \
       batch never crosses a multiple of n); step s uses learning rate lr[s]. The caller      \
       checks that the steps stay within order.                                               \
       Writes each step's mean loss (with penalties) and accuracy to step_loss/step_correct    \
       (n_steps,), the number of completed steps to *steps_done. Stops with                    \
       FM_ERR_NONFINITE_LOSS before updating on a non-finite loss. snap (or NULL) receives the \
       state at the start once the first step's loss is finite. */                             \
    int fm_train_##SFX(const fm_net *net, const fm_buffers *buf, int batch_size,              \
                       const fm_input *X,                                                       \
                       fm_targets targets, int64_t n, const int64_t *order, int64_t start,      \
                       int n_steps, const double *lr, fm_optimizer *opt, const fm_clip *clip,   \
                       const fm_penalty *pen, const fm_augment *aug, fm_random *rng,            \
                       const fm_snapshot *snap, double *step_loss, double *step_correct,        \
                       int *steps_done);                                                        \
    /* Data-parallel training, one step in two halves. (1) out (param + running count) =      \
       grad_scale * the gradient of the mean loss (no penalties) over rows idx[0..B) of X,     \
       rows row0.. of step rng.counter's batch (their dropout masks and augmentation draws;    \
       no adversarial rows), batch norm on the statistics of these B rows (ghost batch norm),  \
       then, laid out as running, stat_scale * (each BN layer's mean, unbiased variance).    \
       *loss, *correct: grad_scale * the rows' mean loss and accuracy. Training workspace.     \
       Runs on the adaptive thread count of blocks of `block` >= B rows (buf->adapt, as       \
       fm_train's steps), written to *threads. (2) fm_apply_grad, on `threads` threads: the   \
       update of fm_train's step from the summed gradient in buf->grads (row-major):          \
       penalties (added to *loss), mask, clipping, optimizer with rate lr, L1 prox; then     \
       each BN layer's running (mean, var) <- (1-m) running + m stats. FM_ERR_NONFINITE_GRAD  \
       as fm_train. */                                                                         \
    int fm_block_grad_##SFX(T *out, const fm_net *net, const fm_buffers *buf, const fm_input *X, \
                            fm_targets targets, const int64_t *idx, int B, int block,           \
                            int64_t row0, double grad_scale, double stat_scale,                 \
                            const fm_augment *aug, fm_random rng, double *loss,                 \
                            double *correct, int *threads);                                     \
    int fm_apply_grad_##SFX(const fm_net *net, const fm_buffers *buf, const T *stats,          \
                            double lr, fm_optimizer *opt, const fm_clip *clip,                  \
                            const fm_penalty *pen, int threads, double *loss);                  \
    /* One update of p (n) from g (n) with rate lr; increments opt->step first. */             \
    void fm_optimizer_step_##SFX(fm_optimizer *opt, T *p, const T *g, size_t n, double lr,     \
                                 int n_threads);                                                \
    /* Clip the parameter-shaped g in place as `clip` says (layout: the layers of            \
       fm_layer_in_panels have their weights in panel layout); returns the global norm before  \
       clipping, summed in one order for either layout (NaN/inf when the gradient is not     \
       finite; then g is left unchanged if error_if_nonfinite). */                            \
    double fm_clip_grads_##SFX(const fm_net *net, T *g, int layout, const fm_clip *clip,       \
                               int n_threads);

FM_DECLARE(float, f32)
FM_DECLARE(double, f64)
#undef FM_DECLARE

/* A sparse input X (n_rows, n_0) in CSR form: row i holds data[e] in column indices[e] for e
 * in [indptr[i], indptr[i+1]), in any order, a repeated column adding up. The boundary
 * checks it: indptr[0] = 0 and non-decreasing, indices in [0, n_0), data finite. */
typedef struct {
    const void *data;       /* (nnz) values of the net's dtype */
    const int32_t *indices; /* (nnz) column indices */
    const int64_t *indptr;  /* (n_rows + 1) */
    int64_t n_rows;
} fm_csr;

/* fm_predict, fm_evaluate, fm_loss_grad and fm_train on a CSR input: layer 0 multiplies the
 * sparse rows (sparse.c; a batch reads the rows `order` names in place, nothing is gathered
 * or densified). The net must have csr_input = 1 (and the workspace be sized with it), no
 * input dropout and, in fm_train, no input augmentation (noise, shifts, adversarial rows):
 * FM_ERR_BAD_ARGUMENT otherwise. fm_loss_grad_csr computes no input gradient. */
#define FM_DECLARE_CSR(T, SFX)                                                                  \
    int fm_predict_csr_##SFX(const fm_net *net, const fm_buffers *buf, const fm_csr *X,       \
                             int logits, T *out);                                               \
    int fm_loss_grad_csr_##SFX(const fm_net *net, const fm_buffers *buf, const fm_csr *X,     \
                               fm_targets targets, int training, const fm_penalty *pen,        \
                               fm_random rng, double *loss);                                    \
    int fm_evaluate_csr_##SFX(const fm_net *net, const fm_buffers *buf, const fm_csr *X,      \
                              fm_targets targets, double *loss_sum, double *correct_sum);       \
    int fm_train_csr_##SFX(const fm_net *net, const fm_buffers *buf, int batch_size,          \
                           const fm_csr *X, fm_targets targets, const int64_t *order,          \
                           int64_t start, int n_steps, const double *lr, fm_optimizer *opt,    \
                           const fm_clip *clip, const fm_penalty *pen, const fm_augment *aug,  \
                           fm_random *rng, const fm_snapshot *snap, double *step_loss,         \
                           double *step_correct, int *steps_done);

FM_DECLARE_CSR(float, f32)
FM_DECLARE_CSR(double, f64)
#undef FM_DECLARE_CSR

/* Curvature products over a whole data set X (n, n_0) in blocks of buf->batch_cap rows
 * (curvature_impl.h): in inference mode, or with `training` in the mode of training step rng
 * (its dropout masks, batch norm through the batch statistics of all n rows, which must fit
 * one block: n <= batch_cap). buf->work holds fm_curvature_workspace_bytes(net, batch_cap)
 * bytes; buf->grads is not touched. Vectors v are ordered like params. */
size_t fm_curvature_workspace_bytes(const fm_net *net, int batch, size_t real_size);
#define FM_DECLARE_CURVATURE(T, SFX)                                                            \
    /* Hv (P) = Hessian of fm_loss_grad's objective (mean loss over all n rows, weighted by   \
       targets.weights when given, + penalties: l2 v, nothing for l1) times v (P) */          \
    int fm_hvp_##SFX(T *Hv, const fm_net *net, const fm_buffers *buf, const T *v, const T *X, \
                     fm_targets targets, int64_t n, const fm_penalty *pen, int training,        \
                     fm_random rng);                                                            \
    /* Gv (P) = Gauss-Newton matrix J^T H_L J (+ the penalties' Hessian) times v (P) */        \
    int fm_gnvp_##SFX(T *Gv, const fm_net *net, const fm_buffers *buf, const T *v, const T *X, \
                      fm_targets targets, int64_t n, const fm_penalty *pen, int training,       \
                      fm_random rng);                                                           \
    /* JV (n, n_L) = d logits/d params v (P) + d logits/dX vx (n, n_0); vx may be NULL */     \
    int fm_jvp_##SFX(T *JV, const fm_net *net, const fm_buffers *buf, const T *v, const T *vx, \
                     const T *X, int64_t n, int training, fm_random rng);

FM_DECLARE_CURVATURE(float, f32)
FM_DECLARE_CURVATURE(double, f64)
#undef FM_DECLARE_CURVATURE

/* Tied weights (ties.c). params keeps a copy of the shared matrix in each tied layer's
 * weights, which every pass reads as its own; the engine's updates keep the copies current.
 * fm_ties_ok: 1 when net->tie names valid ties (in range, not to itself, to a layer that
 * owns its weights, shapes matching), else 0 (every entry point then returns
 * FM_ERR_BAD_ARGUMENT). fm_tie_refresh: each tied layer's weights in params (row-major)
 * <- its source's (transposed). */
int fm_ties_ok(const fm_net *net);
void fm_tie_refresh_f32(const fm_net *net, float *params);
void fm_tie_refresh_f64(const fm_net *net, double *params);

#ifdef __cplusplus
}
#endif
#endif /* FASTMLP_H */
