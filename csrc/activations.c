/* activations.c — hidden-unit activations and their derivatives.
 * Derivatives are taken from the activation's output a = f(z), so the forward pass
 * stores only activations. Subgradients at kinks: relu'(0) = 0, leaky_relu'(0) = slope.
 * Both loops are compiled per instruction set (isa.h); the logistic function is the vector
 * one of the active kernel path (vmath.h). */
#include <math.h>

#include "isa.h"
#include "kernels.h"
#include "vmath.h"

#define FM_TEMPLATE "activations_impl.h"
#include "instantiate.h"
