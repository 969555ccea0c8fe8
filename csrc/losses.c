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
 * Internals are computed in double; log-softmax uses log-sum-exp (finite for |z| ~ 1e4).
 * Subgradients at kinks (hinge, multi_hinge margin exactly 0) are 0. */
#include <math.h>

#include "kernels.h"

static inline double softplus(double z) { return fmax(z, 0.0) + log1p(exp(-fabs(z))); }
static inline double xlogx(double t) { return t > 0 ? t * log(t) : 0.0; }
static inline double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    const double e = exp(z);
    return e / (1.0 + e);
}

#define FM_CE_KEEP 64 /* classes whose exponentials cross_entropy keeps on the stack */

#define FM_TEMPLATE "losses_impl.h"
#include "instantiate.h"
