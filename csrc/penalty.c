/* penalty.c — weight penalties (L2, L1 by subgradient or proximal soft-threshold)
 * over the parameter layout of fastmlp.h. Biases and BN parameters are excluded
 * unless the penalty asks for them. */
#include <math.h>

#include "kernels.h"

#define real float
#define FN(name) name##_f32
#include "penalty_impl.h"
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include "penalty_impl.h"
#undef real
#undef FN
