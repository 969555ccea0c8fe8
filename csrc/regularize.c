/* regularize.c — dropout masks, batch normalization and training-time input
 * augmentation (Gaussian noise, random image shifts). Randomness comes from the
 * counter-based hash in rng.c, so masks do not depend on the thread count and the
 * NumPy reference (fastmlp.reference.rng) can draw the same ones. */
#include <math.h>
#include <string.h>

#include "kernels.h"

#define FM_TEMPLATE "regularize_impl.h"
#include "instantiate.h"
