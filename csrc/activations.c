/* activations.c — hidden-unit activations and their derivatives.
 * Derivatives are taken from the activation's output a = f(z), so the forward pass
 * stores only activations. Subgradients at kinks: relu'(0) = 0, leaky_relu'(0) = slope. */
#include <math.h>

#include "kernels.h"

#define real float
#define FN(name) name##_f32
#define EXP expf
#define TANH tanhf
#include "activations_impl.h"
#undef real
#undef FN
#undef EXP
#undef TANH

#define real double
#define FN(name) name##_f64
#define EXP exp
#define TANH tanh
#include "activations_impl.h"
#undef real
#undef FN
#undef EXP
#undef TANH
