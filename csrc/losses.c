/* losses.c — output losses, their deltas d(mean loss)/d(logits), per-sample
 * accuracy, and the output activation each loss implies. Each loss matches the
 * PyTorch loss of the same meaning at reduction='mean':
 *   cross_entropy        CrossEntropyLoss (labels or probability targets), softmax output
 *   binary_cross_entropy BCEWithLogitsLoss, mean over batch x outputs, sigmoid output
 *   mse                  MSELoss, mean over batch x outputs, identity output
 *   hinge                mean over batch x outputs of max(0, 1 - t*z), t in {-1, +1}
 *   multi_hinge          MultiMarginLoss(p=1, margin=1): sum_{k != y} max(0, 1 - z_y + z_k) / K
 *   poisson              half Poisson deviance of mu = exp(z), mean over batch x outputs:
 *                        mu - t z + t log t - t (PoissonNLLLoss(log_input=True) plus the
 *                        constant t log t - t; scikit-learn's MLPRegressor(loss='poisson'))
 *   kl_divergence        KL(t || q), q = softmax(z), mean over the batch: KLDivLoss(
 *                        reduction='batchmean') of log_softmax(z) and targets t
 *   symmetric_kl         KL(t || q) + KL(q || t), mean over the batch (every t_k > 0)
 *   bhattacharyya        -log sum_k sqrt(t_k q_k), mean over the batch
 * Cross-entropy takes torch's label_smoothing (fm_targets). Accuracy: the largest logit
 * against the label or the target row's largest entry (mse: also the sign of a single
 * output), or per output for binary_cross_entropy and hinge.
 * Internals are computed in double; log-softmax uses log-sum-exp (finite for |z| ~ 1e4); the
 * softmax's exponentials are vector exps (vmath.h).
 * Subgradients at kinks (hinge, multi_hinge margin exactly 0) are 0. */
#include <math.h>

#include "isa.h"
#include "kernels.h"
#include "vmath.h"

static inline double softplus(double z) { return fmax(z, 0.0) + log1p(exp(-fabs(z))); }
static inline double xlogx(double t) { return t > 0 ? t * log(t) : 0.0; }
static inline double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    const double e = exp(z);
    return e / (1.0 + e);
}

/* the losses whose output activation is the softmax */
static inline int softmax_output(int loss) {
    return loss == FM_CROSS_ENTROPY || loss == FM_KL_DIV || loss == FM_SYMMETRIC_KL ||
           loss == FM_BHATTACHARYYA;
}

#define FM_CE_KEEP 64 /* classes whose exponentials cross_entropy keeps on the stack */
#define FM_CE_BLOCK 1024 /* exponentials fm_loss computes per vector call (>= FM_CE_KEEP) */

#define FM_TEMPLATE "losses_impl.h"
#include "instantiate.h"
