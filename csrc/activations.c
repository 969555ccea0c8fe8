/* activations.c — hidden-unit activations and their derivatives.
 * Derivatives are taken from the activation's output a = f(z), so the forward pass
 * stores only activations. Subgradients at kinks: relu'(0) = 0, leaky_relu'(0) = slope. */
#include <math.h>

#include "kernels.h"

#define FM_TEMPLATE "activations_impl.h"
#include "instantiate.h"
